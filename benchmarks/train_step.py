"""What `train.channels_last` does to a config's training step on this machine.

    python benchmarks/train_step.py --configfile config/test_diffusion.yaml --steps 10 --rounds 2

Builds the config's model from scratch and times optimizer steps (forward, loss, backward, step)
on real batches of its training split, in NCHW and in NHWC (channels_last), alternating in
`--rounds` so load on a shared host hits both alike. The dataset is the one `prepare-dataset`
wrote under `--directory` (prepared here first when it is missing). Prints the median ms per step
of each layout and their ratio; the engine runs NHWC on CPU only with `train.channels_last: true`.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from pipeline_lib.config import load_config
from pipeline_lib.engine import seed_everything
from pipeline_lib.engine.optim import build_optimizer
from pipeline_lib.io import read_json
from pipeline_lib.steps import prepare_dataset
from pipeline_lib.tasks import get_task

MANIFEST = Path("results/data/dataset.json")


def _batches(config: dict, steps: int) -> list:
    task, train_cfg = get_task(config["task"]), config["train"]
    if not MANIFEST.exists():
        prepare_dataset(dataset_cfg=config["dataset"], family=config["task"], seed=config["seed"],
                        manifest_path=MANIFEST)
    loader = task.loader(read_json(MANIFEST), "train", train=True, augment=train_cfg["augment"],
                         imgsz=config["model"]["imgsz"], batch_size=train_cfg["batch_size"], workers=0,
                         seed=config["seed"])
    batches = []
    while len(batches) < steps + 2:  # two warm-up steps
        batches += list(loader)
    return batches[:steps + 2]


def _time_steps(model, criterion, batches, train_cfg: dict) -> float:
    """Median ms of one optimizer step over `batches` after two warm-up steps."""
    optimizer = build_optimizer(model, train_cfg["optimizer"], train_cfg["lr0"], train_cfg["momentum"], 0.0)
    times = []
    for batch in batches:
        start = time.perf_counter()
        loss, _ = criterion(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="+", required=True)
    parser.add_argument("--directory", default=".", help="run folder with (or for) results/data/dataset.json")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = load_config([Path(p).resolve() for p in args.configfile])
    os.chdir(args.directory)
    task = get_task(config["task"])
    seed_everything(config["seed"])
    batches = _batches(config, args.steps)
    model = task.build_model(task.arch(config["model"], read_json(MANIFEST))).train()
    layouts = {"NCHW": torch.contiguous_format, "NHWC (channels_last)": torch.channels_last}
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(args.rounds):
        for name, layout in layouts.items():
            copy_ = copy.deepcopy(model).to(memory_format=layout)
            times[name].append(_time_steps(copy_, task.criterion(copy_, config["train"]), batches, config["train"]))
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {config['task']} {config['model']['name']}, "
          f"batch {config['train']['batch_size']}, {args.steps} steps x {args.rounds} rounds")
    for name, values in times.items():
        print(f"{name:22s} {statistics.median(values):8.1f} ms/step  (rounds: {', '.join(f'{v:.1f}' for v in values)})")
    ratio = statistics.median(times["NHWC (channels_last)"]) / statistics.median(times["NCHW"])
    print(f"NHWC / NCHW: {ratio:.2f}")


if __name__ == "__main__":
    main()
