"""A dataset's content fingerprint: each file it is read from, by its path relative to the
dataset root, its size and its sha256 — no absolute path and no clock in it, so a copied or
moved project has the same fingerprint and an edited file a new one.

    hashes = {}                                              # kept between runs (the preflight's cache)
    fp = content_fingerprint(paths, Path("data"), hashes)    # "sha256:…"

A file's hash is reused while its (size, mtime) is unchanged; `hashes` holds what was computed,
each entry with the time it was hashed, and one hashed more than REHASH_DAYS ago (7, or
$SLIMFLOW_REHASH_DAYS; 0 hashes every file on every check) is read again whatever its stamp
says, so an edit that kept size and mtime is seen within that time.

The pre-run check keeps `hashes` in PREFLIGHT_CACHE; `dataset_file_sha256` reads them there, so
prepare_dataset does not hash a large dataset a second time on its first run.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterable

from .io import os_error, sha256_file

__all__ = ["REHASH_DAYS", "PREFLIGHT_CACHE", "content_fingerprint", "dataset_file_sha256", "file_stamp", "rehash_due",
           "dataset_root", "portable_path"]

REHASH_DAYS = 7.0
PREFLIGHT_CACHE = ".snakemake/slimflow/preflight.json"  # relative to the project folder (the working directory)
_checked: dict = {"stamp": None, "hashes": {}}  # the pre-run check's hashes, as last read from PREFLIGHT_CACHE


def _rehash_seconds() -> float:
    try:
        return float(os.environ.get("SLIMFLOW_REHASH_DAYS", REHASH_DAYS)) * 86400
    except ValueError:
        return REHASH_DAYS * 86400


def file_stamp(path: str | os.PathLike) -> list[int] | None:
    """[size, mtime_ns] of a file or folder (None when missing): what the pre-run caches compare."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def rehash_due(hashes: dict) -> bool:
    """Whether a hash in `hashes` is older than the schedule allows (it is read again then)."""
    oldest = min((entry[3] for entry in hashes.values()), default=None)
    return oldest is not None and time.time() - oldest >= _rehash_seconds()


def dataset_root(path: str | os.PathLike) -> Path:
    """The folder a dataset's files are named relative to: `path` itself, or the folder of a file (data.yaml)."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def portable_path(path: str | os.PathLike) -> Path:
    """`path` relative to the working directory (the project) when it lies inside it, else absolute:
    what a manifest records, so a project copied or moved reads its own files."""
    absolute = os.path.abspath(path)
    cwd = os.getcwd()
    inside = os.path.commonpath([absolute, cwd]) == cwd
    return Path(os.path.relpath(absolute, cwd) if inside else absolute)


def _digest(path: Path, stat: os.stat_result, hashes: dict, now: float, verify: Callable[[Path], None] | None) -> str:
    key = str(path)
    entry = hashes.get(key)
    if entry is not None and entry[:2] == [stat.st_size, stat.st_mtime_ns] and now - entry[3] < _rehash_seconds():
        return entry[2]
    if verify is not None:
        verify(path)
    try:
        digest = sha256_file(path)
    except OSError as e:
        raise os_error(path, e, "cannot read") from None
    hashes[key] = [stat.st_size, stat.st_mtime_ns, digest, now]
    return digest


def _checked_hashes() -> dict[str, list]:
    """{absolute path: [size, mtime_ns, sha256, when]} of every dataset file the pre-run check
    hashed in this project folder; read again when the cache file changes."""
    stamp = file_stamp(PREFLIGHT_CACHE)
    if stamp != _checked["stamp"]:
        try:
            state = json.loads(Path(PREFLIGHT_CACHE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = None
        hashes = {}
        if isinstance(state, dict) and state.get("cwd") == os.getcwd():  # a copied project's cache is not ours
            for key, entry in state.items():
                if key.startswith("dataset:") and isinstance(entry, dict) and isinstance(entry.get("hashes"), dict):
                    hashes.update({os.path.abspath(p): h for p, h in entry["hashes"].items()
                                   if isinstance(h, list) and len(h) == 4})
        _checked.update(stamp=stamp, hashes=hashes)
    return _checked["hashes"]


def dataset_file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a dataset file: the pre-run check's, while its size and mtime are those it hashed
    and its re-hash is not due; else hashed now."""
    entry = _checked_hashes().get(os.path.abspath(path))
    stat = os.stat(path)
    if entry is not None and entry[:2] == [stat.st_size, stat.st_mtime_ns] and time.time() - entry[3] < _rehash_seconds():
        return entry[2]
    return sha256_file(path)


def content_fingerprint(paths: Iterable[str | os.PathLike], root: str | os.PathLike, hashes: dict,
                        verify: Callable[[Path], None] | None = None) -> str:
    """sha256 over (path relative to `root`, size, sha256) of every file in `paths` (folders are
    skipped: their files are listed; a missing file counts as absent). `hashes` is updated and
    keeps only the files given; `verify(path)` runs on each file hashed anew (its check, cached so)."""
    now, h, seen = time.time(), hashlib.sha256(), set()
    for path in sorted({Path(p) for p in paths}):
        try:
            stat = os.stat(path)
        except OSError:
            h.update(f"{os.path.relpath(path, root)}\0absent\n".encode())
            continue
        if not os.path.isfile(path):
            continue
        seen.add(str(path))
        h.update(f"{os.path.relpath(path, root)}\0{stat.st_size}\0{_digest(path, stat, hashes, now, verify)}\n".encode())
    for stale in [k for k in hashes if k not in seen]:
        del hashes[stale]
    return f"sha256:{h.hexdigest()}"
