"""Helpers shared by the experiment runners and the demo: thread settings and caption selection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PreviousThreads", "set_threads", "restore_threads", "unique_caption_rows"]


@dataclass(frozen=True)
class PreviousThreads:
    """What :func:`set_threads` replaced, for :func:`restore_threads` to put back.

    Attributes
    ----------
    torch_threads : int
        torch's intra-op thread count before the call.
    native_pools : threadpoolctl.threadpool_limits
        The limit set on the native thread pools (the BLAS under numpy and scipy, OpenMP), which remembers
        their previous sizes.
    """

    torch_threads: int
    native_pools: Any


def set_threads(setup: dict[str, Any]) -> PreviousThreads | None:
    """Run torch and the BLAS under numpy/scipy on ``setup["torch_threads"]`` threads (when the config sets it).

    torch's thread count does not reach the BLAS that numpy and scipy call, whose pool keeps its own size
    (the machine's cores, or ``OPENBLAS_NUM_THREADS``). A fit's sums run in a different order with another
    thread count, and some fits (a functional map on a handful of anchors) move visibly with that rounding,
    so a page that fixes its thread count fixes both pools. The native pools are limited through
    threadpoolctl.

    Parameters
    ----------
    setup : dict
        An experiment's ``[setup]`` table; only its ``"torch_threads"`` key is read.

    Returns
    -------
    PreviousThreads or None
        What the call replaced, to hand to :func:`restore_threads`; ``None`` when the config does not set
        ``torch_threads`` (nothing was changed).

    Raises
    ------
    ValueError
        When ``torch_threads`` is not a positive whole number.

    Examples
    --------
    >>> import torch
    >>> from threadpoolctl import threadpool_info
    >>> before = torch.get_num_threads()
    >>> previous = set_threads({"torch_threads": 1})
    >>> torch.get_num_threads(), {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}
    (1, {1})
    >>> restore_threads(previous)
    >>> torch.get_num_threads() == before, set_threads({})
    (True, None)
    """
    import torch
    from threadpoolctl import threadpool_limits

    if "torch_threads" not in setup:
        return None
    threads = setup["torch_threads"]
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(
            f"setup.torch_threads must be a positive whole number of threads, got {threads!r}; "
            "set it to 1 or more, or leave it out to keep the machine's defaults."
        )
    previous = PreviousThreads(torch_threads=torch.get_num_threads(), native_pools=threadpool_limits(limits=threads))
    torch.set_num_threads(threads)
    return previous


def restore_threads(previous: PreviousThreads | None) -> None:
    """Put back the thread counts that :func:`set_threads` replaced (``None``: leave them).

    Parameters
    ----------
    previous : PreviousThreads or None
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
        torch.set_num_threads(previous.torch_threads)
        previous.native_pools.restore_original_limits()


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
