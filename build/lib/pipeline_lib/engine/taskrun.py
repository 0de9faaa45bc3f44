"""One srun task of distributed.srun_launch: `python -m pipeline_lib.engine.taskrun PAYLOAD`.

The launcher (a step inside a SLURM job, e.g. snakemake's slurm executor with the `mpi` resource,
whose job script runs the step once with the job's SLURM_* variables removed) wrote (worker,
backend, kwargs) as JSON into PAYLOAD (distributed.encode: the worker and dataclasses by their
import names, resolved here within pipeline_lib only) and ran `srun --ntasks N ... python -m pipeline_lib.engine.taskrun
PAYLOAD`. Each task joins the srun step's process group (distributed.launch finds it), runs the
worker, and writes a UserError beside the payload, which the launcher raises as one line.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from . import distributed


def resolve(ref: str) -> Any:
    """The function or class named "module:qualname" by distributed.reference, from pipeline_lib only."""
    module, _, name = ref.partition(":")
    if module != "pipeline_lib" and not module.startswith("pipeline_lib."):
        raise UserError(f"taskrun: {ref!r} is not a slimflow function; the payload names pipeline_lib's only")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def decode(value: Any) -> Any:
    """distributed.encode's JSON data back: dataclasses rebuilt from their fields."""
    if isinstance(value, dict) and "__dataclass__" in value:
        return resolve(value["__dataclass__"])(**decode(value["fields"]))
    if isinstance(value, dict):
        return {key: decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode(item) for item in value]
    return value


def main(payload: str) -> int:
    data = json.loads(Path(payload).read_text())
    fn, backend, kwargs = resolve(data["fn"]), data["backend"], decode(data["kwargs"])
    world = distributed.external_world()
    if world is None:
        print(f"taskrun: not a task of a multi-task srun step ({payload})", file=sys.stderr)
        return 2
    try:
        distributed.launch(fn, nprocs=world.size, backend=backend, **kwargs)
    except UserError as error:
        Path(payload).with_name(f"error-{world.rank}.txt").write_text(str(error))
        print(f"slimflow error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
