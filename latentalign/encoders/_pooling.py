"""Token pooling shared by the transformer adapters (HF, ONNX): cls, mean, last_token, all masked."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["TOKEN_POOLINGS", "check_pooling", "pool_tokens", "pool_tokens_numpy"]

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
