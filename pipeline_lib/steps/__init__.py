"""One function per pipeline step, with plain arguments (paths and config sections).

`workflow/scripts/*.py` and `python -m pipeline_lib STEP` both call these with the arguments
`pipeline_lib.jobs` gives, so a step behaves the same under Snakemake, SLURM or by hand:

    evaluate_stage(**jobs.step_args("evaluate", Artifact("", "pruned"), cfg))

Each module's names are imported on first use (PEP 562): torch loads with the step that needs it.
"""
from ..lazy import lazy_exports

_WHERE = {
    "dataset": ("prepare_dataset",),
    "chain": ("prune_stage", "train_evaluator", "evaluate_stage"),
    "train": ("StageSpec", "train_stage", "merge_lora"),
    "export": ("export_stage", "quantize_stage", "evaluate_onnx_stage"),
    "latency": ("torch_latency_stage",),
    "reports": ("report", "sweep_report"),
}
__getattr__, __all__ = lazy_exports(__name__, _WHERE)
