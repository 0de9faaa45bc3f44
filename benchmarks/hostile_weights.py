"""Hostile torch.save files built byte by byte, for tests/test_weights_hostile.py and the peak-memory
numbers in docs/RELIABILITY.md:

    python benchmarks/hostile_weights.py /tmp/hostile     # writes stride0.pt and bomb.pt there
    /usr/bin/time -v python -m pipeline_lib import-weights /tmp/hostile/bomb.pt /tmp/hostile/out.pt --task detection

stride0.pt holds one float declared as a 30000×30000 view (stride 0): 3.6 GB once copied.
bomb.pt holds a 1 GiB storage of zeros as a deflated member: about 1 MB on disk.
"""
from __future__ import annotations

import io
import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch


class Storage:
    """Pickles as torch.save's persistent id of storage "0" holding `numel` floats."""

    def __init__(self, numel):
        self.numel = numel


class Tensor:
    """Pickles as torch's _rebuild_tensor_v2 of a view of storage "0"."""

    def __init__(self, numel, size, stride, offset=0):
        self.storage, self.size, self.stride, self.offset = Storage(numel), size, stride, offset

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self.storage, self.offset, self.size, self.stride, False, OrderedDict())


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", obj.numel) if isinstance(obj, Storage) else None


def archive(path, pkl: bytes, data: bytes = b""):
    """A torch.save zip around `pkl`, its storage "0" holding `data`."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        z.writestr("archive/data/0", data)
    return path


def tensor_file(path, tensor: Tensor, data: bytes = b""):
    """A torch.save zip of {"w": tensor}, its storage "0" holding `data`."""
    buffer = io.BytesIO()
    TorchPickler(buffer, protocol=2).dump({"w": tensor})
    return archive(path, buffer.getvalue(), data)


def deflated(path, numel):
    """The archive again, its storage "0" holding `numel` zero floats deflated (streamed: no large buffer)."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist() if i.filename != "archive/data/0"}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, data in members.items():
            z.writestr(name, data)
        with z.open("archive/data/0", "w", force_zip64=True) as f:
            chunk = bytes(1 << 24)
            for _ in range(numel * 4 // len(chunk)):
                f.write(chunk)
    return path


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.zeros(1).expand(30000, 30000)}, out / "stride0.pt")
    numel = 1 << 28  # 1 GiB of float32
    deflated(tensor_file(out / "bomb.pt", Tensor(numel, (numel,), (1,)), data=bytes(4)), numel)
    for name in ("stride0.pt", "bomb.pt"):
        print(out / name, (out / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main(sys.argv[1])
