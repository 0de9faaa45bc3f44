"""Experiment config: YAML validated against workflow/schemas/config.schema.yaml, with the chosen
family's keys (pipeline_lib/tasks/<task>/schema.yaml) merged in.

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
import yaml

from .errors import UserError
from .io import read_yaml_mapping
from .tasks import families, get_task

__all__ = ["SCHEMA_PATH", "TRAINED_STAGES", "schema", "load_config", "validate_config", "stage_config", "config_hash",
           "defaults"]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


def _read_schema(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _merge(base: dict, fragment: dict) -> dict:
    """`fragment` laid over `base`, mappings merged key by key (a family's keys join the shared ones)."""
    out = dict(base)
    for key, value in fragment.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def schema(task: str) -> dict:
    """The whole schema of a `task:` family: the shared keys plus the family's schema.yaml."""
    return _merge(_read_schema(SCHEMA_PATH), _read_schema(get_task(task).schema_path))


def _fill_defaults(validator_class: type[jsonschema.Validator]) -> type[jsonschema.Validator]:
    """A validator that also writes each absent property's `default` into the instance (nested:
    a section's `default: {}` is filled in turn), jsonschema's documented extension pattern."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        for name, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


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


def _task(config: dict, sources: Sequence[str | Path]) -> str:
    task = config.get("task", _read_schema(SCHEMA_PATH)["properties"]["task"]["default"])
    if task not in families():
        raise UserError(f"{_locate(('task',), sources)}: task: {task!r} is not a model family "
                        f"(one of: {', '.join(families())})")
    return task


def validate_config(config: dict, sources: Sequence[str | Path] = ()) -> dict:
    """Check `config` against its family's schema and return a copy with every default filled in.

    `sources` are the YAML files the config came from, in load order; errors point into them.
    """
    full = schema(_task(config, sources))
    _raise_first_error(jsonschema.Draft202012Validator(full), config, sources)
    config = copy.deepcopy(config)
    _fill_defaults(jsonschema.Draft202012Validator)(full).validate(config)
    _check_across_keys(config, sources)
    return _sorted_keys(config)


def _raise_first_error(validator: jsonschema.Validator, config: dict, sources: Sequence[str | Path]) -> None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        path, message = _describe(error)
        key = ".".join(str(p) for p in path) or "<top level>"
        raise UserError(f"{_locate(path, sources)}: {key}: {message}")


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


def defaults(task: str | None = None) -> dict:
    """The config with nothing set but `task`: every other value is the schema's default."""
    return validate_config({} if task is None else {"task": task})


# Trained artifacts (results/<artifact>.pt) and the stages.<section> each one trains with.
TRAINED_STAGES = {"baseline": "baseline", "sparse": "sparse", "pruned_finetuned": "finetune"}


def stage_config(config: dict, artifact: str) -> dict:
    """Training hyperparameters of one artifact: `train` with its `stages.<section>` laid over it."""
    return {**config["train"], **config["stages"][TRAINED_STAGES[artifact]]}


def config_hash(section: Any) -> str:
    """Stable short hash of a config section (key order does not matter)."""
    blob = json.dumps(section, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
