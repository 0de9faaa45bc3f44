"""Run one pipeline step by hand, with the same paths the Snakemake rules use.

    python -m pipeline_lib train --config config/config.yaml --stage baseline --set train.epochs=5
    python -m pipeline_lib evaluate --config config/config.yaml --config config/my.yaml --stage pruned
    python -m pipeline_lib predict --model results/export/pruned_finetuned.int8.onnx --source img.jpg --out pred/
    python -m pipeline_lib compare runs/r05 runs/r08 --plot compare.png
    python -m pipeline_lib merge-lora --base results/pruned.pt --adapter site_b.lora.pt --out site_b.pt
    python -m pipeline_lib import-weights best.pt yolov5_imported.pt     # docs/WEIGHTS.md
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path
from typing import Callable

import yaml

from .chain import LINEAGE_PATTERN, evaluator, iteration_lineages, manifest, prune_settings, sweep_lineages, teacher
from .config import TRAINED_STAGES, defaults, load_config, stage_config
from .errors import UserError
from .export import paths as export_paths
from .runner import run_logged
from .tasks import validation_settings

__all__ = ["main", "apply_settings"]

EVALUATED = ("baseline", "sparse", "pruned", "pruned_finetuned")  # the artifacts a chain writes


def apply_settings(config_paths: list[Path], assignments: list[str]) -> dict:
    """The config files (merged in order, later ones winning) with `key.sub=value` assignments laid
    over them (values read as YAML), validated as a whole."""
    overrides: dict = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(f"--set {assignment}: expected KEY=VALUE with a dotted key, e.g. train.epochs=5")
        *parents, leaf = key.split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {assignment}: {part} is not a section")
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(f"--set {assignment}: the value is not valid YAML") from None
    try:
        return load_config(config_paths, overrides)
    except UserError as e:
        raise UserError(f"{e} (with --set {' '.join(assignments)})" if assignments else str(e)) from None


def _in(results: Path, path: str) -> Path:
    """A workflow path (results/...) under the --results folder."""
    return results / Path(path).relative_to("results")


# Each command: (function, its keyword arguments from (config, args), one-line help, extra options).
def _prepare(cfg: dict, args: argparse.Namespace) -> dict:
    return dict(dataset_cfg=cfg["dataset"], family=cfg["task"], seed=cfg["seed"],
                manifest_path=args.results / "data" / "dataset.json")


def _train(cfg: dict, args: argparse.Namespace) -> dict:
    r = args.results
    spec = _step(".steps:StageSpec")(label=args.stage, train_cfg=stage_config(cfg, args.stage), model_cfg=cfg["model"],
                           family=cfg["task"], validation=validation_settings(cfg), seed=cfg["seed"], device=cfg["device"],
                           manifest_path=r / "data" / "dataset.json", out_checkpoint=r / f"{args.stage}.pt",
                           out_csv=r / "train" / f"{args.stage}.csv", workdir=r / "work" / args.stage,
                           init_checkpoint=args.init, teacher_checkpoint=_teacher(r, args.stage, cfg))
    return dict(spec=spec)


def _teacher(results: Path, stage: str, cfg: dict) -> Path | None:
    """The main chain's teacher of a stage (stages.finetune.distill), under --results."""
    path = teacher("", stage, cfg)
    return None if path is None else _in(results, path)


def _prune(cfg: dict, args: argparse.Namespace) -> dict:
    r = args.results
    return dict(checkpoint=r / "sparse.pt", prune_cfg=prune_settings("", cfg["prune"], cfg["export"]["threads"]),
                out_checkpoint=r / "pruned.pt", out_report=r / "prune.json")


def _stage_data(results: Path, stage: str, cfg: dict) -> dict:
    """The artifact's manifest (stages.finetune.dataset) and the family's evaluator on it (the
    diffusion judge), under --results, as the workflow's rules pass them."""
    artifact = stage.rsplit("/", 1)[-1]
    judge = evaluator(artifact, cfg)
    return dict(manifest_path=_in(results, manifest(artifact, cfg)), evaluator=judge and _in(results, judge))


def _evaluate(cfg: dict, args: argparse.Namespace) -> dict:
    r = args.results
    return dict(label=args.stage, checkpoint=r / f"{args.stage}.pt", **_stage_data(r, args.stage, cfg),
                eval_cfg=cfg["evaluate"], device=cfg["device"], seed=cfg["seed"],
                out_metrics=r / "metrics" / f"{args.stage}.json",
                out_predictions=r / "metrics" / f"{args.stage}.predictions.json")


def _export(cfg: dict, args: argparse.Namespace) -> dict:
    r = args.results
    return dict(checkpoint=r / f"{args.stage}.pt", manifest_path=r / "data" / "dataset.json", export_cfg=cfg["export"],
                out_onnx=r / "export" / f"{args.stage}.onnx", out_report=r / "export" / f"{args.stage}.json",
                seed=cfg["seed"])


def _quantize(cfg: dict, args: argparse.Namespace) -> dict:
    r = args.results
    return dict(onnx_path=r / "export" / f"{args.stage}.onnx", report_path=r / "export" / f"{args.stage}.json",
                manifest_path=r / "data" / "dataset.json", export_cfg=cfg["export"],
                out_onnx=r / "export" / f"{args.stage}.int8.onnx", out_report=r / "export" / f"{args.stage}.int8.json",
                seed=cfg["seed"])


def _evaluate_onnx(cfg: dict, args: argparse.Namespace) -> dict:
    prefix = "" if args.stage == export_paths.DEPLOYED else f"{args.stage}."
    inputs = export_paths.onnx_inputs(prefix, args.precision)
    return dict(onnx_path=_in(args.results, inputs["onnx"]), report_path=_in(args.results, inputs["report"]),
                **_stage_data(args.results, args.stage, cfg), eval_cfg=cfg["evaluate"],
                export_cfg=cfg["export"], seed=cfg["seed"], threads=1,
                out_metrics=args.results / "metrics" / f"{prefix}onnx_{args.precision}.json")


def _latency(cfg: dict, args: argparse.Namespace) -> dict:
    return dict(checkpoint=args.results / f"{args.stage}.pt", export_cfg=cfg["export"],
                out_json=args.results / "latency" / f"{args.stage}.torch.json", seed=cfg["seed"])


def _report(cfg: dict, args: argparse.Namespace) -> dict:
    r = args.results
    rows = [("", s) for s in EVALUATED] + [(lin, "pruned_finetuned") for lin in iteration_lineages(cfg["prune"])[:-1]]
    onnx = [_in(r, p) for p in export_paths.onnx_metrics(cfg["export"])]
    return dict(metrics_paths=[r / f"{lin}metrics" / f"{s}.json" for lin, s in rows] + onnx,
                latency_paths=[_in(r, p) for p in export_paths.torch_latencies()],
                checkpoints=[r / f"{lin}{s}.pt" for lin, s in rows],
                gamma_checkpoints={"baseline": r / "baseline.pt", "sparse": r / "sparse.pt"},
                curves={s: r / "train" / f"{s}.csv" for s in TRAINED_STAGES}, out_csv=r / "summary.csv",
                out_md=r / "summary.md", out_provenance=r / "provenance.json",
                out_gamma_png=r / "plots" / "bn_gamma.png", out_curves_png=r / "plots" / "training_curves.png",
                out_latency_png=r / "plots" / "latency.png", prune_report=r / "prune.json",
                out_page=r / "report.rst", manifest_path=r / "data" / "dataset.json",
                predictions={s: r / "metrics" / f"{s}.predictions.json" for s in EVALUATED},
                sweep_metrics=[p for lin in sweep_lineages(cfg["prune"])  # the sweep's points where it ran
                               if (p := r / f"{lin}metrics" / "pruned_finetuned.json").exists()],
                out_channels_png=r / "plots" / "channels.png", out_pareto_png=r / "plots" / "pareto.png",
                out_evaluation_dir=r / "plots" / "evaluation", out_samples_dir=r / "plots" / "samples")


def _predict(cfg: dict, args: argparse.Namespace) -> dict:
    return dict(model_path=args.model, source=args.source, out_dir=args.out, config=cfg, batch_size=args.batch_size,
                device=cfg["device"] if cfg else "cpu")


def _compare(cfg: dict | None, args: argparse.Namespace) -> dict:
    return dict(runs=args.runs, out_png=args.plot, out_csv=args.csv)


def _merge_lora(cfg: dict | None, args: argparse.Namespace) -> dict:
    return dict(base=args.base, adapter=args.adapter, out_checkpoint=args.out)


def _merge_lora_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", type=Path, required=True, help="the checkpoint the adapter was trained on (results/pruned.pt)")
    p.add_argument("--adapter", type=Path, required=True, help="the adapter (results/pruned_finetuned.lora.pt)")
    p.add_argument("--out", type=Path, required=True, help="the merged checkpoint to write")


def _import_weights(cfg: dict | None, args: argparse.Namespace) -> dict:
    family = args.task or (cfg or defaults())["task"]
    return dict(path_in=args.weights_in, path_out=args.weights_out, family=family,
                model_cfg=cfg["model"] if cfg and cfg["task"] == family else None)


def _import_weights_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights_in", type=Path, metavar="IN", help="weights you have: a YOLOv5 .pt, a torchvision or HRNet .pth")
    p.add_argument("weights_out", type=Path, metavar="OUT", help="the slimflow checkpoint to write (use it as model.weights)")
    p.add_argument("--task", default=None, help="model family of IN (default: the config's task, else the schema's default task)")


def _stage(choices) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--stage", default="baseline", choices=list(choices), help="the artifact: results/STAGE.pt")
    return add


def _artifact(label: str) -> str:
    """--stage of evaluate: an artifact under results/, e.g. `baseline` or `sweep/r0.3/pruned` (never outside)."""
    if not re.fullmatch(f"{LINEAGE_PATTERN}({'|'.join(EVALUATED)})", label):
        raise argparse.ArgumentTypeError(f"{label!r} is not an artifact under results/ (one of {', '.join(EVALUATED)}, "
                                         "optionally after a lineage such as iter/1/ or sweep/r0.3/)")
    return label


def _lineage_stage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", default="baseline", type=_artifact,
                   help="the artifact: results/STAGE.pt (e.g. pruned, sweep/r0.5/pruned)")


def _check_config(**_: object) -> None:
    """Nothing to run: loading the config validated it (file:line of the first mistake)."""


def _train_options(p: argparse.ArgumentParser) -> None:
    _stage(TRAINED_STAGES)(p)
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint (e.g. results/baseline.pt)")


def _deployed_stage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", default=export_paths.DEPLOYED, choices=EVALUATED, help="the artifact: results/STAGE.pt")


def _evaluate_onnx_options(p: argparse.ArgumentParser) -> None:
    _deployed_stage(p)
    p.add_argument("--precision", default="fp32", choices=("fp32", "int8"), help="which exported model")


def _predict_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True,
                   help="a checkpoint (results/X.pt) or an exported model (results/export/X.onnx, X.int8.onnx)")
    p.add_argument("--source", type=Path, required=True, help="an image, or a folder of images (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="folder for predictions.json and the drawn images")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")


def _compare_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", type=Path, help="run folders (each with results/summary.csv)")
    p.add_argument("--plot", type=Path, default=None, help="write accuracy against FLOPs per run to this PNG")
    p.add_argument("--csv", type=Path, default=None, help="write the combined table to this CSV")


def _step(where: str) -> Callable:
    """A step by "module:name", imported when its command runs: torch loads only then, so a bad
    command line or config is answered at once."""
    module, name = where.split(":")
    return getattr(importlib.import_module(module, __package__), name)


# command: (step, its keyword arguments from the config and args, help, options)
COMMANDS = {
    "check-config": (_check_config, lambda cfg, args: {}, "validate the config files (merged in order) and exit", None),
    "prepare-dataset": (".steps:prepare_dataset", _prepare, "validate or generate the dataset; write its manifest", None),
    "train": (".steps:train_stage", _train, "train one stage with the shared engine", _train_options),
    "prune": (".steps:prune_stage", _prune, "cut the smallest-|γ| channels of results/sparse.pt", None),
    "evaluate": (".steps:evaluate_stage", _evaluate, "evaluate a stage's checkpoint on the val split", _lineage_stage),
    "export": (".export.steps:export_stage", _export, "export a checkpoint to ONNX, checked in ONNX Runtime",
               _deployed_stage),
    "quantize": (".export.steps:quantize_stage", _quantize, "INT8 static quantization of an exported model",
                 _deployed_stage),
    "evaluate-onnx": (".export.steps:evaluate_onnx_stage", _evaluate_onnx,
                      "evaluate an exported model in ONNX Runtime, with its latency", _evaluate_onnx_options),
    "latency": (".export.steps:torch_latency_stage", _latency, "PyTorch eager CPU latency of a checkpoint",
                _deployed_stage),
    "report": (".steps:report", _report, "summary.csv/.md, provenance.json and the plots of a finished chain", None),
    "predict": (".predict:predict", _predict, "draw and save a model's predictions on your images (as evaluation computes them)",
                _predict_options),
    "merge-lora": (".steps:merge_lora", _merge_lora, "apply a LoRA adapter to its base checkpoint and merge it",
                   _merge_lora_options),
    "import-weights": (".weights:import_weights_file", _import_weights,
                       "convert weights you have into a slimflow checkpoint once, without running their pickle",
                       _import_weights_options),
    "compare": (".compare:compare", _compare, "the summaries of several runs side by side (table, optional plot)",
                _compare_options),
}
NEEDS_NO_CONFIG = {"compare", "merge-lora"}
OPTIONAL_CONFIG = {"predict", "import-weights"}  # a model knows its family; a config only supplies evaluate's thresholds


# Inputs a step reads, with the command that writes them: a missing one is a one-line error, not a traceback.
_INPUTS = {"manifest_path": "prepare-dataset", "checkpoint": "train or prune", "init_checkpoint": "train",
           "teacher_checkpoint": "train",
           "base": "train or prune", "adapter": "train with stages.<stage>.lora",
           "onnx_path": "export", "report_path": "export"}


def _check_inputs(command: str, kwargs: dict) -> None:
    fields = {**kwargs, **(vars(kwargs["spec"]) if "spec" in kwargs else {})}
    for key, writer in _INPUTS.items():
        path = fields.get(key)
        if path is not None and command != "prepare-dataset" and not Path(path).exists():
            raise UserError(f"{path}: not found (written by `python -m pipeline_lib {writer}` or by snakemake; "
                            f"see --results)")


class _OneLineParser(argparse.ArgumentParser):
    """Usage mistakes end like every user error: one line, no usage block."""

    def error(self, message: str) -> None:
        print(f"slimflow error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m pipeline_lib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    for name, (_, _, help_text, options) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name not in NEEDS_NO_CONFIG:
            p.add_argument("--config", type=Path, action="append",
                           help="experiment YAML (default: config/config.yaml" +
                                (", only if given" + (", for its evaluate section" if name == "predict" else "")
                                 if name in OPTIONAL_CONFIG else "") +
                                "); repeat to merge several in order, later files winning, as --configfile does")
            p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                           help="override a config key (validated like the file), e.g. --set train.epochs=5; repeatable")
            p.add_argument("--results", type=Path, default=Path("results"), help="results folder")
        if options is not None:
            options(p)
    return parser


def _run(args: argparse.Namespace):
    step, make_kwargs, _, _ = COMMANDS[args.command]
    cfg = None
    configs = getattr(args, "config", None) or ([] if args.command in OPTIONAL_CONFIG else [Path("config/config.yaml")])
    if args.command not in NEEDS_NO_CONFIG and configs:
        cfg = apply_settings(configs, args.settings)
    elif getattr(args, "settings", None):
        raise UserError("--set needs --config (the file whose keys it overrides)")
    kwargs = make_kwargs(cfg, args)
    _check_inputs(args.command, kwargs)
    result = (step if callable(step) else _step(step))(**kwargs)
    if args.command == "compare":
        print(result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    run_logged(None, lambda: _run(args))


if __name__ == "__main__":
    main()
