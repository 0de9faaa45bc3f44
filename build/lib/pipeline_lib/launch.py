"""`slimflow run ARGS…` (or `python -m pipeline_lib run ARGS…`): Snakemake, with every config
file read strictly before Snakemake reads it.

    slimflow run -n --cores 4 --configfile config/test.yaml config/my.yaml

Snakemake loads each `--configfile` in its command-line parser, before any workflow code runs,
and evaluates a file holding `__use_yte__: true` as a YTE template: its `?` expressions run as
Python. No hook of Snakemake 9 runs earlier, so this command parses the arguments with
Snakemake's own parser, reads every config file they name (and config/config.yaml, which the
Snakefile reads itself) with `config.read_config_file` — UTF-8, no tags, a mapping, no YTE key;
one line naming file:line otherwise — and only then calls Snakemake's `main` with the same
arguments. Plain `snakemake` still works; the Snakefile refuses a YTE file too, but only after
Snakemake has evaluated a `--configfile` (README, "Config files").
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .config import read_config_files
from .errors import UserError

__all__ = ["config_files", "run"]


def config_files(args) -> list[Path]:
    """The config files Snakemake will read for these parsed arguments: each --configfile
    (relative to the working directory, as Snakemake resolves them) and the workflow's
    config/config.yaml (under --directory when given, as the Snakefile looks for it)."""
    files = [Path(p) for p in (args.configfile or [])]
    directory = Path(args.directory) if args.directory else Path()
    default = directory / "config" / "config.yaml"
    return files + ([default] if default.is_file() and not files else [])


def run(argv: Sequence[str]) -> None:
    """Check the config files, then run Snakemake with `argv` (never returns: Snakemake exits)."""
    from snakemake import cli

    argv = list(argv)
    try:
        _, args = cli.parse_args(argv)
    except SystemExit:
        raise
    except Exception as error:  # a profile Snakemake cannot parse, say: its own words, on one line
        raise UserError(f"snakemake arguments: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    read_config_files(config_files(args))
    cli.main(argv)
