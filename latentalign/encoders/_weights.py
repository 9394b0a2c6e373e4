"""Loading and fingerprinting weights: safetensors or ``torch.load(weights_only=True)``, never pickle."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentalign.exceptions import PersistenceError

__all__ = ["load_state_dict_file", "module_fingerprint", "array_fingerprint", "file_fingerprint", "seeded"]


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``).

    Unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` containers and strips a DataParallel
    ``module.`` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist or is not a file.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle-only checkpoints are refused, not executed
            raise PersistenceError(
                f"could not read checkpoint {str(path)!r} with torch.load(weights_only=True) ({exc}). "
                "Save a plain state dict (torch.save(model.state_dict(), path)) or a .safetensors file."
            ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PersistenceError(f"checkpoint {str(path)!r} does not hold a state dict of tensors.")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def module_fingerprint(module: torch.nn.Module) -> str:
    """blake2b digest of a module's state dict (names, shapes, dtypes and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for key, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def array_fingerprint(*arrays: Any) -> str:
    """blake2b digest of numpy arrays (shape, dtype and bytes), read in chunks (memmaps stay cheap)."""
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        a = np.asarray(arr)
        h.update(f"{a.shape}:{a.dtype.str};".encode())
        if a.dtype == object:
            h.update(repr(a.tolist()).encode())
            continue
        flat = a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)
        step = 1 << 22
        for start in range(0, flat.size, step):
            h.update(flat[start : start + step].tobytes())
    return h.hexdigest()


def file_fingerprint(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's CPU RNG inside the block without changing the caller's RNG state."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield
