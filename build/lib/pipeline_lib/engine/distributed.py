"""Run a training function in N processes with torch.distributed (DDP), from inside a step.

    launch(worker, nprocs=2, backend="auto", stage="baseline", ...)   # worker(**kw) in every rank

Three ways in, tried in this order:

- **joined**: the step was started by `torchrun` (any --nnodes/--nproc-per-node: RANK,
  WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) or by `srun` with several tasks (SLURM_PROCID,
  SLURM_STEP_NUM_TASKS, SLURM_LOCALID, the step's first node as master). Every process calls
  launch itself; it joins that process group and runs the worker once. `nprocs` is not used:
  the launcher's world size is.
- **srun** (`launcher="srun"`): the step runs inside a SLURM allocation, not yet in a job step
  (snakemake's slurm executor with the `mpi` resource); it starts the worker in `ntasks` tasks
  over `nodes` nodes with `srun`, which then join as above (engine/taskrun.py).
- **spawn** (the default): `nprocs` processes on this host, spawned here. With nprocs=1 the
  worker runs in this process, without a process group.

Rank r uses GPU (local rank r) of the visible ones; on CPU the gloo backend runs the processes
(tests, laptops). A UserError in any rank comes back as the same one-line UserError here; other
errors keep torch's traceback.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..errors import UserError

__all__ = ["launch", "rank", "world_size", "is_main", "device_for_rank", "barrier", "all_mean", "World",
           "external_world", "join", "srun_launch", "srun_command"]

_local_rank = 0  # this process's index on its host (its GPU)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def device_for_rank(device: torch.device) -> torch.device:
    """cuda → this process's GPU (its local rank on its host); cpu stays cpu."""
    if device.type == "cuda" and dist.is_initialized():
        return torch.device("cuda", _local_rank % torch.cuda.device_count())
    return device


def all_mean(values: dict[str, float]) -> dict[str, float]:
    """The mean of each value over all ranks (every rank must call it, with the same keys)."""
    if not dist.is_initialized() or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return {k: v / dist.get_world_size() for k, v in zip(keys, tensor.tolist())}


@dataclass(frozen=True)
class World:
    """A process group some launcher set up around this process."""

    source: str  # "torchrun" or "srun"
    rank: int
    size: int
    local_rank: int


def external_world(env: dict[str, str] | None = None) -> World | None:
    """torchrun's or srun's process group this process belongs to; None alone or without one.

    torchrun wins over srun (`srun -N 2 torchrun ...` runs torchrun once per node). An sbatch
    script (SLURM_NTASKS set, but no job step) and a one-task step (`srun -n1`, as snakemake's
    jobs run) are no group: the step launches its own processes there.
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env and "RANK" in env:
        world = World("torchrun", int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    elif "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:
        world = World("srun", int(env["SLURM_PROCID"]), int(env["SLURM_STEP_NUM_TASKS"]),
                      int(env.get("SLURM_LOCALID", 0)))
    else:
        return None
    return world if world.size > 1 else None


def _slurm_master(env: dict[str, str]) -> str:
    """The first node of this srun step: rank 0 runs there."""
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "127.0.0.1"
    if "[" not in nodes and "," not in nodes:
        return nodes
    out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def join(world: World, backend: str = "auto") -> None:
    """init_process_group for `world` (MASTER_ADDR/PORT: torchrun's, or the srun step's first node
    and a port derived from the job and step ids, unless set already)."""
    global _local_rank
    env = os.environ
    if world.source == "srun":
        env.setdefault("MASTER_ADDR", _slurm_master(env))
        job_step = int(env.get("SLURM_JOB_ID", 0)) * 7 + int(env.get("SLURM_STEP_ID", 0))
        env.setdefault("MASTER_PORT", str(20000 + job_step % 20000))
    _local_rank = world.local_rank
    backend = _backend(backend)
    if backend == "nccl":
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
    dist.init_process_group(backend, rank=world.rank, world_size=world.size)


def _backend(backend: str) -> str:
    if backend == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    return backend


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(index: int, fn: Callable[..., Any], nprocs: int, backend: str, port: int, errors, kwargs: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    join(World("spawn", index, nprocs, index), backend)
    try:
        fn(**kwargs)
    except UserError as error:
        errors.put(str(error))
        sys.exit(1)
    finally:
        dist.destroy_process_group()


def launch(fn: Callable[..., Any], *, nprocs: int, backend: str = "auto", launcher: str = "spawn",
           srun: dict | None = None, **kwargs: Any) -> Any:
    """`fn(**kwargs)` in the launcher's process group (joined), in srun's tasks (`launcher="srun"`,
    `srun={"ntasks": N, "nodes": M, "scratch": folder}`), or in `nprocs` spawned DDP processes."""
    world = external_world()
    if world is not None:
        join(world, backend)
        try:
            return fn(**kwargs)
        finally:
            dist.destroy_process_group()
    if launcher == "srun":
        return srun_launch(fn, backend=backend, kwargs=kwargs, **(srun or {}))
    if nprocs == 1:
        return fn(**kwargs)
    errors = mp.get_context("spawn").SimpleQueue()
    try:
        mp.spawn(_worker, args=(fn, nprocs, _backend(backend), _free_port(), errors, kwargs), nprocs=nprocs, join=True)
    except mp.ProcessExitedException:
        if not errors.empty():
            raise UserError(errors.get()) from None
        raise
    return None


def srun_command(payload: Path, ntasks: int, nodes: int | None = None, env: dict[str, str] | None = None) -> list[str]:
    """The srun line that starts one task per rank in the allocation $SLURM_JOB_ID."""
    env = os.environ if env is None else env
    command = ["srun", f"--ntasks={ntasks}", "--kill-on-bad-exit=1"]
    if nodes:
        command += [f"--nodes={nodes}", f"--ntasks-per-node={-(-ntasks // nodes)}"]
    if env.get("SLURM_JOB_ID"):
        command.append(f"--jobid={env['SLURM_JOB_ID']}")
    return command + [sys.executable, "-m", "pipeline_lib.engine.taskrun", str(payload)]


def srun_launch(fn: Callable[..., Any], *, backend: str, kwargs: dict, ntasks: int, nodes: int | None = None,
                scratch: str | os.PathLike = ".") -> None:
    """`fn(**kwargs)` in `ntasks` srun tasks (engine/taskrun.py); waits; a rank's UserError comes back here.

    The payload (fn, backend, kwargs) is written as JSON into `scratch`, a folder every node must
    see: `fn` and any dataclass in kwargs by their import names, which the tasks resolve within
    pipeline_lib only (no pickle: a file in a shared folder must not be able to run code).
    """
    if not os.environ.get("SLURM_JOB_ID"):
        raise UserError("the train step was told to start its processes with srun (resource mpi: srun), "
                        "but it does not run inside a SLURM job (no SLURM_JOB_ID)")
    Path(scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="srun-") as folder:
        payload = Path(folder) / "payload.json"
        payload.write_text(json.dumps({"fn": reference(fn), "backend": backend, "kwargs": encode(kwargs)}))
        proc = subprocess.run(srun_command(payload, ntasks, nodes))
        errors = sorted(Path(folder).glob("error-*.txt"))
        if errors:
            raise UserError(errors[0].read_text())
        if proc.returncode != 0:
            raise RuntimeError(f"srun exited with {proc.returncode}; the ranks' output is above")


def reference(obj: Any) -> str:
    """A function's or class's import name, "module:qualname" (taskrun.resolve reads it back)."""
    return f"{obj.__module__}:{obj.__qualname__}"


def encode(value: Any) -> Any:
    """`value` as JSON data: paths as strings, a dataclass as {"__dataclass__": reference, "fields": ...}."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": reference(type(value)),
                "fields": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    return value
