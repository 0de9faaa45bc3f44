"""One srun task of distributed.srun_launch: `python -m pipeline_lib.engine.taskrun PAYLOAD`.

The launcher (a step inside a SLURM job, e.g. snakemake's slurm executor with the `mpi` resource,
whose job script runs the step once with the job's SLURM_* variables removed) pickled (worker,
backend, kwargs) into PAYLOAD and ran `srun --ntasks N ... python -m pipeline_lib.engine.taskrun
PAYLOAD`. Each task joins the srun step's process group (distributed.launch finds it), runs the
worker, and writes a UserError beside the payload, which the launcher raises as one line.
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

from ..errors import UserError
from . import distributed


def main(payload: str) -> int:
    fn, backend, kwargs = pickle.loads(Path(payload).read_bytes())
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
