"""What each step reads, writes and is told, for one artifact: the keyword arguments of its step function.

The workflow's rules take their `input`, `output` and `params` from here, their scripts hand all
three to the step function unchanged (`runner.run_step`), and `python -m pipeline_lib STEP` calls
`step_args`, so a step runs with the same files under Snakemake, SLURM and by hand.

    step_args("train", Artifact("", "sparse"), config)
    # {"manifest_path": "results/data/dataset.json", "init_checkpoint": "results/baseline.pt",
    #  "out_checkpoint": "results/sparse.pt", "out_csv": "results/train/sparse.csv", "label": "sparse", ...}
    outputs("train", Artifact("{lineage}", "{stage}"))    # a rule's output patterns

A step is keyed by what it makes (`pipeline_lib.layout`): a dataset step by its `DataFolder`, a
chain or export step by its `Artifact`, `evaluate_onnx` by the `Exported` model, the reports by
the `Results` folder.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from . import chain
from .config import TRAINED_STAGES, stage_config
from .export.settings import rule_settings
from .layout import DEPLOYED, EVALUATED, RESULTS, Artifact, DataFolder, Exported, Results, onnx_prefix
from .preflight import dataset_fingerprint
from .registry import has_evaluator, validation_settings

__all__ = ["STEPS", "PLOTS", "inputs", "outputs", "params", "step_args", "summary_rows", "onnx_rows",
           "deployment_files", "lora_stages", "lora_adapters", "adapters_read"]


def summary_rows(config: dict) -> list[tuple[str, str]]:
    """(lineage, stage) of every row of results/summary.*: the main chain, then each earlier iteration's slim model."""
    return [("", stage) for stage in EVALUATED] + [(lin, "pruned_finetuned")
                                                   for lin in chain.iteration_lineages(config["prune"])[:-1]]


# --- data --------------------------------------------------------------------------------------------------

def _prepare_dataset(d: DataFolder, config: dict) -> tuple[dict, dict]:
    """The dataset's content fingerprint is a param: an edited dataset reruns this job and all after it."""
    dataset_cfg, seed = chain.dataset_settings(d.folder, config)
    return {}, {"dataset_cfg": dataset_cfg, "family": config["task"], "seed": seed,
                "fingerprint": dataset_fingerprint(d.folder, config)}


def _train_evaluator(d: DataFolder, config: dict) -> tuple[dict, dict]:
    return {"manifest_path": d.manifest}, {"eval_cfg": config["evaluate"], "device": config["device"],
                                           "seed": config["seed"]}


# --- the chain -----------------------------------------------------------------------------------------------

def _stage_data(a: Artifact, config: dict) -> dict:
    """The artifact's dataset manifest, and the family's evaluator on it (diffusion's judge) when it has one."""
    data = DataFolder(chain.data_folder(a.stage, config), a.results)
    return {"manifest_path": data.manifest, **({"evaluator": data.evaluator} if has_evaluator(config["task"]) else {})}


def _checkpoint(a: Artifact | None, results: str) -> str | None:
    return None if a is None else replace(a, results=results).checkpoint


def _train(a: Artifact, config: dict) -> tuple[dict, dict]:
    weights = config["model"].get("weights") if a.stage == "baseline" else None  # the user's own: a change retrains
    files = {"init_checkpoint": _checkpoint(chain.parent(a.lineage, a.stage, config), a.results),
             "teacher_checkpoint": _checkpoint(chain.teacher(a.lineage, a.stage, config), a.results),
             "weights": weights, "manifest_path": _stage_data(a, config)["manifest_path"]}
    train_cfg = stage_config(config, a.stage)
    return {k: v for k, v in files.items() if v is not None}, {
        "label": a.label, "train_cfg": train_cfg, "model_cfg": config["model"],
        "family": config["task"], "validation": validation_settings(config), "seed": config["seed"],
        "device": config["device"], "workdir": a.workdir,
        **({"mlflow_store": Results(a.results).mlruns} if "mlflow" in train_cfg["loggers"] else {})}


def _prune(a: Artifact, config: dict) -> tuple[dict, dict]:
    """A timed target measures each probe as the finetuned model will be deployed: with the
    finetune's activation, and (counting INT8) quantized with quantize_int8's settings and calibration data."""
    finetuned = replace(a, stage="pruned_finetuned")
    settings = chain.prune_settings(a.lineage, config["prune"], config["export"]["threads"],
                                    config["export"]["deploy"]["imgsz"], rule_settings(config["export"], "quantize_int8"),
                                    stage_config(config, finetuned.stage).get("act"))
    calibration = {"manifest_path": _stage_data(finetuned, config)["manifest_path"]} if "int8_quantize" in settings else {}
    return ({"checkpoint": _checkpoint(chain.parent(a.lineage, "pruned", config), a.results), **calibration},
            {"prune_cfg": settings, "search_cache": a.prune_search})


def _evaluate(a: Artifact, config: dict) -> tuple[dict, dict]:
    return ({"checkpoint": a.checkpoint, **_stage_data(a, config)},
            {"label": a.label, "eval_cfg": config["evaluate"], "device": config["device"], "seed": config["seed"]})


# --- deployment: main-chain artifacts --------------------------------------------------------------------------

def _export_onnx(a: Artifact, config: dict) -> tuple[dict, dict]:
    return ({"checkpoint": a.checkpoint, "manifest_path": _stage_data(a, config)["manifest_path"]},
            {"export_cfg": rule_settings(config["export"], "export_onnx"), "seed": config["seed"]})


def _quantize_int8(a: Artifact, config: dict) -> tuple[dict, dict]:
    return ({"onnx_path": a.onnx(), "report_path": a.onnx_report(),
             "manifest_path": _stage_data(a, config)["manifest_path"]},
            {"export_cfg": rule_settings(config["export"], "quantize_int8"), "seed": config["seed"]})


def _evaluate_onnx(e: Exported, config: dict) -> tuple[dict, dict]:
    return ({"onnx_path": e.onnx, "report_path": e.report, **_stage_data(e.artifact, config)},
            {"eval_cfg": config["evaluate"], "export_cfg": rule_settings(config["export"], "latency"),
             "seed": config["seed"]})


def _latency_torch(a: Artifact, config: dict) -> tuple[dict, dict]:
    return {"checkpoint": a.checkpoint}, {"export_cfg": rule_settings(config["export"], "latency"),
                                          "seed": config["seed"]}


# --- reports --------------------------------------------------------------------------------------------------

def onnx_rows(config: dict, results: str = RESULTS) -> list[Exported]:
    """The exported models the report shows: baseline and deployed FP32, then deployed INT8."""
    return [Exported(onnx_prefix(stage), precision, results) for stage, precision in
            [("baseline", "fp32"), (DEPLOYED, "fp32")] + ([(DEPLOYED, "int8")] if config["export"]["int8"] else [])]


def deployment_files(config: dict, results: str = RESULTS) -> list[str]:
    """Every exported model the report shows, with its report and metrics, and the PyTorch latency
    files: `rule all` asks for each by name, so a missing one is rebuilt (Snakemake reruns a job
    for a missing output only when something needs that output)."""
    files = []
    for e in onnx_rows(config, results):
        files += [*outputs("export_onnx" if e.precision == "fp32" else "quantize_int8", e.artifact).values(),
                  *outputs("evaluate_onnx", e).values()]
    for stage in ("baseline", DEPLOYED):
        files += outputs("latency_torch", Artifact("", stage, results)).values()
    return list(dict.fromkeys(files))


def lora_stages(config: dict) -> list[str]:
    """The trained stages whose training is LoRA adapters (rule train_lora, which also writes the adapter)."""
    return [stage for stage in TRAINED_STAGES if stage_config(config, stage).get("lora")]


def lora_adapters(config: dict, results: str = RESULTS) -> dict[str, str]:
    """{merged checkpoint: its adapter} of every artifact trained with LoRA, in every lineage."""
    lora = lora_stages(config)
    adapters = {}
    for lineage in [*chain.iteration_lineages(config["prune"])[:-1], "", *chain.sweep_lineages(config["prune"])]:
        # a sweep only finetunes; an earlier iteration has no baseline of its own
        trained = {"": TRAINED_STAGES, "sweep/": ["pruned_finetuned"]}.get(lineage[:6], ["sparse", "pruned_finetuned"])
        adapters |= {Artifact(lineage, s, results).checkpoint: Artifact(lineage, s, results).adapter
                     for s in trained if s in lora}
    return adapters


def adapters_read(step: str, key, config: dict) -> list[str]:
    """The adapter of each LoRA-trained checkpoint `step` reads: a rule's unnamed inputs (the step
    function never sees them). So a stage that gains `lora:` is trained again whichever of its files
    is asked for: its merged checkpoint's params trigger does not fire while the job's other output,
    the adapter, has no record."""
    adapter_of = lora_adapters(config, key.root if isinstance(key, Results) else key.results)
    if not adapter_of:  # no LoRA stage (the usual run): no second pass over the step's inputs
        return []
    return [adapter_of[f] for f in inputs(step, key, config).values() if isinstance(f, str) and f in adapter_of]


def _report(r: Results, config: dict) -> tuple[dict, dict]:
    rows = [Artifact(lineage, stage, r.root) for lineage, stage in summary_rows(config)]
    main = [Artifact("", stage, r.root) for stage in EVALUATED]
    sweep = [Artifact(lineage, "pruned_finetuned", r.root) for lineage in chain.sweep_lineages(config["prune"])]
    judge = {"evaluator_report": DataFolder("", r.root).evaluator_report} if has_evaluator(config["task"]) else {}
    return ({"metrics_paths": [a.metrics for a in rows] + [e.metrics for e in onnx_rows(config, r.root)],
             "latency_paths": [Artifact("", s, r.root).torch_latency for s in ("baseline", DEPLOYED)],
             "checkpoints": [a.checkpoint for a in rows],
             "curves": [Artifact("", stage, r.root).train_csv for stage in TRAINED_STAGES],
             "prune_report": Artifact("", "pruned", r.root).prune_report,
             "manifest_path": DataFolder("", r.root).manifest, "predictions": [a.predictions for a in main],
             "sweep_metrics": [a.metrics for a in sweep], **judge},
            {"int8_max_drop": config["export"]["int8_max_drop"] if config["export"]["int8"] == "auto" else None})


def _sweep_report(r: Results, config: dict) -> tuple[dict, dict]:
    lineages = chain.sweep_lineages(config["prune"])
    return ({"baseline_metrics": Artifact("", "baseline", r.root).metrics,
             "pruned_metrics": [Artifact(lin, "pruned", r.root).metrics for lin in lineages],
             "finetuned_metrics": [Artifact(lin, "pruned_finetuned", r.root).metrics for lin in lineages]}, {})


PLOTS = ("bn_gamma", "gamma_quantiles", "training_curves", "latency", "channels", "pareto")  # results/plots/<name>.png of the report


def _report_outputs(r: Results) -> dict:
    return {"out_csv": r.summary_csv, "out_md": r.summary_md, "out_provenance": r.provenance,
            "out_page": r.report_page, **{f"out_{name}_png": r.plot(f"{name}.png") for name in PLOTS},
            "out_training_dir": r.plot("training"), "out_evaluation_dir": r.plot("evaluation"),
            "out_samples_dir": r.plot("samples")}


# step: (its inputs and params for a concrete key, its outputs for a key or a rule's pattern); the key is a
# DataFolder, an Artifact, an Exported model or the Results folder.
STEPS: dict[str, tuple[Callable, Callable]] = {
    "prepare_dataset": (_prepare_dataset, lambda d: {"manifest_path": d.manifest}),
    "train_evaluator": (_train_evaluator, lambda d: {"out_evaluator": d.evaluator, "out_report": d.evaluator_report}),
    "train": (_train, lambda a: {"out_checkpoint": a.checkpoint, "out_csv": a.train_csv}),
    "train_lora": (_train, lambda a: {"out_checkpoint": a.checkpoint, "out_csv": a.train_csv,
                                      "out_adapter": a.adapter}),
    "prune": (_prune, lambda a: {"out_checkpoint": a.checkpoint, "out_report": a.prune_report}),
    "evaluate": (_evaluate, lambda a: {"out_metrics": a.metrics, "out_predictions": a.predictions}),
    "export_onnx": (_export_onnx, lambda a: {"out_onnx": a.onnx(), "out_report": a.onnx_report()}),
    "quantize_int8": (_quantize_int8, lambda a: {"out_onnx": a.onnx("int8"), "out_report": a.onnx_report("int8")}),
    "evaluate_onnx": (_evaluate_onnx, lambda e: {"out_metrics": e.metrics}),
    "latency_torch": (_latency_torch, lambda a: {"out_json": a.torch_latency}),
    "report": (_report, _report_outputs),
    "sweep_report": (_sweep_report, lambda r: {"out_csv": r.sweep_summary, "out_png": r.plot("sweep.png")}),
}


def inputs(step: str, key, config: dict) -> dict:
    """The files `step` reads (a Snakemake rule's input)."""
    return STEPS[step][0](key, config)[0]


def params(step: str, key, config: dict) -> dict:
    """The config values `step` reads (a rule's params: a change reruns the job)."""
    return STEPS[step][0](key, config)[1]


def outputs(step: str, key) -> dict:
    """The files `step` writes, or a rule's output patterns for a key of wildcards (Artifact("{lineage}", "{stage}"))."""
    return STEPS[step][1](key)


def step_args(step: str, key, config: dict) -> dict:
    """Every keyword argument of the step function: inputs, outputs and params."""
    files, settings = STEPS[step][0](key, config)
    return {**files, **outputs(step, key), **settings}
