"""Experiment config: YAML validated against pipeline_lib/schemas/config.schema.yaml, with the chosen
family's keys (pipeline_lib/tasks/<task>/schema.yaml) merged in; both ship inside the package.

    cfg = load_config("config/config.yaml")      # defaults filled, or UserError in one line
    train_cfg = stage_config(cfg, "baseline")      # train + stages.baseline overrides

Validation errors name the file, the line and the dotted key:
``config/x.yaml:7: train.epochs: -1 is less than the minimum of 1``. With several config files
(Snakemake: the Snakefile's `configfile:`, then each `--configfile` in order, then `--config`
values), the error names the one whose value won the merge.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import jsonschema
import yaml

from .chain import sweep_lineage
from .errors import ConfigError, UserError
from .io import read_config_file
from .registry import families, family_check, schema_path
from .targets import TARGET_KEYS, check_int8_targets

__all__ = ["SCHEMA_PATH", "TRAINED_STAGES", "schema", "load_config", "read_config_files", "validate_config",
           "stage_config", "config_hash", "defaults"]

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"  # package data


def _read_schema(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _merge(base: dict, fragment: dict) -> dict:
    """`fragment` laid over `base`, mappings merged key by key (a family's keys join the shared ones;
    config files merge so too, as Snakemake's update_config merges --configfile)."""
    out = dict(base)
    for key, value in fragment.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def schema(task: str) -> dict:
    """The whole schema of a `task:` family: the shared keys plus the family's schema.yaml."""
    return _merge(_read_schema(SCHEMA_PATH), _read_schema(schema_path(task)))


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


# One rule for every integer key: an integer, never a float (JSON Schema's "integer" takes 4.0; a step would crash on it).
_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=jsonschema.Draft202012Validator
                                          .TYPE_CHECKER.redefine("integer", lambda _, x: type(x) is int))


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
    if error.validator == "anyOf":  # jsonschema says only "not valid under any of the given schemas"
        return path, f"{error.instance!r} is not {' or '.join(map(_expected, error.validator_value))}"
    return path, error.message


_KINDS = {"array": "a list", "number": "a number", "integer": "an integer", "string": "a string", "object": "a mapping"}


def _expected(option: dict) -> str:
    """What one anyOf branch accepts, in words: 'auto', 'auto' or 'coco', a list."""
    if "const" in option:
        return repr(option["const"])
    if "enum" in option:
        return " or ".join(map(repr, option["enum"]))
    return _KINDS.get(option.get("type"), "valid")


def _origins(layers: Sequence[tuple[str, Any]]) -> tuple[dict[tuple, str], dict[tuple, str]]:
    """Which layer's value survives a Snakemake merge of `layers` (in merge order), per key path:
    (values, mappings). Snakemake's update_config merges mappings key by key and replaces anything
    else whole, so a scalar or a list belongs to the last layer that sets it, with all below it;
    a mapping is only named when the error is about the mapping itself."""
    values: dict[tuple, str] = {}
    mappings: dict[tuple, str] = {}

    def walk(node: Any, path: tuple, label: str) -> None:
        if isinstance(node, Mapping):
            mappings[path] = label
            for key, value in node.items():
                walk(value, path + (key,), label)
            return
        for below in [p for p in values if p[:len(path)] == path and len(p) > len(path)]:
            del values[below]  # replaced whole
        values[path] = label
        if isinstance(node, list):
            for i, value in enumerate(node):
                values[path + (i,)] = label

    for label, data in layers:
        walk(data, (), label)
    return values, mappings


def _locate(path: tuple, sources: Sequence[str | Path], overrides: Mapping | None = None) -> str:
    """`file:line` of the config file whose value at a key path won the merge (or `--config`).

    `sources` are in merge order, each overriding the ones before it; Snakemake merges the
    Snakefile's `configfile:` first, then each `--configfile` in order, then `--config` values
    (`overrides`). A key no source sets (a default) is blamed on the last file.
    """
    texts, layers = {}, []
    for source in sources:
        try:
            texts[str(source)] = Path(source).read_text(encoding="utf-8")
            layers.append((str(source), yaml.safe_load(texts[str(source)]) or {}))
        except (OSError, yaml.YAMLError):
            continue
    if overrides:
        layers.append(("--config", overrides))
    values, mappings = _origins(layers)
    label = values.get(path) or mappings.get(path)
    for n in range(len(path) - 1, 0, -1):  # else the deepest value above it (a list element: its list)
        if label is not None:
            break
        label = values.get(path[:n])
    if label is None:
        return str(sources[-1]) if sources else "config"
    if label == "--config":
        return "--config"
    lines = _key_lines(texts[label])
    line = next((lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines), None)
    return f"{label}:{line}" if line else label


def _task(config: dict, locate) -> str:
    task = config.get("task", _read_schema(SCHEMA_PATH)["properties"]["task"]["default"])
    if task not in families():
        raise UserError(f"{locate(('task',))}: task: {task!r} is not a model family (one of: {', '.join(families())})")
    return task


def read_config_files(sources: Sequence[str | Path]) -> None:
    """Parse each config file strictly (`read_config_file`); Snakemake's own loader silently keeps
    the last of two equal keys and evaluates YTE templates."""
    for source in sources:
        read_config_file(source)


def validate_config(config: dict, sources: Sequence[str | Path] = (), overrides: Mapping | None = None) -> dict:
    """Check `config` against its family's schema and return a copy with every default filled in.

    `sources` are the YAML files the config was merged from, in merge order (later files win),
    and `overrides` the values set on top of them (Snakemake's `--config`); errors point at the
    file and line that set the offending value.
    """
    def locate(path: tuple) -> str:
        return _locate(path, sources, overrides)

    full = schema(_task(config, locate))
    _raise_first_error(_Validator(full), config, locate)
    config = copy.deepcopy(config)
    _fill_defaults(_Validator)(full).validate(config)
    try:
        _check_across_keys(config)
        if check := family_check(config["task"], "check_config"):  # the family's rules a schema cannot say
            check(config)
    except ConfigError as e:
        raise UserError(f"{locate(e.key)}: {e}") from None
    return _sorted_keys(config)


def _raise_first_error(validator: jsonschema.Validator, config: dict, locate) -> None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        path, message = _describe(error)
        key = ".".join(str(p) for p in path) or "<top level>"
        raise UserError(f"{locate(path)}: {key}: {message}")


def _sorted_keys(node: Any) -> Any:
    """Mappings in key order: Snakemake compares rule params as text, so the order keys were
    written in (or merged from several config files) must not rerun anything."""
    if isinstance(node, dict):
        return {k: _sorted_keys(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [_sorted_keys(v) for v in node]
    return node


def _check_across_keys(config: dict) -> None:
    """Rules a JSON schema cannot say: they relate two keys, or values after formatting."""
    prune = config["prune"]
    if isinstance(prune["ratio"], list) and len(prune["ratio"]) != prune["iterations"]:
        raise ConfigError(("prune", "ratio"), f"{len(prune['ratio'])} ratios given for prune.iterations="
                          f"{prune['iterations']} (give one ratio per iteration, or one number)")
    # Config files laid over each other merge a target's keys, so a later file switches the goal
    # with e.g. {flops: null, speedup: 2.5}: null keys are dropped here, once, for every consumer.
    if prune["target"] is not None:
        prune["target"] = {k: v for k, v in prune["target"].items() if v is not None}
    prune["sweep"] = [{k: v for k, v in p.items() if v is not None} if isinstance(p, dict) else p for p in prune["sweep"]]
    points = [(("prune", "sweep", i), p) for i, p in enumerate(prune["sweep"])]
    for where, target in [(("prune", "target"), prune["target"]), *points]:
        given = [k for k in TARGET_KEYS if k in target] if isinstance(target, dict) else ["ratio"]
        if target is not None and len(given) != 1:
            hint = " (a config laid over another keeps its target's keys: set the other one to null)" if given else ""
            raise ConfigError(where, f"give exactly one of {', '.join(TARGET_KEYS)} "
                              f"(got {', '.join(given) or 'none'}){hint}")
    check_int8_targets(points + [(("prune", "target"), prune["target"])], config["export"]["int8"])
    if prune["target"] is not None:
        if prune["iterations"] > 1:
            raise ConfigError(("prune", "target"), "a target sets the final model's size, not each iteration's: "
                              "with prune.iterations > 1 give prune.ratio per iteration")
    stages = config["stages"]
    if stages["baseline"].get("lora"):  # its adapter would need a slimflow checkpoint to belong to
        raise ConfigError(("stages", "baseline", "lora"), "LoRA adapts a checkpoint of the chain and the baseline "
                          "starts it: use lora on the finetune (or sparse) stage")
    sparse = stages["sparse"]
    if sparse.get("lora") and sparse["init"] == "scratch":
        raise ConfigError(("stages", "sparse", "lora"), "stages.sparse.init is scratch and LoRA adapts trained "
                          "weights: set init: baseline or drop lora here")
    if sparse.get("lora") and sparse["sr"] > 0 and not sparse["lora"]["train_bn"]:
        raise ConfigError(("stages", "sparse", "lora"), "the sparsity penalty acts on BatchNorm scales, which LoRA "
                          "freezes: set lora.train_bn: true (or sr: 0)")
    folders: dict[str, int] = {}
    for i, point in enumerate(prune["sweep"]):  # each point gets a folder results/sweep/r<ratio>/ or /<target>/
        first = folders.setdefault(sweep_lineage(point), i)
        if first != i:
            raise ConfigError(("prune", "sweep", i), f"{point} and {prune['sweep'][first]} both write "
                              f"results/{sweep_lineage(point)} (values are named with 6 significant digits; "
                              "drop one or make them differ there)")


def load_config(paths: str | Path | Sequence[str | Path], overrides: Mapping | None = None) -> dict:
    """One config file, or several merged as Snakemake merges --configfile (later files win),
    with `overrides` (nested values, as Snakemake's --config) laid over them."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    merged: dict = {}
    for path in paths:
        merged = _merge(merged, read_config_file(path))
    return validate_config(_merge(merged, dict(overrides or {})), paths, overrides)


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
