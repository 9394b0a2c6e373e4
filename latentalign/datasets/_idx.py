"""Read the IDX format of (Fashion-)MNIST (optionally gzip-compressed)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from latentalign.exceptions import PersistenceError

__all__ = ["read_idx"]


def read_idx(path: Path) -> np.ndarray:
    """Return the uint8 array stored in an IDX file (``.gz`` files are decompressed).

    The header is two zero bytes, the type code (0x08 = unsigned byte), the number of
    dimensions, then one big-endian int32 per dimension.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise PersistenceError(f"{path} is not an unsigned-byte IDX file (header {raw[:4]!r}).")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise PersistenceError(f"{path}: header says shape {shape}, but holds {data.size} values.")
    return data.reshape(shape).copy()
