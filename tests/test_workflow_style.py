"""The rule files follow snakefmt with the project's directive order ([tool.snakefmt] in pyproject.toml).

(`snakemake --lint` is checked in test_e2e_detection.py.)
"""
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_rules_are_snakefmt_clean():
    snakefmt = Path(sys.executable).parent / "snakefmt"  # in the dev extra
    proc = subprocess.run([str(snakefmt), "--check", "--diff", "Snakefile", "workflow/rules"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_short_rules_run_locally_on_a_cluster():
    text = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    local = {name for block in text.split("localrules:")[1:] for name in block.split("\n\n")[0].replace(",", " ").split()}
    assert {"prune", "report", "sweep_report", "export_onnx", "quantize_int8"} <= local
