"""The Python side of benchmarks/gpu_check.sh: what the GPU has, comparisons, and the results file.

    python benchmarks/gpu_check.py env --device cuda --out parts/env.json     # fails without CUDA
    python benchmarks/gpu_check.py compare A.json B.json --tolerance 0.05 --out parts/x.json
    python benchmarks/gpu_check.py report WORK --out gpu_check.json            # exit 1 on any failure

`compare` reads two metrics files (evaluate's JSON: {"metrics": {...}}) and fails when a metric
differs by more than the tolerance (absolute; the detector's metrics lie in [0, 1]). `report`
gathers every part's status line (WORK/status/*.json, written by the shell script) and result
(WORK/parts/*.json) into one JSON file and prints it as a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path


def env(device: str, out: Path) -> int:
    import onnxruntime as ort
    import torch
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(), "ort": ort.__version__,
            "ort_providers": ort.get_available_providers(), "device": device}
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), bf16=torch.cuda.is_bf16_supported(),
                    capability=".".join(map(str, torch.cuda.get_device_capability(0))))
    try:
        import tensorrt
        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        info["tensorrt"] = None
    out.write_text(json.dumps(info, indent=1))
    print(json.dumps(info, indent=1))
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device (driver, CUDA_VISIBLE_DEVICES, or a CPU-only torch build); "
              "use --dry-run on a machine without a GPU", file=sys.stderr)
        return 1
    return 0


def compare(a: Path, b: Path, tolerance: float, out: Path) -> int:
    ma, mb = (json.loads(p.read_text())["metrics"] for p in (a, b))
    rows = {k: {"a": ma[k], "b": mb[k], "diff": abs(ma[k] - mb[k])} for k in sorted(ma) if k in mb}
    worst = max((r["diff"] for r in rows.values()), default=float("inf"))
    ok = bool(rows) and worst <= tolerance
    out.write_text(json.dumps({"a": str(a), "b": str(b), "tolerance": tolerance, "max_diff": worst, "ok": ok,
                               "metrics": rows}, indent=1))
    for k, r in rows.items():
        print(f"{k:12s} {r['a']:.4f} {r['b']:.4f} |diff| {r['diff']:.4f}")
    print(f"max |diff| {worst:.4f} (tolerance {tolerance}): {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


def report(work: Path, out: Path) -> int:
    statuses = [json.loads(p.read_text()) for p in sorted((work / "status").glob("*.json"))]
    parts = {p.stem: json.loads(p.read_text()) for p in sorted((work / "parts").glob("*.json"))}
    failed = [s["name"] for s in statuses if s["status"] not in ("ok", "skipped")]
    result = {"ok": not failed and bool(statuses), "failed": failed, "steps": statuses, "results": parts}
    out.write_text(json.dumps(result, indent=1))
    print("| step | status | seconds | log |\n|---|---|---|---|")
    for s in statuses:
        print(f"| {s['name']} | {s['status']} | {s['seconds']} | {s['log']} |")
    print(f"\n{'all steps passed' if result['ok'] else 'FAILED: ' + ', '.join(failed or ['no steps ran'])}; "
          f"results in {out}")
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("env")
    e.add_argument("--device", default="cuda")
    e.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--tolerance", type=float, required=True)
    c.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("report")
    r.add_argument("work", type=Path)
    r.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.command == "env":
        return env(args.device, args.out)
    if args.command == "compare":
        return compare(args.a, args.b, args.tolerance, args.out)
    return report(args.work, args.out)


if __name__ == "__main__":
    sys.exit(main())
