"""Stateful retrieval evaluation (torchmetrics style): ``update`` per retrieval problem, ``compute`` at the end.

Each :meth:`RetrievalEvaluator.update` call is one retrieval problem (its queries are ranked against its own
keys, e.g. one batch of image-caption pairs or one evaluation split). Only the per-query gold positions are
kept, never the embeddings. :meth:`~RetrievalEvaluator.compute` averages over all queries seen (a
micro-average), with the metric names of :func:`latentalign.functional.retrieval.retrieval_scores`; a single
``update`` gives exactly the function's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from latentalign._array import ArrayLike
from latentalign._validation import check_number
from latentalign.functional.retrieval import (
    check_retrieval_options,
    retrieval_positions,
    summarize_positions,
)

__all__ = ["RetrievalEvaluator"]


class RetrievalEvaluator:
    """Accumulate recall@k, precision@k, MRR and ranks over several retrieval problems.

    Parameters
    ----------
    k : int or tuple of int
        Cut-offs for recall@k and precision@k.
    csls : bool
        Rank by CSLS (cosine only); penalties are computed within each ``update``.
    csls_k : int
        CSLS neighbourhood size.
    metric : {"cosine", "l2", "dot"}
    index : {"exact", "faiss", "faiss-ivf"}
    ties : {"pessimistic", "optimistic"}
    chunk_size : int, optional
        Query rows scored at once.
    nlist, nprobe : int, optional
        IVF parameters (``index="faiss-ivf"`` only).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((20, 4))
    >>> ev = RetrievalEvaluator(k=1).update(X[:10], X[:10]).update(X[10:], X[10:])
    >>> ev.compute()["recall@1"], ev.n_queries
    (1.0, 20)
    """

    def __init__(
        self,
        *,
        k: int | Sequence[int] = (1, 5, 10),
        csls: bool = False,
        csls_k: int = 10,
        metric: str = "cosine",
        index: str = "exact",
        ties: str = "pessimistic",
        chunk_size: int | None = None,
        nlist: int | None = None,
        nprobe: int | None = None,
    ) -> None:
        check_retrieval_options(metric, csls, index, ties, nlist, nprobe)
        self.k = k
        self.csls = csls
        self.csls_k = csls_k
        self.metric = metric
        self.index = index
        self.ties = ties
        self.chunk_size = check_number(chunk_size, "chunk_size", integer=True, low=1, allow_none=True)
        self.nlist = nlist
        self.nprobe = nprobe
        self.reset()

    def reset(self) -> RetrievalEvaluator:
        """Forget every query seen so far."""
        self._best: list[torch.Tensor] = []
        self._within: list[torch.Tensor] = []
        self._ks: tuple[int, ...] | None = None
        self._depth: int | None = None
        return self

    @property
    def n_queries(self) -> int:
        """Number of queries accumulated."""
        return sum(len(b) for b in self._best)

    def update(self, Q: ArrayLike, K: ArrayLike, gold: Any = None) -> RetrievalEvaluator:
        """Rank the keys ``K`` for the queries ``Q`` (one retrieval problem) and keep the gold positions.

        ``gold`` is as in :func:`~latentalign.functional.retrieval.retrieval_scores` (indices into this ``K``).
        """
        found = retrieval_positions(
            Q,
            K,
            gold=gold,
            k=self.k,
            csls=self.csls,
            csls_k=self.csls_k,
            metric=self.metric,
            index=self.index,
            ties=self.ties,
            chunk_size=self.chunk_size,
            nlist=self.nlist,
            nprobe=self.nprobe,
        )
        if self._ks is not None and found.ks != self._ks:  # pragma: no cover - ks depends only on self.k
            raise RuntimeError("k changed between updates; call reset() first.")
        best, within, ks, depth = found
        self._best.append(best)
        self._within.append(within)
        self._ks, self._depth = ks, depth
        return self

    def compute(self) -> dict[str, float]:
        """Metrics over every query seen since construction or the last :meth:`reset`."""
        if not self._best or self._ks is None:  # update() sets both
            raise RuntimeError("RetrievalEvaluator.compute() was called before any update(); call update(Q, K) first.")
        return summarize_positions(torch.cat(self._best), torch.cat(self._within), self._ks, self._depth)

    def __repr__(self) -> str:
        return (
            f"RetrievalEvaluator(k={self.k!r}, csls={self.csls!r}, metric={self.metric!r}, index={self.index!r}, "
            f"n_queries={self.n_queries})"
        )
