"""One function per pipeline step, with plain arguments (paths and config sections).

`workflow/scripts/*.py` and `python -m pipeline_lib STEP` both call these with the arguments
`pipeline_lib.jobs` gives, so a step behaves the same under Snakemake, SLURM or by hand:

    evaluate_stage(**jobs.step_args("evaluate", Artifact("", "pruned"), cfg))

Each module's names are imported on first use (PEP 562): torch loads with the step that needs it.
"""
import importlib

_WHERE = {
    "chain": ("prepare_dataset", "prune_stage", "train_evaluator", "evaluate_stage"),
    "train": ("StageSpec", "train_stage", "merge_lora"),
    "export": ("export_stage", "quantize_stage", "evaluate_onnx_stage", "torch_latency_stage"),
    "report": ("report", "sweep_report"),
}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}
__all__ = list(_MODULE)


def __getattr__(name: str):
    if name in _MODULE:
        return getattr(importlib.import_module(f".{_MODULE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
