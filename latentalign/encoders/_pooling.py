"""Token pooling shared by the transformer adapters (HF, ONNX): cls, mean, last_token, all masked; and the
pooling of hidden-layer outputs captured by forward hooks (:func:`pool_layer_output`)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["TOKEN_POOLINGS", "check_pooling", "pool_layer_output", "pool_tokens", "pool_tokens_numpy"]

TOKEN_POOLINGS = ("cls", "mean", "last_token", "max")


def check_pooling(pooling: str, choices: tuple[str, ...] = TOKEN_POOLINGS) -> str:
    """Return ``pooling`` if it is one of ``choices``, else raise ``ValueError`` listing them."""
    if pooling not in choices:
        raise ValueError(f"pooling must be one of {choices}, got {pooling!r}.")
    return pooling


def _last_index(mask: torch.Tensor) -> torch.Tensor:
    # position of the last 1 in each row: works for right and left padding
    length = mask.shape[1]
    return length - 1 - mask.flip(1).to(torch.int64).argmax(dim=1)


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token states ``(batch, seq, dim)`` into ``(batch, dim)`` using the attention ``mask``.

    ``cls`` takes the first token, ``mean`` averages the unmasked tokens, ``last_token`` takes the last
    unmasked token (left or right padding), ``max`` takes the max over unmasked tokens.

    Examples
    --------
    >>> h = torch.arange(12.0).reshape(1, 4, 3)
    >>> m = torch.tensor([[1, 1, 0, 0]])
    >>> pool_tokens(h, m, "mean").tolist(), pool_tokens(h, m, "last_token").tolist()
    ([[1.5, 2.5, 3.5]], [[3.0, 4.0, 5.0]])
    """
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.to(hidden.dtype).unsqueeze(-1)
    if pooling == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    if pooling == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(1).values
    if pooling == "last_token":
        idx = _last_index(mask)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
    raise ValueError(f"pooling must be one of {TOKEN_POOLINGS}, got {pooling!r}.")


def pool_tokens_numpy(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """numpy version of :func:`pool_tokens` (used for ONNX outputs)."""
    return pool_tokens(torch.from_numpy(np.ascontiguousarray(hidden)), torch.from_numpy(mask), pooling).numpy()


def pool_layer_output(out: object, name: str, *, spatial: str = "mean") -> torch.Tensor:
    """One ``(batch, features)`` row per item from a module's output, as a forward hook receives it.

    A tuple or list gives its first tensor (e.g. a transformer block's hidden states); a 2-D tensor is
    kept; a 4-D ``(batch, channels, H, W)`` feature map is averaged (``spatial="mean"``) or maxed
    (``"max"``) over space; a 3-D ``(batch, tokens, features)`` sequence is averaged (or maxed) over its
    tokens.

    Examples
    --------
    >>> pool_layer_output(torch.ones(2, 3, 4, 4), "conv").shape
    torch.Size([2, 3])
    >>> pool_layer_output((torch.arange(6.0).reshape(1, 3, 2),), "block", spatial="max").tolist()
    [[4.0, 5.0]]
    """
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"layer {name!r} returned {type(out).__name__}, not a tensor; choose a module whose output is a "
            "tensor (or a tuple starting with one)."
        )
    if out.ndim == 2:
        return out
    if out.ndim in (3, 4):
        axes = (1,) if out.ndim == 3 else (2, 3)
        return out.mean(axes) if spatial == "mean" else out.amax(axes)
    raise ValueError(
        f"layer {name!r} returned a tensor of shape {tuple(out.shape)}; expected (batch, features), "
        "(batch, tokens, features) or (batch, channels, H, W). Choose another layer."
    )
