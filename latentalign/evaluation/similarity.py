"""Stateful representation-similarity evaluation (torchmetrics style).

:class:`SimilarityEvaluator` streams paired row batches of two embedding sets. ``linear_cka``,
``unbiased_cka``, ``svcca`` and ``procrustes_distance`` only accumulate float64 moments (the mergeable
:class:`~latentalign.functional.moments.CrossStats` of each batch, merged; ``O((d1 + d2)^2)`` memory,
whatever the number of rows); ``mutual_knn`` and ``cknna`` need the whole
k-NN graph, so when they are requested the rows themselves are kept until :meth:`compute`. The result
equals :func:`latentalign.functional.similarity.similarity_scores` on all rows at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from latentalign._array import ArrayLike
from latentalign._validation import check_choice, check_number, check_pair
from latentalign.functional.moments import CrossStats
from latentalign.functional.similarity import (
    KNN_METRICS,
    MOMENT_METRICS,
    PROCRUSTES_KINDS,
    SIMILARITY_METRICS,
    check_metrics,
    check_variance_fraction,
    cknna,
    moment_stats,
    mutual_knn,
    scores_from_stats,
)

__all__ = ["SimilarityEvaluator"]


class SimilarityEvaluator:
    """Accumulate CKA, unbiased CKA, SVCCA, Procrustes distance, mutual kNN and CKNNA over row batches.

    Parameters
    ----------
    metrics : sequence of str
        Any of ``SIMILARITY_METRICS``; the keys of :meth:`compute`'s result.
    k : int
        Neighbourhood size of ``mutual_knn`` and ``cknna``.
    variance : float
        Fraction of variance kept by ``svcca``.
    procrustes : {"angular", "euclidean"}
        ``kind`` of ``procrustes_distance``.
    chunk_size : int, optional
        Rows scored at once in the k-NN searches.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((100, 5))
    >>> ev = SimilarityEvaluator(metrics=("linear_cka",))
    >>> for start in range(0, 100, 30):
    ...     _ = ev.update(X[start:start + 30], 2 * X[start:start + 30])
    >>> round(ev.compute()["linear_cka"], 6)
    1.0
    """

    def __init__(
        self,
        metrics: Sequence[str] = SIMILARITY_METRICS,
        *,
        k: int = 10,
        variance: float = 0.99,
        procrustes: str = "angular",
        chunk_size: int | None = None,
    ) -> None:
        self.metrics = check_metrics(metrics)
        self.k = check_number(k, "k", integer=True, low=1)
        self.variance = check_variance_fraction(variance)
        self.procrustes = check_choice(procrustes, "procrustes", PROCRUSTES_KINDS)
        self.chunk_size = check_number(chunk_size, "chunk_size", integer=True, low=1, allow_none=True)
        self.reset()

    def reset(self) -> SimilarityEvaluator:
        """Forget every row seen so far."""
        self._stats: CrossStats | None = None
        self._dims: tuple[int, int] | None = None
        self._rows: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._n = 0
        return self

    @property
    def n_rows(self) -> int:
        """Number of paired rows accumulated."""
        return self._n

    def update(self, X: ArrayLike, Y: ArrayLike) -> SimilarityEvaluator:
        """Add a batch of paired rows (row ``i`` of ``X`` and of ``Y`` describe the same item)."""
        Xt, Yt, _ = check_pair(X, Y)
        if self._dims is not None:
            for name, t, width in (("X", Xt, self._dims[0]), ("Y", Yt, self._dims[1])):
                if t.shape[1] != width:
                    raise ValueError(
                        f"{name} has {t.shape[1]} features, but earlier batches had {width}. Pass "
                        "embeddings from the same models in every update, or call reset()."
                    )
        self._dims = (Xt.shape[1], Yt.shape[1])
        if set(MOMENT_METRICS) & set(self.metrics):
            part = moment_stats(Xt, Yt, self.metrics)
            self._stats = part if self._stats is None else self._stats.merge(part)
        if set(KNN_METRICS) & set(self.metrics):
            self._rows.append((Xt.detach().clone(), Yt.detach().clone()))
        self._n += Xt.shape[0]
        return self

    def compute(self) -> dict[str, float]:
        """The requested measures over every row seen since construction or the last :meth:`reset`."""
        if self._n == 0:
            raise RuntimeError("SimilarityEvaluator.compute() was called before any update(); call update(X, Y).")
        min_rows = 4 if {"unbiased_cka", "cknna"} & set(self.metrics) else 2
        if self._n < min_rows:
            raise ValueError(
                f"{self._n} rows were accumulated, but {', '.join(self.metrics)} needs at least {min_rows}."
            )
        out: dict[str, float] = {}
        if self._stats is not None:
            out.update(scores_from_stats(self._stats, self.metrics, self.variance, self.procrustes))
        if self._rows:
            X = torch.cat([x for x, _ in self._rows])
            Y = torch.cat([y for _, y in self._rows])
            if "mutual_knn" in self.metrics:
                out["mutual_knn"] = mutual_knn(X, Y, k=self.k, chunk_size=self.chunk_size)
            if "cknna" in self.metrics:
                out["cknna"] = cknna(X, Y, k=self.k, chunk_size=self.chunk_size)
        return {name: out[name] for name in self.metrics}

    def __repr__(self) -> str:
        return f"SimilarityEvaluator(metrics={self.metrics!r}, k={self.k!r}, n_rows={self.n_rows})"
