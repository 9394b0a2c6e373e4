"""Adapter for any ``torch.nn.Module`` plus a preprocessing callable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from latentalign.encoders._weights import module_fingerprint
from latentalign.encoders.base import BaseEncoder, check_dim, check_modality, resolve_device

__all__ = ["TorchModuleEncoder"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def _callable_id(fn: Callable[..., Any] | None) -> Any:
    """A stable description of a callable for the cache key (never a memory address)."""
    if fn is None:
        return None
    cfg = getattr(fn, "config", None)
    if callable(cfg):
        return {"type": type(fn).__qualname__, **cfg()}
    module = getattr(fn, "__module__", None) or type(fn).__module__
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{qualname}"


class TorchModuleEncoder(BaseEncoder):
    """Embeddings from any module: ``postprocess(module(preprocess(batch)))``.

    Parameters
    ----------
    module : torch.nn.Module
        Put in eval mode; run under ``torch.inference_mode()``.
    dim : int
        Output width (checked on every batch).
    preprocess : callable, optional
        Turns a batch of inputs (a slice of what ``encode`` receives) into the module's input tensor.
        Without it the batch is converted with ``torch.as_tensor`` (numeric arrays only).
    postprocess : callable, optional
        Turns the module output into ``(n, dim)`` (e.g. ``lambda out: out.pooler_output``).
    modality : {"array", "image", "text", "word"}
    dtype : {"float32", "float16", "bfloat16", "float64"}
        The module's compute dtype (floating inputs are cast to it); outputs are returned as float32.
    device : str or torch.device, optional
    name, model_id : str, optional
    seed : int, optional
        Recorded in metadata (the seed the module was initialised with, if any).

    Notes
    -----
    The cache key of :func:`latentalign.store.embed` uses ``metadata``: it holds a fingerprint of the
    module's weights and the qualified names of the pre/post-processing callables (or their
    ``config()`` when they have one), so changing a lambda's body without renaming it is not seen.
    """

    _libraries = ("numpy", "torch")

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        dim: int,
        preprocess: Callable[[Any], torch.Tensor] | None = None,
        postprocess: Callable[[Any], torch.Tensor] | None = None,
        modality: str = "array",
        dtype: str = "float32",
        device: str | torch.device | None = None,
        name: str | None = None,
        model_id: str | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got {dtype!r}.")
        self.dim = check_dim(dim, "TorchModuleEncoder")
        self.modality = check_modality(modality)
        self.dtype = dtype
        self.device = resolve_device(device)
        self.module = module.to(device=self.device, dtype=_DTYPES[dtype]).eval()
        self.preprocess = preprocess
        self.postprocess = postprocess
        self.model_id = model_id or type(module).__qualname__
        self.name = name or self.model_id
        self.seed = seed
        self._fingerprint: str | None = None

    def _modules(self) -> list[torch.nn.Module]:
        return [self.module]

    def _metadata(self) -> dict[str, Any]:
        if self._fingerprint is None:
            self._fingerprint = module_fingerprint(self.module)
        return {
            "model_id": self.model_id,
            "layer": "output",
            "pooling": _callable_id(self.postprocess),
            "dtype": self.dtype,
            "seed": self.seed,
            "weights_fingerprint": self._fingerprint,
            "preprocessing": _callable_id(self.preprocess),
        }

    def refresh_fingerprint(self) -> None:
        """Recompute the weights fingerprint (call after changing the module's weights in place)."""
        self._fingerprint = None

    def _to_tensor(self, batch: Any) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):
            return batch
        try:
            return torch.as_tensor(np.ascontiguousarray(batch))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"cannot turn a batch of {type(batch).__name__} into a tensor ({exc}); pass preprocess=... "
                "to TorchModuleEncoder."
            ) from None

    def _encode_batch(self, batch: Any) -> torch.Tensor:
        x = self.preprocess(batch) if self.preprocess is not None else self._to_tensor(batch)
        if isinstance(x, torch.Tensor):
            x = x.to(self.device)
            if x.is_floating_point():
                x = x.to(_DTYPES[self.dtype])
        out = self.module(x)
        if self.postprocess is not None:
            out = self.postprocess(out)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"the module returned {type(out).__name__}, not a tensor; pass postprocess=... to pick the "
                "embedding (e.g. postprocess=lambda out: out[0])."
            )
        return out
