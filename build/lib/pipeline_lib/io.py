"""Atomic file writes, strict reads and hashing: a reader never sees half a file, and a file
the OS cannot write or a YAML/JSON file that does not parse is one UserError line naming it.

    write_json("results/metrics/baseline.json", {"stage": "baseline"})
    cfg = read_yaml_mapping("config/my.yaml", "config")   # a duplicated key is an error, with file:line
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import UserError
from .failpoints import failpoint

__all__ = ["atomic_path", "write_bytes", "write_text", "write_json", "read_json", "read_yaml_mapping", "yaml_error_line",
           "read_config_file", "sweep_temporaries",
           "StrictSafeLoader", "sha256_file", "os_error"]


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # reading the umask means setting it; restored at once


_OS_HINTS = {errno.ENOSPC: "free space on that file system", errno.EDQUOT: "free space (disk quota exceeded)",
             errno.EACCES: "check the folder's permissions", errno.EPERM: "check the folder's permissions",
             errno.EROFS: "the file system is read-only; write results/ somewhere writable"}


def os_error(path: str | os.PathLike, error: OSError, action: str = "cannot write") -> UserError:
    """One line for an error from the OS (no space, permission denied, read-only file system)."""
    hint = _OS_HINTS.get(error.errno, "")
    return UserError(f"{path}: {action} ({error.strerror or error}){'; ' + hint if hint else ''}")


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind `exc`, if any: torch.save into a file object reports a full disk as a
    RuntimeError whose context is the OSError from the file's write()."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success it replaces `path` in one step.

    The temporary file lives beside the target so `os.replace` is a rename on one filesystem;
    if the body raises (or the process is killed) the previous file at `path` stays intact.
    An error from the OS (full disk, permissions, read-only file system), in the body or in the
    rename, becomes one UserError line naming `path`.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        with open(tmp, "rb+") as f:  # data on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files get the usual mode
        failpoint(f"write {path.name}")
        os.replace(tmp, path)
    except Exception as e:
        cause = _os_error_in(e)
        if cause is None or isinstance(e, UserError):
            raise
        if cause.filename and tmp is not None and Path(cause.filename) != tmp:  # another file the body touched
            raise os_error(cause.filename, cause, "cannot access") from None
        kept = " (the previous file is unchanged)" if path.exists() else ""
        raise UserError(f"{os_error(path, cause)}{kept}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def sweep_temporaries(paths) -> None:
    """Remove what a killed `atomic_path` left beside each of `paths` (`.<name>.*.tmp`): a step
    calls it for its own outputs before it writes them, so a killed write is cleaned up by the
    next run of the same step."""
    for path in map(Path, paths):
        if path.parent.is_dir():
            for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
                with contextlib.suppress(OSError):
                    tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike, missing: str = "") -> Any:
    """Parse a JSON file; a missing, unreadable or damaged file is a UserError naming it.

    `missing` says what to do when the file does not exist, e.g. "run prepare-dataset first".
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: not found{'; ' + missing if missing else ''}") from None
    except OSError as e:
        raise os_error(path, e, "cannot read") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f":{e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        raise UserError(f"{path}{where}: damaged, not valid JSON; delete it and rerun the step that writes it") from None


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping gives one key twice."""


class StrictSafeLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key; the base class reports it
                continue
            if first != key_node.start_mark.line + 1:
                raise DuplicateKeyError(None, None, f"key {key!r} given twice (first on line {first}); YAML would "
                                        "silently keep the last: delete one", key_node.start_mark)
        return super().construct_mapping(node, deep)


def yaml_error_line(path: str | os.PathLike, error: yaml.YAMLError) -> str:
    """`file:line: <problem>` of a YAML error."""
    mark = getattr(error, "problem_mark", None)
    line = f":{mark.line + 1}" if mark else ""
    if isinstance(error, DuplicateKeyError):
        return f"{path}{line}: {error.problem}"
    if "constructor for the tag" in str(getattr(error, "problem", "")):  # !!python/object/apply:os.system ...
        tag = str(error.problem).rsplit(" ", 1)[-1]
        return f"{path}{line}: the YAML tag {tag} is not allowed (slimflow reads plain values only; nothing is run)"
    return f"{path}{line}: not valid YAML ({getattr(error, 'problem', None) or error})"


def read_yaml_mapping(path: str | os.PathLike, what: str) -> dict:
    """Parse a YAML file (safe_load) that must hold a mapping; a UserError names file:line otherwise.

    `what` names the file's role in messages, e.g. "config" or "data.yaml".
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = yaml.load(raw.decode("utf-8"), Loader=StrictSafeLoader) or {}  # empty file: empty mapping
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except OSError as e:
        raise os_error(path, e, f"cannot read {what}") from None
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: the {what} is not UTF-8 text (byte 0x{raw[e.start]:02x}; save it as UTF-8)") from None
    except yaml.YAMLError as e:
        raise UserError(yaml_error_line(path, e)) from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: the {what} must be a mapping of keys to values")
    return data


# Snakemake evaluates a config file holding this key as a YTE template: its `?` expressions run as Python.
YTE_KEY = "__use_yte__"


def read_config_file(path: str | os.PathLike) -> dict:
    """A config file, read strictly: UTF-8, YAML without tags, a mapping at the top level, no key
    given twice and no YTE template (a UserError naming file:line otherwise). Nothing in it runs."""
    data = read_yaml_mapping(path, "config")
    if YTE_KEY in data:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
        line = next(k.start_mark.line + 1 for k, _ in node.value if k.value == YTE_KEY)
        raise UserError(f"{path}:{line}: {YTE_KEY}: a YTE template, whose expressions would run as code; "
                        "slimflow config files hold plain values (delete the key)")
    return data


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
