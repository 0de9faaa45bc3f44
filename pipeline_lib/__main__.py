"""Run one pipeline step by hand, with the same paths the Snakemake rules use.

    python -m pipeline_lib train --config config/config.yaml --stage baseline
    python -m pipeline_lib evaluate --config config/config.yaml --config config/my.yaml --stage pruned
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from . import steps
from .chain import LINEAGE_PATTERN, prune_settings
from .config import TRAINED_STAGES, load_config, stage_config
from .runner import run_logged

__all__ = ["main"]


def _prepare(cfg: dict, args: argparse.Namespace) -> dict:
    return dict(dataset_cfg=cfg["dataset"], family=cfg["task"], seed=cfg["seed"],
                manifest_path=args.results / "data" / "dataset.json")


def _train(cfg: dict, args: argparse.Namespace) -> dict:
    r = args.results
    spec = steps.StageSpec(label=args.stage, train_cfg=stage_config(cfg, args.stage), model_cfg=cfg["model"],
                           family=cfg["task"], seed=cfg["seed"], device=cfg["device"],
                           manifest_path=r / "data" / "dataset.json", out_checkpoint=r / f"{args.stage}.pt",
                           out_csv=r / "train" / f"{args.stage}.csv", workdir=r / "work" / args.stage,
                           init_checkpoint=args.init)
    return dict(spec=spec)


def _prune(cfg: dict, args: argparse.Namespace) -> dict:
    r = args.results
    return dict(checkpoint=r / "sparse.pt", prune_cfg=prune_settings("", cfg["prune"]), out_checkpoint=r / "pruned.pt",
                out_report=r / "prune.json")


def _evaluate(cfg: dict, args: argparse.Namespace) -> dict:
    r = args.results
    return dict(label=args.stage, checkpoint=r / f"{args.stage}.pt", manifest_path=r / "data" / "dataset.json",
                eval_cfg=cfg["evaluate"], device=cfg["device"], seed=cfg["seed"],
                out_metrics=r / "metrics" / f"{args.stage}.json",
                out_predictions=r / "metrics" / f"{args.stage}.predictions.json")


# Artifacts a step can read or write: results/<lineage><artifact>.pt; nothing outside results/.
ARTIFACTS = ("baseline", "sparse", "pruned", "pruned_finetuned")


def _artifact(label: str) -> str:
    """--stage of evaluate: an artifact under results/, e.g. `baseline` or `sweep/r0.3/pruned`."""
    if not re.fullmatch(f"{LINEAGE_PATTERN}({'|'.join(ARTIFACTS)})", label):
        raise argparse.ArgumentTypeError(f"{label!r} is not an artifact under results/ (one of {', '.join(ARTIFACTS)}, "
                                         "optionally after a lineage such as iter/1/ or sweep/r0.3/)")
    return label


class _OneLineParser(argparse.ArgumentParser):
    """Usage mistakes end like every user error: one line, no usage block."""

    def error(self, message: str) -> None:
        print(f"slimflow error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _check_config(**_: object) -> None:
    """Nothing to run: loading the config validated it (file:line of the first mistake)."""


COMMANDS = {
    "check-config": (_check_config, lambda cfg, args: {}, "validate the config files (merged in order) and exit"),
    "prepare-dataset": (steps.prepare_dataset, _prepare, "validate or generate the dataset; write its manifest"),
    "train": (steps.train_stage, _train, "train one stage with the shared engine"),
    "prune": (steps.prune_stage, _prune, "cut the smallest-|γ| channels of results/sparse.pt"),
    "evaluate": (steps.evaluate_stage, _evaluate, "evaluate a stage's checkpoint on the val split"),
}


def main(argv: list[str] | None = None) -> None:
    parser = _OneLineParser(prog="python -m pipeline_lib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    for name, (_, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", type=Path, action="append", help="experiment YAML (default config/config.yaml); "
                       "repeat to merge several in order, later files winning, as snakemake --configfile does")
        p.add_argument("--results", type=Path, default=Path("results"), help="results folder")
        if name == "train":
            p.add_argument("--stage", default="baseline", choices=list(TRAINED_STAGES),
                           help="the artifact to train: results/STAGE.pt")
        if name == "evaluate":
            p.add_argument("--stage", default="baseline", type=_artifact, help="artifact name: results/STAGE.pt")
        if name == "train":
            p.add_argument("--init", type=Path, default=None, help="start from this checkpoint")
    args = parser.parse_args(argv)
    fn, make_kwargs, _ = COMMANDS[args.command]
    configs = args.config or [Path("config/config.yaml")]
    run_logged(None, lambda: fn(**make_kwargs(load_config(configs), args)))


if __name__ == "__main__":
    main()
