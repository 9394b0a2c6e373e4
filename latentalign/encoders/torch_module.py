"""Adapter for any ``torch.nn.Module`` plus a preprocessing callable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from latentalign.encoders._pooling import pool_layer_output
from latentalign.encoders._weights import module_fingerprint
from latentalign.encoders.base import BaseEncoder, check_dim, check_modality, resolve_device

__all__ = ["TorchModuleEncoder", "run_with_hooks"]

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


def run_with_hooks(
    module: torch.nn.Module, names: list[str], forward: Callable[[], Any], *, spatial: str = "mean"
) -> dict[str, torch.Tensor]:
    """Run ``forward()`` once with forward hooks on the submodules ``names`` of ``module``; return each
    one's output pooled to ``(batch, features)`` by :func:`~latentalign.encoders._pooling.pool_layer_output`.

    A submodule called more than once in the pass (a shared block) keeps its last output.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    >>> x = torch.ones(4, 1, 6, 6)
    >>> {k: tuple(v.shape) for k, v in run_with_hooks(net, ["0", "1"], lambda: net(x)).items()}
    {'0': (4, 3), '1': (4, 48)}
    """
    modules = dict(module.named_modules())
    captured: dict[str, Any] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            captured[name] = output

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in names]
    try:
        forward()
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in names if name not in captured]
    if missing:
        raise ValueError(
            f"layers {missing} did not run in the forward pass (ran: {[n for n in names if n in captured]}); "
            "choose modules the forward pass calls."
        )
    return {name: pool_layer_output(captured[name], name, spatial=spatial) for name in names}


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
    ``encode(layers=...)`` captures module outputs with forward hooks during the one forward pass:
    ``"all"`` means the module's direct children (:meth:`layer_names`, e.g. each layer of a
    ``Sequential``), and any nested module path of ``module.named_modules()`` can be named. Each output is
    reduced to one row per item by :func:`~latentalign.encoders._pooling.pool_layer_output` (spatial mean
    of ``(n, C, H, W)`` feature maps, mean over tokens of ``(n, T, d)``); ``postprocess`` applies only to
    the final output.

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

    def layer_names(self) -> list[str]:
        """The direct children of the module (what ``layers="all"`` returns), by their attribute names.

        Examples
        --------
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> enc = TorchModuleEncoder(net, dim=2)
        >>> enc.layer_names()
        ['0', '1', '2']
        >>> states = enc.encode(np.ones((5, 3), dtype=np.float32), layers="all", progress=False)
        >>> {name: a.shape for name, a in states.items()}
        {'0': (5, 4), '1': (5, 4), '2': (5, 2)}
        """
        return [name for name, _ in self.module.named_children()]

    def _extra_layer_names(self) -> list[str]:
        return [name for name, _ in self.module.named_modules() if name]

    def _input(self, batch: Any) -> Any:
        x = self.preprocess(batch) if self.preprocess is not None else self._to_tensor(batch)
        if isinstance(x, torch.Tensor):
            x = x.to(self.device)
            if x.is_floating_point():
                x = x.to(_DTYPES[self.dtype])
        return x

    def _encode_batch_layers(self, batch: Any, names: list[str]) -> dict[str, torch.Tensor]:
        x = self._input(batch)
        return run_with_hooks(self.module, names, lambda: self.module(x))

    def _encode_batch(self, batch: Any) -> torch.Tensor:
        x = self._input(batch)
        out = self.module(x)
        if self.postprocess is not None:
            out = self.postprocess(out)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"the module returned {type(out).__name__}, not a tensor; pass postprocess=... to pick the "
                "embedding (e.g. postprocess=lambda out: out[0])."
            )
        return out
