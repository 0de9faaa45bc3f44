"""The HTML report of the tiny run, opened in headless Chromium: its first page shows the summary
table and the prune ratios, laid out so that nothing covers the table and nothing scrolls sideways
at 1280 and 2560 px, and every image it carries renders (decodes to a non-empty picture).

Chromium is Debian's `chromium` package (.ci/run installs it where CI is root with apt-get).
"""
import html
import json
import re
import shutil
import subprocess

import pytest

from conftest import REPO, run_snakemake

pytestmark = pytest.mark.e2e  # runs the real snakemake and a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


# Every plot of the detection report: slimming, training, deployment, COCOeval figures, one sample strip per stage.
EXPECTED_IMAGES = {"bn_gamma.png", "channels.png", "training_curves.png", "latency.png", "pareto.png",
                   "pr_curves.png", "per_class_ap.png", "baseline.png", "sparse.png", "pruned.png",
                   "pruned_finetuned.png"}


def rendered_dom(page, budget_ms=20000, width=1280) -> str:
    """The page's DOM after its scripts ran (virtual time), as Chromium prints it."""
    proc = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           f"--window-size={width},1000", f"--virtual-time-budget={budget_ms}", "--dump-dom",
                           page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def report_html(tiny_run, tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (apt-get install chromium; .ci/run does where it is root)")
    out = tmp_path_factory.mktemp("report") / "report.html"
    # --nolock: the other worker may be reading the same shared run (conftest.tiny_run)
    run_snakemake(tiny_run, REPO / "config" / "test.yaml", "--report", str(out), "--nolock")
    return out


def test_first_page_shows_the_summary_table_and_the_prune_ratio(report_html):
    dom = rendered_dom(report_html)
    table = re.search(r"<table.*?</table>", dom, re.S)
    assert table, "no table on the report's first page"
    rows = re.findall(r"<tr", table.group(0))
    assert len(rows) == 1 + 7, "header + one row per artifact (4 checkpoints, 3 exported models)"
    for text in ("pruned_finetuned [onnx_int8]", "mAP50_95", "speedup"):
        assert text in table.group(0)
    assert ">nan<" not in table.group(0)
    assert re.search(r"requested ratio: <strong>0\.5</strong>", dom)
    assert re.search(r"achieved ratio: <strong>0\.\d+</strong>", dom)
    assert re.search(r"clamped layers \(kept more channels than the threshold asks\): \d+: ", dom)


def test_every_image_in_the_report_renders(report_html, tmp_path):
    # Snakemake embeds each result as data:image/png;charset=utf8;filename=NAME;base64,...
    sources = sorted(set(re.findall(r"data:image/(?:png|jpeg)[^,\"]*;base64,[A-Za-z0-9+/=]+", report_html.read_text())))
    names = {m.group(1) for m in (re.search(r"filename=([^;]+);", src) for src in sources) if m}
    assert EXPECTED_IMAGES <= names, f"missing from the report: {EXPECTED_IMAGES - names}"
    # Every caption is valid reStructuredText (docutils marks a broken one "problematic", e.g. a bare |γ|).
    assert "problematic" not in report_html.read_text()
    imgs = "".join(f'<img id="i{k}" src="{src}">' for k, src in enumerate(sources))
    probe = tmp_path / "images.html"
    probe.write_text(f"""<html><body>{imgs}<pre id="out"></pre><script>
        window.onload = () => {{ document.getElementById("out").textContent = Array.from(document.images)
            .map(i => i.id + "=" + (i.complete ? i.naturalWidth + "x" + i.naturalHeight : "pending")).join(" "); }};
        </script></body></html>""")
    sizes = re.search(r'<pre id="out">(.*?)</pre>', rendered_dom(probe, 5000)).group(1).split()
    assert len(sizes) == len(sources)
    for entry in sizes:
        width, height = entry.split("=")[1].split("x")
        assert int(width) > 50 and int(height) > 50, f"image {entry} did not render"


# Run in the report once Snakemake's app drew the first page (its text column `.prose`, the rule graph
# beside it): every cell of the summary table is the topmost element at its centre (nothing drawn over
# it), and no element of the text scrolls sideways or sticks out of its column.
LAYOUT_PROBE = """<script>setTimeout(() => {
  const box = el => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const text = document.querySelector(".prose"), table = text.querySelector("table");
  const graph = document.querySelector("#rulegraph canvas, #rulegraph svg");
  const found = {table: box(table), graph: graph && box(graph), column: box(text), covered: [], wide: []};
  for (const el of text.querySelectorAll("*")) {
    if (el.scrollWidth > el.clientWidth + 1 || box(el)[2] > found.column[2] + 1)
      found.wide.push(el.tagName + ": " + el.textContent.slice(0, 60));
  }
  for (const cell of table.querySelectorAll("th, td")) {
    cell.scrollIntoView({block: "center", inline: "center"});
    const [l, t, r, b] = box(cell), hit = document.elementFromPoint((l + r) / 2, (t + b) / 2);
    if (!hit || !cell.contains(hit)) found.covered.push(cell.textContent.trim() + " under " + (hit ? hit.tagName : "none"));
  }
  const out = document.createElement("pre"); out.id = "layout-probe"; out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
}, 5000);</script>"""


def first_page_layout(report, tmp_path, width: int) -> dict:
    """The first page's boxes at a window `width` px wide (LAYOUT_PROBE's findings)."""
    probed = tmp_path / f"probed-{width}.html"
    page, end, rest = report.read_text().rpartition("</body>")
    probed.write_text(page + LAYOUT_PROBE + end + rest)
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', rendered_dom(probed, width=width), re.S)
    assert found, "the report's first page did not render"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.parametrize("width", [1280, 2560])
def test_nothing_covers_the_summary_table_and_nothing_scrolls_sideways(report_html, tmp_path, width):
    layout = first_page_layout(report_html, tmp_path, width)
    assert layout["graph"], "no rule graph on the first page"
    table, graph = layout["table"], layout["graph"]
    apart = table[2] <= graph[0] or graph[2] <= table[0] or table[3] <= graph[1] or graph[3] <= table[1]
    assert apart, f"the rule graph {graph} overlaps the summary table {table}"
    assert not layout["covered"], f"table cells drawn over: {layout['covered']}"
    assert not layout["wide"], f"wider than the text column {layout['column']}: {layout['wide']}"
