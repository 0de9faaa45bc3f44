"""Every job Snakemake schedules reads and writes exactly the files pipeline_lib.jobs names for it:
the rules, the scripts (which pass those files on) and the CLI (which calls jobs.step_args) share
one layout."""
import re

import pytest

from pipeline_lib import jobs
from pipeline_lib.config import load_config
from pipeline_lib.layout import Artifact, DataFolder, Exported, Results

from conftest import REPO, run_snakemake, write_config

pytestmark = pytest.mark.e2e  # runs the real snakemake (a dry run: seconds)

# rule -> (the jobs step, its key from the job's wildcards)
KEYS = {
    "prepare_dataset": ("prepare_dataset", lambda w: DataFolder(w["data"])),
    "train_evaluator": ("train_evaluator", lambda w: DataFolder(w["data"])),
    "train": ("train", lambda w: Artifact(w["lineage"], w["stage"])),
    "train_lora": ("train_lora", lambda w: Artifact(w["lineage"], w["stage"])),
    "prune": ("prune", lambda w: Artifact(w["lineage"], "pruned")),
    "evaluate": ("evaluate", lambda w: Artifact(w["lineage"], w["stage"])),
    "export_onnx": ("export_onnx", lambda w: Artifact("", w["stage"])),
    "quantize_int8": ("quantize_int8", lambda w: Artifact("", w["stage"])),
    "evaluate_onnx": ("evaluate_onnx", lambda w: Exported(w["prefix"], w["precision"])),
    "latency_torch": ("latency_torch", lambda w: Artifact("", w["stage"])),
    "report": ("report", lambda w: Results()),
    "sweep_report": ("sweep_report", lambda w: Results()),
}


def _jobs(dry_run: str) -> list[dict]:
    """Each job of a dry run's listing: rule, wildcards, input and output files."""
    found = []
    for block in re.split(r"\n(?=rule |localrule )", dry_run):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if head is None or head.group(1) == "all":
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        wildcards = dict(re.findall(r"(\w+)=([^,]*)", fields.get("wildcards", "")))
        found.append({"rule": head.group(1), "wildcards": wildcards,
                      "input": set(filter(None, fields.get("input", "").split(", "))),
                      "output": set(filter(None, fields.get("output", "").split(", ")))})
    return found


def _files(args: dict) -> set[str]:
    return {path for value in args.values() for path in ([value] if isinstance(value, str) else value)}


@pytest.mark.parametrize("case", ["detection", "diffusion", "lineages"])
def test_every_job_uses_the_files_jobs_names(tmp_path, case):
    if case == "lineages":  # iterations, a sweep and a LoRA finetune: every kind of lineage and rule
        config = write_config(tmp_path / "case.yaml", prune={"iterations": 2, "ratio": 0.5, "target": None,
                                                             "sweep": [0.3]},
                              stages={"finetune": {"lora": {"r": 4}}})
    else:
        config = REPO / "config" / {"detection": "test.yaml", "diffusion": "test_diffusion.yaml"}[case]
    listing = _jobs(run_snakemake(tmp_path / "run", config, "-n", "--forceall").stdout)
    cfg = load_config(config)
    assert {job["rule"] for job in listing} >= {"prepare_dataset", "train", "prune", "evaluate", "report"}
    for job in listing:
        step, key = KEYS[job["rule"]]
        key = key({"lineage": "", **job["wildcards"]})
        assert job["output"] == _files(jobs.outputs(step, key)), job
        # the adapters of LoRA-trained checkpoints are unnamed inputs (their step never reads them)
        assert job["input"] == _files(jobs.inputs(step, key, cfg)) | set(jobs.adapters_read(step, key, cfg)), job
    if case == "lineages":
        rules = {job["rule"] for job in listing}
        assert {"train_lora", "sweep_report"} <= rules


def test_the_mlflow_store_is_a_train_param_only_where_mlflow_is_asked_for(tmp_path):
    """results/mlruns for `train.loggers: [mlflow]`; no new param otherwise, so runs made before
    the mlflow logger existed are not retrained for it."""
    cfg = load_config(REPO / "config" / "test.yaml")
    assert "mlflow_store" not in jobs.step_args("train", Artifact("", "baseline"), cfg)
    cfg["train"]["loggers"] = ["mlflow"]
    args = jobs.step_args("train", Artifact("", "sparse", "runs/a/results"), cfg)
    assert args["mlflow_store"] == Results("runs/a/results").mlruns == "runs/a/results/mlruns"
