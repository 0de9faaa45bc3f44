"""Read a torch.save file that pickles whole Python objects, without running its pickle.

    tree = read_torch_pickle("best.pt", record_prefixes=("models.",))
    tree["model"]["class"]                       # 'models.yolo.DetectionModel'
    tree["model"]["_modules"]["model"]["_modules"]["0"]["_modules"]["conv"]["_parameters"]["weight"]  # a tensor

A YOLOv5 checkpoint is `torch.save({'model': <DetectionModel>, ...})`; `torch.load` would import
`models.yolo` and call whatever the file names, and `weights_only=True` refuses it. Here a
`pickle.Unpickler` resolves every global through an allow-list, as torch's weights_only
unpickler does, but instead of the real classes it hands out inert records that only remember
their qualified name and the state the pickle gives them. Tensors are rebuilt from the zip
archive's raw storages by this module (dtype, offset, size, stride), never by a function the
file names. Any other global is refused with one line naming it, before anything is built.

Reads are bounded: each storage's size in the pickle must be its archive member's size (read
from the zip header, so a small compressed member cannot inflate to gigabytes), each tensor must
lie within its storage, and storages plus tensors built may take at most `memory_budget(path)`
bytes (a stride-0 view of one element as 30000×30000 would otherwise be copied out to 3.6 GB).
"""
from __future__ import annotations

import _compat_pickle
import os
import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .torchlimits import OVER_BUDGET, TooLarge, check_archive, check_tensors, gigabytes, memory_budget

__all__ = ["read_torch_pickle", "Refused"]

# The storage classes torch.save names (torch.HalfStorage ...) and the dtype of their bytes.
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}

# torch.nn classes a pickled model may hold. They become records too: no torch code runs for them.
_TORCH_MODULES = {
    "container": ("Sequential", "ModuleList", "ModuleDict"),
    "conv": ("Conv2d",),
    "batchnorm": ("BatchNorm2d", "BatchNorm1d"),
    "activation": ("SiLU", "ReLU", "LeakyReLU", "Hardswish", "Sigmoid", "Identity"),
    "pooling": ("MaxPool2d", "AdaptiveAvgPool2d"),
    "upsampling": ("Upsample",),
    "linear": ("Linear", "Identity"),
    "dropout": ("Dropout",),
}
_TORCH_RECORDS = {f"torch.nn.modules.{mod}.{name}" for mod, names in _TORCH_MODULES.items() for name in names}

# Values that metadata beside the weights may hold (YOLOv5 stores best_fitness as a NumPy array,
# opt with paths). They are recorded, never constructed: NumPy and pathlib are not called.
_INERT = {"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype",
          "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "pathlib.PosixPath", "pathlib.WindowsPath",
          "pathlib.PurePosixPath", "pathlib.PureWindowsPath", "argparse.Namespace"}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class Refused(UserError):
    """The file names a global outside the allow-list (nothing of it was run); `name` is that global."""

    def __init__(self, message: str, name: str | None = None):
        super().__init__(message)
        self.name = message if name is None else name


class _Record:
    """Stands in for an object of an allowed class: keeps the pickle's arguments and state."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.args, self.state = args, None
        return self

    def __init__(self, *args, **kwargs):  # REDUCE calls cls(*args): nothing to do beyond __new__
        pass

    def __setstate__(self, state):  # BUILD: the object's __dict__ (or (dict, slots))
        self.state = state


_record_classes: dict[str, type] = {}


def _record_class(qualname: str) -> type:
    if qualname not in _record_classes:
        _record_classes[qualname] = type(qualname.rsplit(".", 1)[-1], (_Record,), {"qualname": qualname})
    return _record_classes[qualname]


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _encode(text, encoding="latin1"):
    # Protocol 2 pickles bytes as _codecs.encode(str, 'latin1'): only that, on a str.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode called with something other than (str, 'latin1')")
    return text.encode(encoding)


def _reconstructor(cls, base, state):
    # copyreg._reconstructor (protocols 0 and 1): allowed for records only.
    if not (isinstance(cls, type) and issubclass(cls, _Record)) or base is not object:
        raise pickle.UnpicklingError("copyreg._reconstructor of a class outside the allow-list")
    return cls.__new__(cls)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, record_prefixes: tuple[str, ...] | None,
                 budget: int):
        super().__init__(file)
        self.archive, self.prefix, self.record_prefixes = archive, prefix, record_prefixes
        self.storages: dict[str, torch.Tensor] = {}
        self.storage_keys: dict[int, str] = {}  # id(storage) -> its key, to name it in a refusal
        self.budget, self.spent = budget, 0

    def _charge(self, nbytes: int, what: str) -> None:
        self.spent += nbytes
        if self.spent > self.budget:
            raise TooLarge(f"{what} takes {gigabytes(nbytes)}, {gigabytes(self.spent)} in all: {OVER_BUDGET}"
                           .format(budget=gigabytes(self.budget)))

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 (torch.save's) writes Python 2 names (__builtin__.set); the mapped name is
        # still checked against the allow-list below.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualname = f"{module}.{name}"
        if not _IDENTIFIER.fullmatch(qualname):
            raise Refused(qualname)
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return self._rebuild_tensor
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return _rebuild_parameter
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if qualname == "torch.Size":
            return tuple
        if qualname == "collections.OrderedDict":
            return OrderedDict
        if qualname in ("builtins.set", "builtins.frozenset"):
            return set if name == "set" else frozenset
        if qualname == "_codecs.encode":
            return _encode
        if qualname == "copyreg._reconstructor":
            return _reconstructor
        if self.record_prefixes is not None and (qualname in _TORCH_RECORDS or qualname in _INERT
                                                 or any(qualname.startswith(p) for p in self.record_prefixes)):
            return _record_class(qualname)
        raise Refused(qualname)

    def persistent_load(self, pid: Any) -> torch.Tensor:
        # torch.save's zip format: ('storage', storage_type, key, location, numel); the bytes are
        # the archive member <prefix>/data/<key>.
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")
                and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unsupported persistent id {str(pid)[:60]}")
        _, storage_type, key, _location, numel = pid
        key = key.decode() if isinstance(key, bytes) else str(key)
        if key not in self.storages:
            dtype = storage_type.dtype
            info = self.archive.getinfo(f"{self.prefix}data/{key}")
            declared = int(numel) * dtype.itemsize
            if info.file_size != declared:  # checked before reading: the header's size, not the bytes'
                raise TooLarge(f"storage {key}: the pickle declares {declared} bytes, its archive member holds "
                               f"{info.file_size}; damaged or forged")
            self._charge(declared, f"storage {key}")
            raw = self.archive.read(info)
            flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            self.storages[key] = flat
            self.storage_keys[id(flat)] = key
        return self.storages[key]

    def _rebuild_tensor(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        if not isinstance(storage, torch.Tensor):
            raise pickle.UnpicklingError("a tensor without a storage")
        size, stride, offset = tuple(size), tuple(stride), int(offset)
        what = f"a tensor of shape {size} (storage {self.storage_keys.get(id(storage), '?')})"
        numel = 1
        for n in size:
            numel *= n
        if len(size) != len(stride) or min((*size, *stride, offset), default=0) < 0 or (
                numel and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= storage.numel()):
            raise TooLarge(f"{what}: strides {stride} from offset {offset} reach outside its storage of "
                           f"{storage.numel()} elements; damaged or forged")
        self._charge(numel * storage.element_size(), what)  # the copy made below
        return storage.as_strided(size, stride, offset).clone()


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("a parameter without a tensor")
    return data


def _plain(node: Any, seen: dict[int, Any]) -> Any:
    """Records to dicts {"class": qualname, **state}; OrderedDicts to dicts; tensors as they are."""
    if isinstance(node, torch.Tensor) or node is None or isinstance(node, (str, bytes, int, float, bool, torch.dtype)):
        return node
    if id(node) in seen:  # shared objects (a module in two places) stay shared
        return seen[id(node)]
    if isinstance(node, _Record):
        out: dict[str, Any] = {"class": node.qualname}
        seen[id(node)] = out
        state = node.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):  # (dict, slots)
            state = {**state[0], **(state[1] or {})}
        if isinstance(state, dict):
            for key, value in state.items():
                if key != "class":
                    out[str(key)] = _plain(value, seen)
        elif state is not None:
            out["state"] = _plain(state, seen)
        if node.args:
            out["args"] = _plain(list(node.args), seen)
        return out
    if isinstance(node, dict):
        out = {}
        seen[id(node)] = out
        for key, value in node.items():
            out[key if isinstance(key, (str, int)) else str(key)] = _plain(value, seen)
        return out
    if isinstance(node, (list, tuple, set, frozenset)):  # kept shared too: a walk of copies would multiply
        items = seen[id(node)] = [] if not isinstance(node, tuple) else None
        converted = [_plain(v, seen) for v in node]
        if items is None:
            items = seen[id(node)] = tuple(converted)
        else:
            items.extend(converted)
        return items
    return repr(node)


def read_torch_pickle(path: str | os.PathLike, record_prefixes: tuple[str, ...] | None = ()) -> Any:
    """The object a torch.save zip file holds, as plain containers and tensors, without running it.

    Classes whose qualified name starts with one of `record_prefixes` (e.g. "models.") and the
    common torch.nn modules become {"class": qualname, **their __dict__} (None: no records at all,
    what torch's weights_only allows); tensors are rebuilt on the CPU in their saved dtype. Any
    other global is one UserError line naming it; a file over its memory budget, one naming the tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a torch.save zip archive (a file from torch < 1.6 or not a checkpoint); "
                        "only the zip format (torch >= 1.6) can be read without running its pickle")
    budget = memory_budget(path)
    try:
        check_archive(path, budget)
        with zipfile.ZipFile(path) as archive:
            pkl = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(pkl) != 1:
                raise UserError(f"{path}: not a torch.save archive (no single data.pkl inside)")
            prefix = pkl[0][: -len("data.pkl")]
            order = f"{prefix}byteorder"
            if order in archive.namelist() and archive.read(order).decode() != sys.byteorder:
                raise UserError(f"{path}: saved on a {archive.read(order).decode()}-endian machine; "
                                "slimflow reads weights in this machine's byte order only")
            with archive.open(pkl[0]) as f:
                obj = _Unpickler(f, archive, prefix, record_prefixes, budget).load()
    except Refused as e:
        raise Refused(f"{path}: refused: its pickle names {e.args[0]}, which is not a tensor, a container or a "
                      "model layer's record; nothing in the file was run (if you trust it, load it with its "
                      "own code and save model.state_dict())", e.name) from None
    except TooLarge as e:
        raise TooLarge(e.args[0] if e.args[0].startswith(f"{path}: ") else f"{path}: {e.args[0]}") from None
    except UserError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError, ValueError, TypeError,
            RuntimeError, AttributeError, IndexError) as e:
        raise UserError(f"{path}: damaged or not a checkpoint ({type(e).__name__}: {str(e)[:80]})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    tree = _plain(obj, {})
    check_tensors(path, tree, budget)  # every tensor was charged when built; this bounds the walks after
    return tree
