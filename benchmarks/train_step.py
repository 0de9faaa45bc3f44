"""What `train.channels_last` does to a config's training step on this machine.

    python benchmarks/train_step.py --configfile config/test_diffusion.yaml --steps 10 --rounds 2
    python benchmarks/train_step.py --configfile config/config.yaml my-640.yaml --device cuda --amp --json out.json

Builds the config's model from scratch and times optimizer steps (forward, loss, backward, step)
on real batches of its training split, in NCHW and in NHWC (channels_last), alternating in
`--rounds` so load on a shared host hits both alike. The dataset is the one `prepare-dataset`
wrote under `--directory` (prepared here first when it is missing). Prints the median ms per step
of each layout and their ratio; the engine runs NHWC on CPU only with `train.channels_last: true`.
`--device cuda --amp` times on a GPU under the engine's autocast (train.amp: true; fp16 steps
through a GradScaler), synchronising before each clock read; `--json` also writes ms/step and
images/s per layout (benchmarks/gpu_check.sh reads it).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from pipeline_lib.config import load_config
from pipeline_lib.engine import seed_everything
from pipeline_lib.engine.optim import build_optimizer
from pipeline_lib.engine.utils import amp_dtype, to_device
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


def _time_steps(model, criterion, batches, train_cfg: dict, device: torch.device, amp: bool) -> float:
    """Median ms of one optimizer step over `batches` after two warm-up steps."""
    optimizer = build_optimizer(model, train_cfg["optimizer"], train_cfg["lr0"], train_cfg["momentum"], 0.0)
    dtype = amp_dtype(amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for batch in batches:
        batch = to_device(batch, device)
        sync()
        start = time.perf_counter()
        with autocast:
            loss, _ = criterion(model, batch)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="+", required=True)
    parser.add_argument("--directory", default=".", help="run folder with (or for) results/data/dataset.json")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="autocast as train.amp: true does")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    config = load_config([Path(p).resolve() for p in args.configfile])
    out = args.json.resolve() if args.json else None
    Path(args.directory).mkdir(parents=True, exist_ok=True)
    os.chdir(args.directory)
    task, device = get_task(config["task"]), torch.device(args.device)
    seed_everything(config["seed"])
    batches = _batches(config, args.steps)
    model = task.build_model(task.arch(config["model"], read_json(MANIFEST))).train().to(device)
    layouts = {"NCHW": torch.contiguous_format, "NHWC (channels_last)": torch.channels_last}
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(args.rounds):
        for name, layout in layouts.items():
            copy_ = copy.deepcopy(model).to(memory_format=layout)
            times[name].append(_time_steps(copy_, task.criterion(copy_, config["train"]), batches, config["train"],
                                           device, args.amp))
    batch = config["train"]["batch_size"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"{where}, torch {torch.__version__}, {torch.get_num_threads()} threads; {config['task']} "
          f"{config['model']['name']} at {config['model']['imgsz']} px, batch {batch}, amp {args.amp}, "
          f"{args.steps} steps x {args.rounds} rounds")
    for name, values in times.items():
        print(f"{name:22s} {statistics.median(values):8.1f} ms/step  (rounds: {', '.join(f'{v:.1f}' for v in values)})")
    ratio = statistics.median(times["NHWC (channels_last)"]) / statistics.median(times["NCHW"])
    print(f"NHWC / NCHW: {ratio:.2f}")
    if out:
        out.write_text(json.dumps({"device": where, "model": config["model"]["name"], "imgsz": config["model"]["imgsz"],
                                   "batch": batch, "amp": args.amp, "layouts": {
                                       name: {"ms_per_step": statistics.median(v),
                                              "img_per_s": batch * 1000 / statistics.median(v)}
                                       for name, v in times.items()}}, indent=1))


if __name__ == "__main__":
    main()
