"""What made an artifact: slimflow's version and commit, torch's, torchvision's and Python's.

    versions()       # {"slimflow": "0.2.0", "git": "3f2c...-dirty", "torch": "2.6.0", "torchvision": ..., "python": ...}
    git_revision()   # the commit alone (provenance.json), None outside a git checkout

Every checkpoint's meta carries `versions()` (`checkpoint.save_checkpoint`) and provenance.json
the revision (`provenance`); both sit above this module, which imports nothing of pipeline_lib
but its version (docs/ARCHITECTURE.md). torch is imported when asked; torchvision's version is
its installed distribution's (without torch's local build tag such as +cu130): importing
torchvision costs a job 1.5 s (it loads torch._dynamo), and many jobs never need it.
"""
from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

from . import __version__

__all__ = ["versions", "git_revision"]


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The commit of slimflow's own source tree ("<sha>-dirty" with local changes); None outside a
    checkout of slimflow (an installed wheel has no commit)."""
    source = Path(__file__).resolve().parent.parent
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=source, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        if Path(git("rev-parse", "--show-toplevel")).resolve() != source:
            return None  # an installed package (site-packages), perhaps inside another project's repository
        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    """The stamp every checkpoint carries in meta["versions"]."""
    import torch

    try:
        vision = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        vision = None
    return {"slimflow": __version__, "git": git_revision(), "torch": str(torch.__version__),
            "torchvision": vision, "python": platform.python_version()}
