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
import contextlib
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Callable

from . import __version__
from .chain import LINEAGE_PATTERN
from .config import TRAINED_STAGES, defaults, stage_config
from .errors import UserError
from .io import read_yaml_mapping, sweep_temporaries
from .layout import DEPLOYED, EVALUATED, Artifact, DataFolder, Exported, Results, onnx_prefix
from .overrides import apply_settings
from .runner import run_logged

__all__ = ["main"]


# Each command: (function, its keyword arguments from (config, args), one-line help, extra options).
# A step's arguments are the workflow's (pipeline_lib.jobs), under --results.
def _job(step: str, key=None):
    def make(cfg: dict, args: argparse.Namespace) -> dict:
        from . import jobs  # after the config: it reads the family registry

        return jobs.step_args(step, key(args) if key else Artifact("", args.stage, str(args.results)), cfg)
    return make


def _train(cfg: dict, args: argparse.Namespace) -> dict:
    kwargs = _job("train_lora" if stage_config(cfg, args.stage).get("lora") else "train")(cfg, args)
    if args.init is not None:  # a parent of the user's choosing
        kwargs["init_checkpoint"] = args.init
    return kwargs


def _lineage_artifact(args: argparse.Namespace) -> Artifact:
    lineage, _, stage = args.stage.rpartition("/")
    return Artifact(lineage and f"{lineage}/", stage, str(args.results))


def _predict(cfg: dict, args: argparse.Namespace) -> dict:
    return dict(model_path=args.model, source=args.source, out_dir=args.out, config=cfg, batch_size=args.batch_size,
                device=cfg["device"] if cfg else "cpu", eval_threshold=args.eval_threshold)


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
    model_cfg = (cfg if cfg and cfg["task"] == family else defaults(family))["model"]  # resolved here, once
    return dict(path_in=args.weights_in, path_out=args.weights_out, family=family, model_cfg=model_cfg)


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


def _snakemake_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, metavar="SNAKEMAKE_ARGS",
                   help="snakemake's own arguments, e.g. -n --cores 4 --configfile config/my.yaml")


def _set_keys(node: object, prefix: tuple = ()) -> set[tuple]:
    """The dotted keys a config file sets: its leaves (an empty mapping, such as `distill: {}`, is one)."""
    if not isinstance(node, dict) or not node:
        return {prefix}
    return set().union(*(_set_keys(value, (*prefix, key)) for key, value in node.items()))


def _check_config(paths: list[Path], settings: list[str], task: str) -> str:
    """Loading the config validated it (file:line of the first mistake); what passed, in one line."""
    keys = set().union(*(_set_keys(read_yaml_mapping(path, "config")) for path in paths),
                       *({tuple(s.partition("=")[0].split("."))} for s in settings))
    return f"ok: {' + '.join(map(str, paths))} ({task}, {len(keys)} key{'s' * (len(keys) != 1)} set)"


def _train_options(p: argparse.ArgumentParser) -> None:
    _stage(TRAINED_STAGES)(p)
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint instead of the stage's parent in the chain (results/baseline.pt for sparse)")


def _deployed_stage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", default=DEPLOYED, choices=EVALUATED, help="the artifact: results/STAGE.pt")


def _evaluate_onnx_options(p: argparse.ArgumentParser) -> None:
    _deployed_stage(p)
    p.add_argument("--precision", default="fp32", choices=("fp32", "int8"), help="which exported model")


def _predict_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True,
                   help="a checkpoint (results/X.pt) or an exported model (results/export/X.onnx, X.int8.onnx)")
    p.add_argument("--source", type=Path, required=True, help="an image, or a folder of images (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="folder for predictions.json and the drawn images")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--eval-threshold", action="store_true",
                   help="keep boxes from evaluate.conf_thres (0.001: what mAP scored) instead of 0.25")


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
    "check-config": (_check_config, lambda cfg, args: dict(paths=_config_paths(args), settings=args.settings,
                                                           task=cfg["task"]),
                     "validate the config files (merged in order) and say what they set", None),
    "prepare-dataset": (".steps:prepare_dataset", _job("prepare_dataset", lambda a: DataFolder("", str(a.results))),
                        "validate or generate the dataset; write its manifest", None),
    "train": (".steps:train_stage", _train, "train one stage with the shared engine", _train_options),
    "prune": (".steps:prune_stage", _job("prune", lambda a: Artifact("", "pruned", str(a.results))),
              "cut the smallest-|γ| channels of results/sparse.pt", None),
    "evaluate": (".steps:evaluate_stage", _job("evaluate", _lineage_artifact),
                 "evaluate a stage's checkpoint on the val split", _lineage_stage),
    "export": (".steps:export_stage", _job("export_onnx"), "export a checkpoint to ONNX, checked in ONNX Runtime",
               _deployed_stage),
    "quantize": (".steps:quantize_stage", _job("quantize_int8"), "INT8 static quantization of an exported model",
                 _deployed_stage),
    "evaluate-onnx": (".steps:evaluate_onnx_stage",
                      lambda cfg, args: {**_job("evaluate_onnx", lambda a: Exported(onnx_prefix(a.stage), a.precision,
                                                                                     str(a.results)))(cfg, args),
                                         "threads": 1},
                      "evaluate an exported model in ONNX Runtime, with its latency", _evaluate_onnx_options),
    "latency": (".steps:torch_latency_stage", _job("latency_torch"), "PyTorch eager CPU latency of a checkpoint",
                _deployed_stage),
    "report": (".steps:report", _job("report", lambda a: Results(str(a.results))),
               "summary.csv/.md, provenance.json and the plots of a finished chain", None),
    "predict": (".predict:predict", _predict, "draw and save a model's predictions on your images (as evaluation computes them)",
                _predict_options),
    "merge-lora": (".steps:merge_lora", _merge_lora, "apply a LoRA adapter to its base checkpoint and merge it",
                   _merge_lora_options),
    "import-weights": (".weights:import_weights_file", _import_weights,
                       "convert weights you have into a slimflow checkpoint once, without running their pickle",
                       _import_weights_options),
    "compare": (".compare:compare", _compare, "the summaries of several runs side by side (table, optional plot)",
                _compare_options),
    "run": (".launch:run", lambda cfg, args: {"argv": args.snakemake_args},
            "snakemake, with every config file read strictly first (no config file runs code)", _snakemake_args),
}
NEEDS_NO_CONFIG = {"compare", "merge-lora", "run"}
OPTIONAL_CONFIG = {"predict", "import-weights"}  # a model knows its family; a config only supplies evaluate's thresholds


# Inputs a step reads, with the command that writes them: a missing one is a one-line error, not a traceback.
_INPUTS = {"manifest_path": "prepare-dataset", "checkpoint": "train or prune", "init_checkpoint": "train",
           "teacher_checkpoint": "train",
           "base": "train or prune", "adapter": "train with stages.<stage>.lora",
           "onnx_path": "export", "report_path": "export"}


def _check_inputs(command: str, kwargs: dict) -> None:
    for key, writer in _INPUTS.items():
        path = kwargs.get(key)
        if path is not None and command != "prepare-dataset" and not Path(path).exists():
            raise UserError(f"{path}: not found (written by `{program()} {writer}` or by snakemake; "
                            f"see --results)")


class _OneLineParser(argparse.ArgumentParser):
    """Usage mistakes end like every user error: one line, no usage block."""

    def error(self, message: str) -> None:
        print(f"slimflow error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def program() -> str:
    """The name the user typed: `slimflow` (the installed script) or `python -m pipeline_lib`."""
    name = Path(sys.argv[0]).name
    return "python -m pipeline_lib" if name in ("__main__.py", "-m", "") else name


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog=program(), description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"slimflow {__version__}")
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


def _config_paths(args: argparse.Namespace) -> list[Path]:
    """The --config files, else config/config.yaml (none for a command whose config is optional)."""
    return getattr(args, "config", None) or ([] if args.command in OPTIONAL_CONFIG else [Path("config/config.yaml")])


def _run(args: argparse.Namespace):
    step, make_kwargs, _, _ = COMMANDS[args.command]
    cfg = None
    configs = _config_paths(args)
    if args.command not in NEEDS_NO_CONFIG and configs:
        cfg = apply_settings(configs, args.settings)
    elif getattr(args, "settings", None):
        raise UserError("--set needs --config (the file whose keys it overrides)")
    kwargs = make_kwargs(cfg, args)
    _check_inputs(args.command, kwargs)
    sweep_temporaries(v for k, v in kwargs.items() if k.startswith("out_") and isinstance(v, (str, Path)))
    result = (step if callable(step) else _step(step))(**kwargs)
    if args.command in ("compare", "check-config"):
        print(result)
    return result


@contextlib.contextmanager
def _reader_may_stop_early():
    """`slimflow compare a b | head -1`: once the reader has closed the pipe, stop quietly with exit
    status 141 (128 + SIGPIPE, what a shell reports for a coreutils program in that place), not a
    traceback. The flush is inside, so that output still buffered at exit meets the closed pipe here."""
    try:
        try:
            yield
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit
        sys.exit(141)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    with _reader_may_stop_early():
        if argv[:1] == ["run"] and argv[1:2] != ["-h"]:  # snakemake's options, passed on as they are
            run_logged(None, lambda: _step(".launch:run")(argv[1:]))
            return
        args = _parser().parse_args(argv)
        run_logged(None, lambda: _run(args))


if __name__ == "__main__":
    main()
