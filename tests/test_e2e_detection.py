"""End to end through the real snakemake: prepare -> train baseline -> evaluate on a tiny config."""
import json
import re
import subprocess

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipeline_lib.io import sha256_file

from conftest import REPO, SNAKEMAKE, run_snakemake, write_config

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training

METRIC_KEYS = {"stage", "task", "checkpoint", "metrics", "fitness", "params", "flops", "file_bytes"}


def test_baseline_metrics_follow_the_public_contract(tiny_run):
    result = json.loads((tiny_run / "results/metrics/baseline.json").read_text())
    assert METRIC_KEYS <= set(result)
    assert set(result["metrics"]) == {"mAP50_95", "mAP50", "precision", "recall"}
    assert result["stage"] == "baseline" and result["task"] == "detection"
    assert result["params"] > 100_000 and result["flops"] > 1e6
    assert result["file_bytes"] == (tiny_run / "results/baseline.pt").stat().st_size
    for rule in ("prepare_dataset", "train-baseline", "evaluate-baseline"):
        assert (tiny_run / f"results/logs/{rule}.log").stat().st_size > 0
        assert (tiny_run / f"results/benchmarks/{rule}.tsv").exists()
    history = (tiny_run / "results/train/baseline.csv").read_text().splitlines()
    assert len(history) == 1 + 2 and "metrics/mAP50_95" in history[0]
    assert not (tiny_run / "results/work/baseline/last.pt").exists()


def test_whole_chain_prunes_and_finetunes(tiny_run):
    metrics = {s: json.loads((tiny_run / f"results/metrics/{s}.json").read_text())
               for s in ("baseline", "sparse", "pruned", "pruned_finetuned")}
    assert metrics["sparse"]["params"] == metrics["baseline"]["params"]
    assert metrics["pruned"]["flops"] < 0.6 * metrics["sparse"]["flops"]
    assert metrics["pruned_finetuned"]["params"] == metrics["pruned"]["params"]
    report = json.loads((tiny_run / "results/prune.json").read_text())
    assert report["after"]["flops"] == metrics["pruned"]["flops"]
    assert all(layer["after"] >= 8 for layer in report["layers"].values())
    # test.yaml clamps (on_infeasible: clamp): prune.json names each clamped layer, its widths and why.
    assert report["clamped"] and report["ratio_achieved"] != report["ratio_requested"]
    for entry in report["clamped"]:
        assert set(entry["reason"]) <= {"min_channels", "tied γ"} and entry["reason"]
        assert all(report["layers"][bn]["after"] == entry["kept"] for bn in entry["bns"])
    sparse_csv = (tiny_run / "results/train/sparse.csv").read_text().splitlines()[0]
    assert "gamma/frac_lt_1e-2" in sparse_csv
    finetuned = torch.load(tiny_run / "results/pruned_finetuned.pt", weights_only=True)["meta"]
    assert finetuned["parent"] == sha256_file(tiny_run / "results/pruned.pt")


def test_report_has_one_row_per_stage_and_the_gamma_plot(tiny_run):
    import pandas as pd

    table = pd.read_csv(tiny_run / "results/summary.csv").set_index("stage")
    assert list(table.index) == ["baseline", "sparse", "pruned", "pruned_finetuned", "baseline [onnx_fp32]",
                                 "pruned_finetuned [onnx_fp32]", "pruned_finetuned [onnx_int8]"]
    assert table.loc["baseline", "flops_vs_baseline"] == 1.0
    assert table.loc["pruned", "flops_vs_baseline"] < 0.6
    assert table.loc["baseline [onnx_fp32]", "speedup_vs_baseline"] == 1.0
    for row in ("baseline", "pruned_finetuned", "pruned_finetuned [onnx_fp32]", "pruned_finetuned [onnx_int8]"):
        assert table.loc[row, "latency_ms"] > 0 and table.loc[row, "speedup_vs_baseline"] > 0
    assert table.loc["pruned_finetuned [onnx_int8]", "file_bytes_vs_baseline"] < 0.5
    assert re.search(r"^\| pruned_finetuned +\|", (tiny_run / "results/summary.md").read_text(), re.M)
    for plot in ("bn_gamma", "gamma_quantiles", "training_curves", "latency", "channels", "pareto",
                 "evaluation/pr_curves", "evaluation/per_class_ap", "evaluation/confidence_curves",
                 "evaluation/confusion_matrix", *(f"training/{s}" for s in ("baseline", "sparse", "pruned_finetuned")),
                 *(f"samples/{s}" for s in ("baseline", "sparse", "pruned", "pruned_finetuned"))):
        assert (tiny_run / f"results/plots/{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tiny_run / "results/summary.md").read_text()
    assert md.index("| artifact ") < md.index("# Details") < md.index("## All metrics") and "nan" not in md.split()


def test_provenance_links_every_artifact_to_its_parent(tiny_run):
    record = json.loads((tiny_run / "results/provenance.json").read_text())["artifacts"]
    assert list(record) == [f"results/{s}.pt" for s in ("baseline", "sparse", "pruned", "pruned_finetuned")]
    assert [record[p]["parent"] for p in record] == [None, "results/baseline.pt", "results/sparse.pt",
                                                     "results/pruned.pt"]
    for path, artifact in record.items():
        assert artifact["sha256"] == sha256_file(tiny_run / path)
        assert artifact["config_hash"] and artifact["dataset"] and artifact["versions"]["torch"]
    assert "## Provenance" in (tiny_run / "results/summary.md").read_text()


def test_reported_map_equals_cocoeval_on_the_same_predictions(tiny_run):
    result = json.loads((tiny_run / "results/metrics/baseline.json").read_text())
    gt = COCO(str(tiny_run / "results/data/val_coco.json"))
    dt = gt.loadRes(str(tiny_run / "results/metrics/baseline.predictions.json"))
    ev = COCOeval(gt, dt, "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert result["metrics"]["mAP50_95"] == max(ev.stats[0], 0.0)
    assert result["metrics"]["mAP50"] == max(ev.stats[1], 0.0)


def test_checkpoint_loads_weights_only_and_describes_itself(tiny_run):
    ckpt = torch.load(tiny_run / "results/baseline.pt", weights_only=True)
    assert ckpt["arch"]["family"] == "detection" and ckpt["arch"]["kwargs"]["nc"] == 5
    meta = ckpt["meta"]
    assert meta["stage"] == "baseline" and meta["config"]["epochs"] == 2 and meta["parent"] is None
    assert 1 <= meta["epoch"] <= 2 and len(meta["dataset"]) == 16


def test_lint_is_clean():
    proc = subprocess.run([SNAKEMAKE, "--lint", "--snakefile", str(REPO / "Snakefile")], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "Lints for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_bad_config_fails_in_one_line_before_any_job(tmp_path):
    config = write_config(tmp_path / "bad.yaml", train={"epoch": 3})
    proc = run_snakemake(tmp_path, config, check=False)
    assert proc.returncode != 0
    # Snakemake's own notice of the default profile (profiles/default) is the one other line.
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if line.strip() and not line.startswith("Using workflow specific profile")]
    # The file as seen from the run's folder (--directory): there it is bad.yaml.
    where = config.relative_to(tmp_path)
    assert lines == [f"slimflow config error: {where}:{_line_of(config, 'epoch:')}: train.epoch: unknown key "
                     + lines[0].split("unknown key ", 1)[1]]
    assert not (tmp_path / "results").exists()


def _line_of(path, text):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith(text))


def test_bad_label_fails_naming_file_and_line(tmp_path):
    data = tmp_path / "data"
    for split in ("train", "val"):
        (data / "images" / split).mkdir(parents=True)
        (data / "labels" / split).mkdir(parents=True)
        from PIL import Image
        Image.new("RGB", (32, 32)).save(data / "images" / split / "a.png")
        (data / "labels" / split / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    bad = data / "labels" / "train" / "a.txt"
    bad.write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n")
    (data / "data.yaml").write_text(f"path: {data}\ntrain: images/train\nval: images/val\nnames: [thing]\n")
    config = write_config(tmp_path / "c.yaml", dataset={"path": str(data / "data.yaml")})
    proc = run_snakemake(tmp_path, config, "results/data/dataset.json", check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("slimflow error:")]
    # named as seen from the run's folder (--directory), where the user types the command
    assert len(errors) == 1 and f"slimflow error: {bad.relative_to(tmp_path)}:2:" in errors[0]
    # Found by the check before Snakemake schedules anything: no job ran, so no step log exists.
    assert "Traceback" not in proc.stderr and not (tmp_path / "results/logs/prepare_dataset.log").exists()


def test_snakemake_report_embeds_the_plots(tiny_run, tmp_path):
    html = tmp_path / "report.html"
    run_snakemake(tiny_run, REPO / "config" / "test.yaml", "--report", str(html), "--nolock")  # a shared run
    text = html.read_text(errors="replace")
    for plot in ("bn_gamma.png", "training_curves.png", "latency.png"):
        assert plot in text
    assert html.stat().st_size > 100_000  # the PNGs are embedded, not linked
