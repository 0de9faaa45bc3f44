"""The HTML report's first page: the chain, the summary table and the requested vs achieved prune ratio."""
import re

import pandas as pd
import pytest
from docutils.core import publish_parts

from pipeline_lib.summary import landing_page

PRUNE = {"config": {"min_channels": 8}, "ratio_requested": 0.8, "ratio_achieved": 0.702, "threshold": 0.0123,
         "before": {"flops": 2e9, "params": 1.8e6}, "after": {"flops": 0.9e9, "params": 0.6e6},
         "layers": {"a": {"before": 32, "after": 8}, "b": {"before": 64, "after": 20}, "c": {"before": 8, "after": 8}}}


def test_landing_page_is_valid_rst_with_the_table_and_the_ratios():
    table = pd.DataFrame([
        {"stage": "baseline", "runtime": "torch", "mAP50_95": 0.5, "params": 1.8e6, "flops": 2e9, "latency_ms": 3.0,
         "speedup_vs_baseline": 1.0, "file_bytes": 7e6},
        {"stage": "pruned_finetuned [onnx_int8]", "runtime": "onnx_int8", "mAP50_95": 0.49, "params": 0.6e6,
         "flops": 0.9e9, "latency_ms": None, "speedup_vs_baseline": None, "file_bytes": 1e6}])
    page = landing_page(table, "mAP50_95", PRUNE)
    html = publish_parts(page, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})["html_body"]
    assert html.count("<tr") == 3 and "pruned_finetuned [onnx_int8]" in html and ">nan<" not in html
    assert "requested ratio: <strong>0.8</strong>" in html and "achieved ratio: <strong>0.702</strong>" in html
    assert "layers held at min_channels (8): 1 of 3" in html
    # Snakemake shows this page in a 32rem column beside its rule graph: the chain is a list (a literal
    # block would scroll sideways) and the table leaves params, GFLOPs and epochs to the text and summary.md.
    assert "literal-block" not in html and html.count("<li>") >= 5
    header = re.search(r"<thead.*?</thead>", html, re.S).group(0)
    assert "speedup" in header and "size (MiB)" in header and "params" not in header and "GFLOPs" not in header


def test_landing_page_names_the_clamped_layers_and_why():
    clamped = [{"layer": "stem.conv", "bns": ["stem.bn"], "channels": 16, "kept": 8, "reason": ["min_channels"]},
               {"layer": "head_.conv", "bns": ["head_.bn"], "channels": 32, "kept": 32, "reason": ["tied γ"]}]
    table = pd.DataFrame([{"stage": "baseline", "runtime": "torch", "mAP": 0.5, "params": 1.8e6, "flops": 2e9,
                           "latency_ms": None, "speedup_vs_baseline": None, "file_bytes": 7e6}])
    page = landing_page(table, "mAP", {**PRUNE, "clamped": clamped})
    html = publish_parts(page, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})["html_body"]
    assert "clamped layers (kept more channels than the threshold asks): 2" in html
    # Names as literals: a trailing underscore must not turn into a reStructuredText reference.
    assert re.search(r'<(tt|code) class="docutils literal">stem\.conv</(tt|code)> \(16→8, min_channels\)', html)
    assert re.search(r'<(tt|code) class="docutils literal">head_\.conv</(tt|code)> \(32→32, tied γ\)', html)


def test_the_accuracy_reference_is_the_best_unpruned_checkpoint_with_its_epochs(tmp_path):
    import json

    from pipeline_lib.report import summary_table
    from pipeline_lib.summary import write_summary

    def metrics(stage, m, epochs, fmt=None):
        path = tmp_path / f"{stage}{fmt or ''}.json"
        body = {"stage": stage, "task": "detection", "metrics": {"mAP50_95": m, "mAP50": m}, "fitness": m,
                "params": 1e6, "flops": 1e9, "file_bytes": 1e6, "epochs_total": epochs,
                **({"format": fmt, "latency_ms": {"median": 1.0, "p90": 1.1}} if fmt else {})}
        path.write_text(json.dumps(body))
        return path

    paths = [metrics("baseline", 0.612, 40), metrics("sparse", 0.654, 60), metrics("pruned", 0.2, 60),
             metrics("pruned_finetuned", 0.649, 80), metrics("pruned_finetuned", 0.64, None, "onnx_int8")]
    table = summary_table(paths)
    row = table.set_index("stage")
    # sparse (same network, 20 more epochs) is the reference, not the baseline the slim model "beats"
    assert row.loc["pruned_finetuned", "mAP50_95_vs_reference"] == pytest.approx(-0.005)
    assert row.loc["baseline", "mAP50_95_vs_reference"] == pytest.approx(-0.042)
    assert list(row["epochs"]) == [40, 60, 60, 80, 80]  # the INT8 model was trained as its checkpoint
    write_summary(table, tmp_path / "summary.csv", tmp_path / "summary.md", metric="mAP50_95")
    text = (tmp_path / "summary.md").read_text()
    assert "Accuracy reference: **sparse** (mAP50_95 0.654 after 60 epochs)" in text
    assert re.search(r"\| pruned_finetuned +\| +0\.649 \| +-0\.005 \| +80 \|", text)


def test_landing_page_shows_the_evaluators_note_under_the_table():
    from pipeline_lib.tasks.diffusion.report import judge_ceiling

    table = pd.DataFrame([{"stage": "baseline", "runtime": "torch", "cond_acc": 0.79, "params": 1e5, "flops": 5e7,
                           "latency_ms": None, "speedup_vs_baseline": None, "file_bytes": 1e6}])
    note, _ = judge_ceiling({"val_acc": 0.933, "val_acc_per_class": {"8": 0.76}, "epochs": 3},
                            {"baseline": {"metrics": {"cond_acc": 0.79}}})
    page = landing_page(table, "cond_acc", PRUNE, note)
    html = publish_parts(page, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})["html_body"]
    at = html.index("the judge reads the val split's digits at 0.933 (3 epochs; weakest digits 8 0.760), so a "
                    "cond_acc near it is limited by the judge")
    assert html.index("</table>") < at < html.index("Pruning")
