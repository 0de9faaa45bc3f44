"""Experiment config: YAML validated against workflow/schemas/config.schema.yaml.

    cfg = load_config("config/config.yaml")      # defaults filled, or UserError in one line
    train_cfg = stage_config(cfg, "baseline")      # train + stages.baseline overrides

Validation errors name the file, the line and the dotted key:
``config/x.yaml:7: train.epochs: -1 is less than the minimum of 1``.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import jsonschema
import snakemake.utils
import yaml

from .errors import UserError
from .io import read_yaml_mapping

__all__ = ["SCHEMA_PATH", "TRAINED_STAGES", "load_config", "validate_config", "stage_config", "config_hash", "defaults"]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _key_lines(text: str) -> dict[tuple, int]:
    """Map each key path in a YAML document to its 1-based line, e.g. ('train', 'epochs') -> 7."""
    lines: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = path + (key.value,)
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


def _describe(error: jsonschema.ValidationError) -> tuple[tuple, str]:
    """The offending key path and a message that says what to do."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return path + (extra[0],), f"unknown key (allowed here: {', '.join(allowed)})"
    return path, error.message


def _locate(path: tuple, sources: Sequence[str | Path]) -> str:
    """`file:line` of a key path in the last config file that sets it (later files override)."""
    for source in reversed(sources):
        try:
            line = _key_lines(Path(source).read_text(encoding="utf-8")).get(path)
        except (OSError, yaml.YAMLError):
            continue
        if line:
            return f"{source}:{line}"
    return str(sources[-1]) if sources else "config"


def validate_config(config: dict, sources: Sequence[str | Path] = ()) -> dict:
    """Check `config` against the schema and return a copy with every default filled in.

    `sources` are the YAML files the config came from, in load order; errors point into them.
    """
    validator = jsonschema.Draft202012Validator(_schema())
    _raise_first_error(validator, config, sources)
    config = copy.deepcopy(config)
    snakemake.utils.validate(config, str(SCHEMA_PATH), set_default=True)  # fills nested defaults
    # Again with the defaults in: a default can conflict with a key the user set (task: reid with
    # the detector's default model.name).
    _raise_first_error(validator, config, sources, note=" (the default; set it)")
    _check_across_keys(config, sources)
    return _sorted_keys(config)


def _raise_first_error(validator: jsonschema.Validator, config: dict, sources: Sequence[str | Path],
                       note: str = "") -> None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        path, message = _describe(error)
        key = ".".join(str(p) for p in path) or "<top level>"
        raise UserError(f"{_locate(path, sources)}: {key}: {message}{note}")


def _sorted_keys(node: Any) -> Any:
    """Mappings in key order: Snakemake compares rule params as text, so the order keys were
    written in (or merged from several config files) must not rerun anything."""
    if isinstance(node, dict):
        return {k: _sorted_keys(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [_sorted_keys(v) for v in node]
    return node


def _check_across_keys(config: dict, sources: Sequence[str | Path]) -> None:
    """Rules a JSON schema cannot say: they relate two keys."""
    prune = config["prune"]
    if isinstance(prune["ratio"], list) and len(prune["ratio"]) != prune["iterations"]:
        raise UserError(f"{_locate(('prune', 'ratio'), sources)}: prune.ratio: {len(prune['ratio'])} ratios given "
                        f"for prune.iterations={prune['iterations']} (give one ratio per iteration, or one number)")


def load_config(path: str | Path) -> dict:
    return validate_config(read_yaml_mapping(path, "config"), [path])


def defaults() -> dict:
    """The config with nothing set: every value is the schema's default."""
    return validate_config({})


# Trained artifacts (results/<artifact>.pt) and the stages.<section> each one trains with.
TRAINED_STAGES = {"baseline": "baseline", "sparse": "sparse", "pruned_finetuned": "finetune"}


def stage_config(config: dict, artifact: str) -> dict:
    """Training hyperparameters of one artifact: `train` with its `stages.<section>` laid over it."""
    return {**config["train"], **config["stages"][TRAINED_STAGES[artifact]]}


def config_hash(section: Any) -> str:
    """Stable short hash of a config section (key order does not matter)."""
    blob = json.dumps(section, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
