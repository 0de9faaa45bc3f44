"""MNIST's IDX file format: write, read and validate images and labels files, plain or gzipped.

    write_idx(Path("out/train-labels-idx1-ubyte.gz"), labels)          # uint8 (N,), gzipped by the name
    images = read_idx(Path("data/mnist/train-images-idx3-ubyte"), ndim=3)  # uint8 (N, H, W)
    images, labels = read_split(Path("data/mnist"), "train")          # both files, checked against each other

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of dimensions), one
big-endian int32 per dimension, then the data in C order. MNIST uses type 0x08 (unsigned byte):
images are N x H x W (magic 0x00000803), labels N (magic 0x00000801). A gzipped file is
recognised by its content (bytes 1f 8b), whatever its name. Every problem is one UserError line
that starts with the file's path and says what was expected.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ...errors import UserError
from ...io import os_error, write_bytes

__all__ = ["FILES", "NAMES", "UBYTE", "write_idx", "read_idx", "read_idx_header", "find_split_files", "read_split",
           "check_split"]

UBYTE = 0x08  # the only element type MNIST uses
# The type codes the format defines, to name what a file holds when it is not unsigned bytes.
TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32",
              0x0E: "float64"}
GZIP_MAGIC = b"\x1f\x8b"
# MNIST's own names; the val split is MNIST's test set ("t10k").
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
NAMES = [str(d) for d in range(10)]  # MNIST's classes: the digits
MIN_SIDE = 8  # smaller images cannot go through a UNet's downsamplings
_WHAT = {1: "labels (N)", 3: "images (N x H x W)"}


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array of 1 (labels) or 3 (images) dimensions; gzipped when `path` ends in `.gz`; atomic."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (1, 3):
        raise ValueError(f"write_idx: expected a uint8 array of 1 or 3 dimensions, got {array.dtype} {array.shape}")
    data = bytes([0, 0, UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes(order="C")
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)  # mtime 0: the same array gives the same bytes
    write_bytes(path, data)


def _open(path: Path) -> BinaryIO:
    """The file's byte stream, decompressed when its content is gzip."""
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == GZIP_MAGIC
        return gzip.open(path, "rb") if gzipped else open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{path}: not found; expected an MNIST-style IDX file") from None
    except OSError as e:
        raise os_error(path, e, "cannot read") from None


def _read(path: Path, stream: BinaryIO, n: int = -1) -> bytes:
    """`n` bytes (all with -1) of a stream; damaged gzip data is a UserError naming the file."""
    try:
        return stream.read(n)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise UserError(f"{path}: damaged gzip data ({e}); download or unpack the file again") from None
    except OSError as e:
        raise os_error(path, e, "cannot read") from None


def _header(path: Path, stream: BinaryIO, ndim: int) -> tuple[tuple[int, ...], int]:
    """Validate the magic and read the dimensions: (dims, header length)."""
    magic = _read(path, stream, 4)
    if len(magic) < 4:
        raise UserError(f"{path}: {len(magic)} bytes, too short for an IDX header; expected a 4-byte magic "
                        f"0x0000080{ndim} and {ndim} sizes ({_WHAT[ndim]})")
    if magic[:2] != b"\0\0":
        raise UserError(f"{path}: not an IDX file: magic 0x{magic.hex()} does not start with two zero bytes "
                        f"(expected 0x0000080{ndim}, {_WHAT[ndim]})")
    code, found_ndim = magic[2], magic[3]
    if code != UBYTE:
        name = TYPE_NAMES.get(code, "not a type code of the IDX format")
        raise UserError(f"{path}: data type code 0x{code:02x} ({name}); expected 0x08 (unsigned byte), as MNIST uses")
    if found_ndim != ndim:
        raise UserError(f"{path}: {found_ndim} dimensions; expected {ndim}: {_WHAT[ndim]}")
    raw = _read(path, stream, 4 * ndim)
    if len(raw) < 4 * ndim:
        raise UserError(f"{path}: {4 + len(raw)} bytes, too short for an IDX header; expected the 4-byte magic "
                        f"and {ndim} 4-byte sizes ({_WHAT[ndim]})")
    return struct.unpack(f">{ndim}I", raw), 4 + 4 * ndim


def _check_length(path: Path, dims: tuple[int, ...], header: int, length: int) -> None:
    """The data after the header is exactly prod(dims) bytes."""
    need, have = math.prod(dims), length - header
    if have != need:
        shape = " x ".join(map(str, dims))
        fix = (f"{need - have} bytes missing (truncated?)" if have < need
               else f"{have - need} extra bytes after the data")
        raise UserError(f"{path}: the header says {shape} = {need} bytes of data, the file holds {have}: {fix}")


def read_idx_header(path: str | Path, ndim: int) -> tuple[int, ...]:
    """The dimensions of an IDX file of unsigned bytes, with its length checked, without keeping its data.

    A plain file's length comes from the file system; a gzipped one is decompressed in chunks.
    """
    path = Path(path)
    with _open(path) as stream:
        dims, header = _header(path, stream, ndim)
        length = header
        while block := _read(path, stream, 1 << 22):
            length += len(block)
    _check_length(path, dims, header, length)
    return dims


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """A uint8 array of `ndim` dimensions from a plain or gzipped IDX file, validated (see the module doc)."""
    path = Path(path)
    with _open(path) as stream:
        dims, header = _header(path, stream, ndim)
        data = _read(path, stream)
    _check_length(path, dims, header, header + len(data))
    return np.frombuffer(data, dtype=np.uint8).reshape(dims).copy()  # copy: a writable array torch can wrap


def _candidates(name: str) -> list[str]:
    """`name`, MNIST's other spelling with a dot (train-images.idx3-ubyte), and both gzipped."""
    dotted = name.replace("-idx", ".idx")
    return [name, f"{name}.gz", dotted, f"{dotted}.gz"]


def find_split_files(root: str | Path, split: str) -> tuple[Path, Path]:
    """(images, labels) paths of `split` ("train" or "val") in an MNIST folder; a UserError names what is missing."""
    root = Path(root)
    if not root.is_dir():
        names = ", ".join(name for pair in FILES.values() for name in pair)
        raise UserError(f"{root}: dataset folder not found (dataset.path must be a folder holding MNIST's IDX files "
                        f"{names}, optionally .gz)")
    found = []
    for name in FILES[split]:
        names = _candidates(name)
        path = next((root / n for n in names if (root / n).is_file()), None)
        if path is None:
            kind = "images" if "images" in name else "labels"
            raise UserError(f"{root}: no {split} {kind} file; expected one of {', '.join(names)}")
        found.append(path)
    return found[0], found[1]


def _check_pair(images_path: Path, dims: tuple[int, ...], labels_path: Path, labels: np.ndarray,
                n_classes: int) -> None:
    """Images and labels agree in count, the images are large enough and every label is a class."""
    n, h, w = dims
    if n == 0:
        raise UserError(f"{images_path}: holds no images; expected at least one")
    if h < MIN_SIDE or w < MIN_SIDE:
        raise UserError(f"{images_path}: images are {h}x{w}; expected at least {MIN_SIDE}x{MIN_SIDE}")
    if len(labels) != n:
        raise UserError(f"{labels_path}: {len(labels)} labels but {images_path} holds {n} images; "
                        "expected one label per image")
    bad = np.flatnonzero(labels >= n_classes)
    if len(bad):
        raise UserError(f"{labels_path}: label {int(labels[bad[0]])} at index {int(bad[0])} is outside "
                        f"0..{n_classes - 1}; expected digit classes")


def read_split(root: str | Path, split: str, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W), labels uint8 (N,)) of `split`, validated against each other."""
    images_path, labels_path = find_split_files(root, split)
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    _check_pair(images_path, images.shape, labels_path, labels, n_classes)
    return images, labels


def check_split(root: str | Path, split: str, n_classes: int = 10) -> tuple[Path, Path, tuple[int, ...]]:
    """`read_split`'s checks without keeping the pixels: (images path, labels path, images' dims)."""
    images_path, labels_path = find_split_files(root, split)
    dims = read_idx_header(images_path, 3)
    _check_pair(images_path, dims, labels_path, read_idx(labels_path, 1), n_classes)
    return images_path, labels_path, dims
