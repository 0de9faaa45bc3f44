"""Every shell command that README.md and the docs show runs as written on a fresh clone.

Each fenced bash/sh block of the documents below runs as one script (`set -eo pipefail`, so a
pipe such as `snakemake --rulegraph | dot -Tpng` fails when either side does) in its own fresh
copy of the repository (the files git knows, as a clone has them). What is changed, and why:

- A `snakemake` command that would run jobs gets `-n` (a dry run: the profile is read, the
  config validated, every rule's inputs resolved, no training). Commands that run no jobs
  (`--unlock`, `--report`, `--rulegraph`, `--dag`, `--lint`, `--conda-create-envs-only`) run as written.
- A block that runs a step by hand (`python ...`) or renders the report runs for real, on the
  tiny configs: config/config.yaml and config/reid.yaml of the copy are replaced by
  config/test.yaml and config/test_reid.yaml. A block that reads finished artifacts
  (`--report`, benchmarks/latency.py, `predict`, `compare RUN...` after dry runs of those runs) gets the
  results of one tiny `snakemake` run copied in (into each RUN for compare).
- REWRITES below: the few lines that name something a clone does not have (a scratch folder,
  a file the text says was made by hand) or would run for many minutes.
- NOT_RUN below: lines that cannot run here, each with the test that covers it instead. Every
  entry must match a documented line, and most lines must run: this test cannot pass by skipping.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.e2e  # runs the real snakemake and the CLI

DOCUMENTS = ["README.md", "config/README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")),
             "profiles/README.md"]

# Lines that do not run here: (regex on the line, why, what covers it).
NOT_RUN = [
    (r"(^| )pytest( |$)", "the test suite itself (run inside the suite, it would recurse)", "CI (.ci/run) runs it"),
    (r"^python tests/slurm/cluster\.py (install|start|stop)", "starts a SLURM cluster as root",
     "tests/test_slurm.py (starts one where CI is root)"),
    (r"^squeue ", "needs the SLURM cluster above", "tests/test_slurm.py"),
    (r"^python -m pipeline_lib merge-lora ", "needs the adapter of a LoRA run",
     "tests/test_lora_e2e.py runs this exact line on one"),
    (r"^python benchmarks/lora\.py runs/", "finetunes the default chain's pruned model once per rank (minutes each)",
     "tests/test_lora_e2e.py runs the script on a copy of the tiny run"),
    (r"^python benchmarks/distill\.py runs/", "finetunes the default chain's pruned model once per teacher (minutes each)",
     "tests/test_distill_e2e.py runs the script on a tiny finished chain"),
    (r"import-weights \S+\.pth? |configfile config/yolov5_slim\.yaml", "needs the user's own weights and data.yaml",
     "tests/test_weights_e2e.py (a generated YOLOv5 checkpoint through import-weights and the chain)"),
    (r"^cp -a runs/diffusion |^cd runs/diffusion-ddpm ", "needs a finished diffusion chain (25 minutes)",
     "tests/test_diffusion_e2e.py scores a stage of the tiny chain through the same CLI command"),
    (r"^python -m venv \S+ && \S+/pip install ", "builds a second environment with ultralytics and its torch (minutes)",
     "tests/test_vs_ultralytics.py runs the ultralytics side in one where SLIMFLOW_ULTRALYTICS_PYTHON names it"),
    (r"python benchmarks/vs_ultralytics\.py ", "trains both detectors for many minutes each",
     "tests/test_vs_ultralytics.py runs the script on a tiny digits dataset for one epoch"),
    (r"^pip (wheel --no-deps -w dist \.|install dist/slimflow-)", "builds and installs slimflow into the environment "
     "running the tests", "tests/test_wheel.py builds the wheel and installs it into a fresh environment"),
    (r"^bash benchmarks/arm_env\.sh|^~/\.cache/slimflow/arm64/python3 ", "builds an arm64 Python as root with apt-get "
     "(a minute), then runs a model under qemu-aarch64", "tests/test_arm.py builds it and runs both exported models"),
    (r"^snakedeploy deploy-workflow https://", "fetches a release from GitHub (and snakedeploy is not installed here)",
     "tests/test_module.py runs the project it writes (docs/module/Snakefile, the module a local path)"),
    (r"^torchrun ", "starts ranks on GPUs or waits for other nodes to join",
     "tests/test_launchers.py trains the tiny baseline under torchrun --nproc-per-node 2"),
    (r"benchmarks/gpu_check\.sh", "needs a CUDA GPU (the dry run takes minutes)",
     "tests/test_gpu_check.py runs --dry-run and the real run's refusal without a GPU"),
]
# Parts of lines changed here: (regex, replacement, why).
REWRITES = [
    (r'^pip install -e "\.\[dev\]" && ', "", "installing is .ci/run's first step; this test runs in that environment"),
    (r"^cd /tmp/reid_run && ", "", "the measurement ran in a scratch copy of the repository: this copy"),
    (r" stem_float\.int8\.onnx ", " results/export/pruned_finetuned.int8.onnx ",
     "stem_float.int8.onnx was quantized by hand with export.int8_stem: float (docs/EXPORT.md says how)"),
    (r"--runs \d+ --rounds \d+", "--runs 3 --rounds 2", "the measurement itself takes minutes; the command is what is checked"),
    (r"(widths\.py .*)--rounds 30", r"\1--rounds 1", "the measurement takes half a minute; the command is what is checked"),
    (r"(train_step\.py .*)--steps \d+ --rounds \d+", r"\1--steps 2 --rounds 1",
     "the measurement takes minutes; the command is what is checked"),
    (r"(import_cost\.py) --runs \d+$", r"\1 --runs 1 evaluate_stage report",
     "ten steps three times take a minute; tests/test_import_floor.py checks what every step loads"),
    ]
# Conda lines run only where conda is (even a dry run with --sdm conda asks `conda info`); elsewhere
# tests/test_conda_envs.py checks the environment file, and the same commands without conda run above.
CONDA_ONLY = r"--sdm conda|--use-conda|--conda-create-envs-only"
NO_JOBS = ("--unlock", "--report", "--rulegraph", "--dag", "--lint", "-n", "--dry-run", "--conda-create-envs-only")
SNAKEMAKE = re.compile(r"(^|&& |time -f \"[^\"]*\" |^\w+=\S+ )snakemake( |$)")


def blocks(document: str) -> list[tuple[int, list[str]]]:
    """(line number, commands) of each fenced bash/sh block: comments gone, continuations joined."""
    text = (REPO / document).read_text()
    found = []
    for m in re.finditer(r"^```(?:bash|sh)\n(.*?)^```", text, re.S | re.M):
        lineno = text[:m.start()].count("\n") + 1
        joined = re.sub(r"\\\n\s*", "", m.group(1))
        lines = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
        found.append((lineno, [line for line in lines if line and not line.startswith("#")]))
    return found


def prepare_line(line: str) -> tuple[str | None, str]:
    """The line as run here (None: not run) and what was done to it."""
    for pattern, why, covered in NOT_RUN:
        if re.search(pattern, line):
            return None, f"not run: {why}; {covered}"
    if re.search(CONDA_ONLY, line) and shutil.which("conda") is None and shutil.which("mamba") is None:
        return None, "not run: no conda on this machine (tests/test_conda_envs.py checks the environment file)"
    notes = []
    for pattern, repl, why in REWRITES:
        if re.search(pattern, line):
            line, _ = re.subn(pattern, repl, line)
            notes.append(why)
    if SNAKEMAKE.search(line) and not any(re.search(rf"(^| ){re.escape(flag)}( |$)", line) for flag in NO_JOBS):
        line += " -n"
        notes.append("dry run")
    return line, "; ".join(notes) or "as written"


def compared_runs(text: str) -> list[str]:
    """The finished run folders a block reads: those a `python -m pipeline_lib compare RUN ...` line
    names, and RUN of every `RUN/results/...` path a benchmark line reads (`runs/det/results/...`)."""
    runs = []
    for m in re.finditer(r"pipeline_lib compare (.*)$", text, re.M):
        runs += [arg for arg in m.group(1).split("--")[0].split()]
    for m in re.finditer(r"^python benchmarks/.*$", text, re.M):
        runs += re.findall(r"(?:^|\s)(runs/[\w.-]+)/results/", m.group(0))
    return list(dict.fromkeys(runs))


def fresh_copy(dest: Path) -> Path:
    """The repository as a clone has it: the files git tracks (and new ones it does not ignore)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def use_tiny_configs(copy: Path) -> None:
    shutil.copy(copy / "config/test.yaml", copy / "config/config.yaml")
    shutil.copy(copy / "config/test_reid.yaml", copy / "config/reid.yaml")


def env(copy: Path) -> dict[str, str]:
    """This environment's snakemake and python, importing the copy's pipeline_lib (also in Snakemake's scripts)."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"], "OMP_WAIT_POLICY": "PASSIVE",
            "PYTHONPATH": str(copy)}


@pytest.fixture(scope="module")
def tiny_results(tiny_run) -> Path:
    """results/ of `snakemake` on the tiny config (conftest's run), for blocks that read finished artifacts."""
    return tiny_run / "results"


CASES = [(doc, lineno, lines) for doc in DOCUMENTS for lineno, lines in blocks(doc)]


def test_documents_show_commands_and_most_of_them_run():
    prepared = [prepare_line(line)[0] for _, _, lines in CASES for line in lines]
    assert len(prepared) >= 25, "the documents' commands were not found: the extraction is broken"
    assert sum(p is not None for p in prepared) >= 25, "most documented lines must run here"
    lines = [line for _, _, block in CASES for line in block]
    for pattern, *_ in NOT_RUN + [(p, None) for p, _, _ in REWRITES]:
        assert any(re.search(pattern, line) for line in lines), f"stale entry, no documented line matches {pattern!r}"


@pytest.mark.parametrize("document, lineno, lines", CASES, ids=[f"{d}:{n}" for d, n, _ in CASES])
def test_documented_block_runs_on_a_fresh_clone(document, lineno, lines, tmp_path, request):
    script = [prepare_line(line) for line in lines]
    runnable = [line for line, _ in script if line is not None]
    if not runnable:
        pytest.skip("; ".join(note for _, note in script))  # listed in NOT_RUN with what covers them
    copy = fresh_copy(tmp_path / "slimflow")  # as `git clone` names it (docs/DEPLOY.md)
    text = "\n".join(runnable)
    if re.search(r"^python |--report", text, re.M):
        use_tiny_configs(copy)
    if re.search(r"benchmarks/(latency|denormals)\.py|--report|pipeline_lib predict", text):
        shutil.copytree(request.getfixturevalue("tiny_results"), copy / "results")
    for run in compared_runs(text):  # the runs above were dry runs: compare gets finished ones
        shutil.copytree(request.getfixturevalue("tiny_results"), copy / run / "results", dirs_exist_ok=True)
    proc = subprocess.run(["bash", "-c", "set -eo pipefail\n" + text], cwd=copy, env=env(copy), capture_output=True,
                          text=True, timeout=1800)
    shown = "\n".join(f"  {line}    [{note}]" for line, note in script)
    assert proc.returncode == 0, f"{document}:{lineno} failed:\n{shown}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
