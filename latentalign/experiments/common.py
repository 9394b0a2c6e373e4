"""Helpers shared by the experiment runners and the demo: torch thread settings and caption selection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["set_threads", "restore_threads", "unique_caption_rows"]


def set_threads(setup: dict[str, Any]) -> int | None:
    """Apply ``setup["torch_threads"]`` (when the config sets it) and return the previous thread count.

    Parameters
    ----------
    setup : dict
        An experiment's ``[setup]`` table; only its ``"torch_threads"`` key is read.

    Returns
    -------
    int or None
        torch's thread count before the call, to hand to :func:`restore_threads`; ``None`` when the
        config does not set ``torch_threads`` (nothing was changed).

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> previous = set_threads({"torch_threads": 1})
    >>> torch.get_num_threads(), previous == before
    (1, True)
    >>> restore_threads(previous)
    >>> torch.get_num_threads() == before, set_threads({})
    (True, None)
    """
    import torch

    if "torch_threads" not in setup:
        return None
    previous = torch.get_num_threads()
    torch.set_num_threads(int(setup["torch_threads"]))
    return previous


def restore_threads(previous: int | None) -> None:
    """Set torch's thread count back to what :func:`set_threads` returned (``None``: leave it).

    Parameters
    ----------
    previous : int or None
        The value :func:`set_threads` returned.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> restore_threads(set_threads({"torch_threads": 1}))
    >>> torch.get_num_threads() == before
    True
    """
    import torch

    if previous is not None:
        torch.set_num_threads(previous)


def unique_caption_rows(*caption_lists: Sequence[str | None]) -> np.ndarray:
    """Rows whose caption is the first of its kind in every language (case and outer spaces ignored).

    Several Tux Paint stamps share a caption ("A flower."); with two identical keys retrieval has no single
    right answer, so the demo and the experiments keep the first stamp of each caption. A row with a
    missing or empty caption in any language is dropped.

    Parameters
    ----------
    *caption_lists : sequence of str or None
        One list per language, all of the same length; entry ``i`` of each is row ``i``'s caption.

    Returns
    -------
    numpy.ndarray of int64
        Row indices, ascending.

    Examples
    --------
    >>> en = ["A cat.", "A dog.", "a cat.", "A bird.", None]
    >>> fr = ["Un chat.", "Un chien.", "Un chat.", "Un chien.", "Un poisson."]
    >>> unique_caption_rows(en, fr).tolist()
    [0, 1]
    """
    seen: list[set[str]] = [set() for _ in caption_lists]
    rows = []
    for i, captions in enumerate(zip(*caption_lists)):
        normalised = [c.strip().lower() if c else "" for c in captions]
        if all(c and c not in s for c, s in zip(normalised, seen)):
            rows.append(i)
        for c, s in zip(normalised, seen):
            s.add(c)
    return np.asarray(rows, dtype=np.int64)
