"""Representation similarity between two paired embedding sets ``X`` (n, d1) and ``Y`` (n, d2).

Row ``i`` of ``X`` and row ``i`` of ``Y`` describe the same item. Every function returns a Python float.

=======================  ===========  ================================================================
function                 range        definition
=======================  ===========  ================================================================
``linear_cka``           [0, 1]       Kornblith et al. (2019), linear kernel, feature-space form
                                      ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``
``unbiased_cka``         ~[-1, 1]     CKA with the unbiased HSIC estimator of Song et al. (2012), as used by
                                      Nguyen et al. (2021) and the Platonic Representation code, linear kernel
``mutual_knn``           [0, 1]       Huh et al. (2024): mean over rows of ``|kNN_X(i) & kNN_Y(i)| / k``
``cknna``                ~[-1, 1]     Huh et al. (2024): unbiased CKA of cosine kernels restricted to
                                      mutual k-nearest-neighbour pairs
``svcca``                [0, 1]       Raghu et al. (2017): SVD keeping ``variance`` of the variance, then the
                                      mean canonical correlation
``procrustes_distance``  [0, pi/2]    Williams et al. (2021) angular shape metric ``arccos ||Xn^T Yn||_*``
                         [0, sqrt 2]  (``kind="euclidean"``: ``sqrt(2 - 2 ||Xn^T Yn||_*)``, the normalised
                                      Procrustes residual ``min_R ||Xn - Yn R||_F``)
=======================  ===========  ================================================================

``Xc`` is ``X`` with its column means removed; ``Xn = Xc / ||Xc||_F``.

Cost and memory
---------------
``linear_cka``, ``unbiased_cka``, ``svcca`` and ``procrustes_distance`` are computed from the package's one
moments accumulator, :class:`~latentalign.functional.moments.CrossStats` (``X^T X``, ``Y^T Y``, ``X^T Y``
about the means and, for the unbiased CKA only, a few fourth-order sums), accumulated in one pass over row
blocks: time ``O(n (d1 + d2)^2)``, memory ``O((d1 + d2)^2)``, never an ``n x n`` Gram matrix. The products
run in the inputs' dtype (float32 data at the float32 GEMM rate, the Gram matrices by BLAS ``syrk`` at half
the flops of a GEMM) and are summed in float64 across blocks; the accumulator shifts rows by a reference
mean before multiplying, so a large common offset costs no accuracy (float32 results agree with float64
arithmetic on the same data to about ``1e-6`` relative). Float32 products that would overflow or underflow
are redone in float64. Each measure asks only for the parts it reads (:func:`moment_flags`). The unbiased
HSIC is rewritten exactly in that form (for the linear kernel every sum over the Gram matrix is a sum over
features). All four are invariant to translating ``X`` or ``Y``, so they are evaluated on the centred
statistics. The statistics of separate batches merge exactly, which is how
:class:`~latentalign.evaluation.SimilarityEvaluator` streams. With fewer rows than features
(``n < d1 + d2``), :func:`linear_cka` uses the ``n x n`` centred Gram matrices instead (``O(n^2 (d1 + d2))``
time, the same value).

``mutual_knn`` and ``cknna`` search the exact k nearest neighbours of every row among the others, in
square blocks of the similarity matrix (``O(n^2 d)`` time, ``O(n k)`` memory plus two blocks of scores).
The cosine similarity matrix of a set with itself is symmetric, so each block is computed once and read by
its rows and by its columns: half the GEMM work of searching the set against itself. Among equal
similarities the neighbour with the lower row index is kept (the order of a stable sort); the row itself
never counts. The neighbour lists of the two spaces are intersected by binary search in sorted rows.
CKNNA's HSIC is evaluated on the ``n k`` kNN entries only.

Differences from the Platonic Representation Hypothesis code (``minyoungg/platonic-rep``, ``metrics.py``)
------------------------------------------------------------------------------------------------------
Their pipeline L2-normalises features and clips outliers before measuring; here ``mutual_knn`` and
``cknna`` use cosine similarity (the same as their inner product on normalised features) and no clipping.
Their CKNNA divides by ``sqrt(hsic_kk * hsic_ll) + 1e-6``; here there is no ``1e-6`` and a non-positive
denominator raises. Neighbours tied in similarity may be chosen differently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from scipy.linalg import get_blas_funcs

from latentalign._array import ArrayLike
from latentalign._validation import check_array, check_choice, check_number, check_pair
from latentalign.functional.blocks import torch_threads_beside_blas
from latentalign.functional.cpu_blas import cpu_products
from latentalign.functional.moments import CrossStats, compute_stats, is_finite
from latentalign.functional.norms import row_norms
from latentalign.functional.procrustes import FLOAT32_PRODUCT_FLOOR, products_underflowed
from latentalign.functional.retrieval import METRICS, knn_tensors

__all__ = [
    "linear_cka",
    "unbiased_cka",
    "mutual_knn",
    "cknna",
    "mutual_knn_from_neighbours",
    "cknna_from_neighbours",
    "svcca",
    "procrustes_distance",
    "similarity_scores",
    "SIMILARITY_METRICS",
    "check_metrics",
    "check_variance_fraction",
]

SIMILARITY_METRICS = ("linear_cka", "unbiased_cka", "mutual_knn", "cknna", "svcca", "procrustes_distance")
MOMENT_METRICS = ("linear_cka", "unbiased_cka", "svcca", "procrustes_distance")
KNN_METRICS = ("mutual_knn", "cknna")
PROCRUSTES_KINDS = ("angular", "euclidean")


def _check_xy(
    X: Any, Y: Any, min_rows: int, purpose: str, ensure_finite: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    Xt, Yt, _ = check_pair(X, Y, min_rows=min_rows, purpose=purpose, ensure_finite=ensure_finite)
    return Xt, Yt


# --------------------------------------------------------------------------------------------------------
# Measures from the moments accumulator (CrossStats is mergeable, so the streaming evaluator reads the same)
# --------------------------------------------------------------------------------------------------------
def moment_flags(metrics: Sequence[str]) -> dict[str, bool]:
    """The optional parts of :func:`~latentalign.functional.moments.compute_stats` that ``metrics`` read.

    Examples
    --------
    >>> moment_flags(["procrustes_distance"])
    {'squares': True, 'gram': False, 'gram_y': False, 'fourth': False}
    """
    grams = bool({"linear_cka", "unbiased_cka", "svcca"} & set(metrics))
    return {"squares": True, "gram": grams, "gram_y": grams, "fourth": "unbiased_cka" in metrics}


def moment_stats(X: torch.Tensor, Y: torch.Tensor, metrics: Sequence[str]) -> CrossStats:
    """The statistics ``metrics`` need, with products in the inputs' dtype and float64 sums across blocks.

    float32 inputs are multiplied in float32 (at the float32 GEMM rate; the accumulator's shift keeps the
    products accurate, see :mod:`~latentalign.functional.moments`). When float32 products overflow (values
    beyond ~1e19) or underflow (below ~1e-15), everything is redone with float64 products. Non-finite
    inputs raise the standard error naming the array and the first bad entry (they are found through the
    statistics, which saves a pass over the data).

    Examples
    --------
    >>> import torch
    >>> X = torch.arange(8.0).reshape(4, 2)
    >>> moment_stats(X, X, ["linear_cka"]).has_fourth
    False
    """
    flags = moment_flags(metrics)

    def stats_in(dtype: torch.dtype | None) -> CrossStats:
        return compute_stats(
            X,
            Y,
            squares=flags["squares"],
            gram=flags["gram"],
            gram_y=flags["gram_y"],
            fourth=flags["fourth"],
            product_dtype=dtype,
        )

    with torch.no_grad():
        stats = stats_in(None)
        narrow = torch.float64 not in (X.dtype, Y.dtype)
        if narrow and (not is_finite(stats) or products_underflowed(stats)):
            stats = stats_in(torch.float64)
    if not is_finite(stats):
        check_array(X, "X")
        check_array(Y, "Y")
        raise ValueError(
            "The products of X and Y overflowed even in float64 (values beyond ~1e150). Rescale the inputs, "
            "e.g. divide both by their largest absolute value (the similarity measures do not change)."
        )
    return stats


def _zero_variance(name: str, what: str) -> ValueError:
    return ValueError(
        f"{name} has zero variance (all rows are identical), so {what} is undefined. Check that the "
        "embeddings were extracted correctly."
    )


def _check_variance(stats: CrossStats, what: str) -> tuple[float, float]:
    """Total variances ``tr(Xc^T Xc)``, ``tr(Yc^T Yc)`` (from the sums of squares); both must be positive."""
    ssx, ssy = stats.squares()
    totals = float(ssx.sum()), float(ssy.sum())
    for name, total in zip(("X", "Y"), totals):
        if total <= 0:
            raise _zero_variance(name, what)
    return totals


def _check_rows_differ(X: torch.Tensor, Y: torch.Tensor, what: str) -> None:
    """Raise the zero-variance error when all rows of ``X`` or of ``Y`` are identical (every row is then
    everyone's neighbour, and the k-NN measures would score the order ties are broken in)."""
    for name, T in (("X", X), ("Y", Y)):
        if bool((T == T[0]).all()):
            raise _zero_variance(name, what)


def cka_from_stats(stats: CrossStats) -> float:
    """Linear CKA from :class:`~latentalign.functional.moments.CrossStats` (with both Gram matrices)."""
    _check_variance(stats, "linear CKA")
    cxy = stats.cxy
    num = (cxy * cxy).sum()
    den = torch.linalg.matrix_norm(stats.gram()) * torch.linalg.matrix_norm(stats.gram_y())
    return float(num / den)


def _hsic_u(n: int, c: torch.Tensor, sab: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC (Song et al. 2012, eq. 5) of linear kernels of centred rows, from feature-space sums.

    With centred rows ``p_i``, ``q_i``, ``K~ = P P^T - diag``, ``L~ = Q Q^T - diag``, ``a_i = K_ii``,
    ``b_i = L_ii`` and ``c = P^T Q``: ``tr(K~ L~) = ||c||_F^2 - sum a b``, ``1^T K~ 1 = -sum a`` and
    ``1^T K~ L~ 1 = sum a b`` (the terms with ``sum p = 0`` vanish). The estimator is invariant to
    translating either side, so centring loses nothing.
    """
    trace = (c * c).sum() - sab
    return (trace + sa * sb / ((n - 1) * (n - 2)) - 2.0 * sab / (n - 2)) / (n * (n - 3))


def unbiased_cka_from_stats(stats: CrossStats) -> float:
    """Unbiased linear CKA from :class:`~latentalign.functional.moments.CrossStats` (``fourth=True``, ``n >= 4``)."""
    n, f = stats.n, stats.fourth()
    cxx, cyy = stats.gram(), stats.gram_y()
    sa, sb = torch.trace(cxx), torch.trace(cyy)
    kl = _hsic_u(n, stats.cxy, f["sab"], sa, sb)
    kk = _hsic_u(n, cxx, f["saa"], sa, sa)
    ll = _hsic_u(n, cyy, f["sbb"], sb, sb)
    _check_positive_hsic(kk, ll, "unbiased CKA")
    return float(kl / torch.sqrt(kk * ll))


def _check_positive_hsic(kk: torch.Tensor, ll: torch.Tensor, what: str) -> None:
    if not (float(kk) > 0 and float(ll) > 0):
        raise ValueError(
            f"{what} is undefined here: the self-similarity HSIC estimates are {float(kk):.3g} (X) and "
            f"{float(ll):.3g} (Y), but both must be positive. This happens with very few rows or constant "
            "embeddings; use more rows."
        )


def _whitening(c: torch.Tensor, variance: float) -> torch.Tensor:
    """Directions keeping ``variance`` of the total variance, scaled to unit variance: (d, r)."""
    evals, evecs = torch.linalg.eigh(c)
    evals, evecs = evals.flip(0), evecs.flip(1)
    tol = float(evals[0]) * c.shape[0] * torch.finfo(c.dtype).eps
    positive = int((evals > tol).sum())
    evals, evecs = evals[:positive], evecs[:, :positive]
    ratio = torch.cumsum(evals, 0) / evals.sum()
    keep = min(positive, int((ratio < variance - 1e-12).sum()) + 1)
    return evecs[:, :keep] / torch.sqrt(evals[:keep])


def svcca_from_stats(stats: CrossStats, variance: float = 0.99) -> float:
    """SVCCA from :class:`~latentalign.functional.moments.CrossStats` (with both Gram matrices)."""
    _check_variance(stats, "SVCCA")
    wx, wy = _whitening(stats.gram(), variance), _whitening(stats.gram_y(), variance)
    rho = torch.linalg.svdvals(wx.T @ stats.cxy @ wy).clamp(0.0, 1.0)
    return float(rho[: min(wx.shape[1], wy.shape[1])].mean())


def procrustes_from_stats(stats: CrossStats, kind: str = "angular") -> float:
    """Procrustes shape distance from :class:`~latentalign.functional.moments.CrossStats` (``squares=True``)."""
    total_x, total_y = _check_variance(stats, "the Procrustes distance")
    similarity = float((torch.linalg.svdvals(stats.cxy).sum() / math.sqrt(total_x * total_y)).clamp(0.0, 1.0))
    if kind == "angular":
        return math.acos(similarity)
    return math.sqrt(max(0.0, 2.0 - 2.0 * similarity))


# --------------------------------------------------------------------------------------------------------
# Linear CKA from the n x n Gram matrices (fewer flops than the d x d form when n < d_x + d_y)
# --------------------------------------------------------------------------------------------------------
def _centred_gram(X: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``H X X^T H`` in float64 (``H`` the centring matrix), from a product in ``dtype``.

    ``X`` is shifted by its mean rounded to ``dtype`` (which removes the cancellation of a large offset),
    multiplied (the upper triangle by BLAS syrk on the CPU), then centred exactly in float64: ``H`` applied
    to both sides removes whatever mean the rounded shift left.
    """
    shift = X.to(torch.float64).mean(0).to(dtype)
    Xs = X.to(dtype) - shift
    if Xs.device.type == "cpu":
        a = Xs.numpy()
        upper = torch.from_numpy(get_blas_funcs("syrk", dtype=a.dtype)(1.0, a, trans=0, lower=0))
        upper = upper.to(torch.float64)
        G = upper + upper.triu(1).T
    else:
        G = (Xs @ Xs.T).to(torch.float64)
    G -= G.mean(0, keepdim=True)
    G -= G.mean(1, keepdim=True)
    return (G + G.T) / 2


def _grams_unusable(*grams: torch.Tensor) -> bool:
    """Whether products in a narrow dtype overflowed or underflowed (see ``products_underflowed``)."""
    return any(not bool(torch.isfinite(G).all()) or float(G.abs().max()) < FLOAT32_PRODUCT_FLOOR for G in grams)


def _cka_from_grams(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Linear CKA as ``<K, L> / (||K|| ||L||)`` of the centred ``n x n`` Gram matrices (equal to the feature form)."""
    dtype = X.dtype
    with torch.no_grad():
        K, L = _centred_gram(X, dtype), _centred_gram(Y, dtype)
        if dtype != torch.float64 and _grams_unusable(K, L):
            K, L = _centred_gram(X, torch.float64), _centred_gram(Y, torch.float64)
        if not (bool(torch.isfinite(K).all()) and bool(torch.isfinite(L).all())):
            check_array(X, "X")
            check_array(Y, "Y")
            raise ValueError(
                "The products of X and Y overflowed even in float64 (values beyond ~1e150). Rescale the inputs, "
                "e.g. divide both by their largest absolute value (linear CKA does not change)."
            )
        for name, G in (("X", K), ("Y", L)):
            if not float(torch.trace(G)) > 0:
                raise _zero_variance(name, "linear CKA")
        num = (K * L).sum()
        den = torch.linalg.matrix_norm(K) * torch.linalg.matrix_norm(L)
    return float(num / den)


# --------------------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------------------
def linear_cka(X: ArrayLike, Y: ArrayLike) -> float:
    """Linear centered kernel alignment (Kornblith et al., 2019), in the d x d feature-space form.

    ``CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``; equal to the Gram form
    ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with ``K = X X^T`` but never builds an ``n x n`` matrix.
    Invariant to orthogonal transforms and isotropic scaling of either side.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((100, 5))
    >>> Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((5, 5)))
    >>> round(linear_cka(X, 3.0 * X @ Q), 6)
    1.0
    """
    Xt, Yt = _check_xy(X, Y, 2, "linear CKA", ensure_finite=False)
    if Xt.shape[0] < Xt.shape[1] + Yt.shape[1]:
        return _cka_from_grams(Xt, Yt)
    return cka_from_stats(moment_stats(Xt, Yt, ("linear_cka",)))


def unbiased_cka(X: ArrayLike, Y: ArrayLike) -> float:
    """Linear CKA with the unbiased HSIC estimator (Song et al., 2012; Nguyen et al., 2021).

    ``HSIC_u(K, L) = [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n (n-3))``
    with ``K~ = X X^T`` with its diagonal zeroed (the formula of the Platonic Representation code,
    ``hsic_unbiased``). Every term is rewritten as a feature-space sum, so memory is ``O(d^2)`` rather than the
    ``O(n^2)`` of the Gram form. Needs ``n >= 4``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((50, 4))
    >>> round(unbiased_cka(X, 2.0 * X), 6)
    1.0
    """
    Xt, Yt = _check_xy(X, Y, 4, "the unbiased HSIC estimator", ensure_finite=False)
    return unbiased_cka_from_stats(moment_stats(Xt, Yt, ("unbiased_cka",)))


def check_variance_fraction(variance: Any) -> float:
    """Validate SVCCA's ``variance`` (a fraction in ``(0, 1]``); return it as a float.

    Examples
    --------
    >>> check_variance_fraction(1)
    1.0
    """
    check_number(variance, "variance", low=0.0, high=1.0, low_inclusive=False)
    return float(variance)


def svcca(X: ArrayLike, Y: ArrayLike, *, variance: float = 0.99) -> float:
    """Singular vector canonical correlation analysis (Raghu et al., 2017).

    Each side is centred and reduced to its top principal directions that explain ``variance`` of its total
    variance (eigenvalues of the covariance, i.e. squared singular values); SVCCA is the mean of the
    ``min(r_x, r_y)`` canonical correlations between the two reduced sets.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((200, 6))
    >>> round(svcca(X, X @ np.diag([1.0, 2, 3, 4, 5, 6])), 6)
    1.0
    """
    variance = check_variance_fraction(variance)
    Xt, Yt = _check_xy(X, Y, 2, "SVCCA", ensure_finite=False)
    return svcca_from_stats(moment_stats(Xt, Yt, ("svcca",)), variance)


def procrustes_distance(X: ArrayLike, Y: ArrayLike, *, kind: str = "angular") -> float:
    """Procrustes shape distance after centring and scaling both sides to unit Frobenius norm.

    ``kind="angular"`` (default): the shape metric of Williams et al. (2021, "Generalized shape metrics on
    neural representations", no whitening), ``arccos(||Xn^T Yn||_*)`` in ``[0, pi/2]``; it is a metric.
    ``kind="euclidean"``: the normalised Procrustes residual ``min_R ||Xn - Yn R||_F = sqrt(2 - 2
    ||Xn^T Yn||_*)`` in ``[0, sqrt(2)]`` (``R`` orthogonal; different widths are zero-padded).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((30, 3))
    >>> Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))
    >>> round(procrustes_distance(X, 5.0 * X @ Q + 1.0, kind="euclidean"), 6)
    0.0
    """
    check_choice(kind, "kind", PROCRUSTES_KINDS)
    Xt, Yt = _check_xy(X, Y, 2, "the Procrustes distance", ensure_finite=False)
    return procrustes_from_stats(moment_stats(Xt, Yt, ("procrustes_distance",)), kind)


def _check_knn_k(k: Any, n: int, low: int = 1) -> int:
    check_number(k, "k", integer=True, low=low)
    if k > n - 1:
        raise ValueError(f"k={k} neighbours (self excluded) were asked for, but X and Y have only {n} rows.")
    return int(k)


#: Rows of a block of the self-similarity matrix (a block of scores is 64 MiB in float32).
KNN_BLOCK_ROWS = 4096


def _unit_rows(X: torch.Tensor, name: str, block_rows: int) -> torch.Tensor:
    """``X`` with rows scaled to unit length, each rounded once from float64 (any finite magnitude)."""
    norms = row_norms(X)
    zero = norms == 0
    if bool(zero.any()):
        row = int(zero.nonzero()[0, 0])
        raise ValueError(
            f"{name} has a zero row (row {row}), whose cosine similarity is undefined. Drop all-zero rows "
            "first, or use metric='dot' or metric='l2'."
        )
    out = torch.empty_like(X)
    for start in range(0, X.shape[0], block_rows):
        stop = start + block_rows
        out[start:stop] = X[start:stop].to(torch.float64) / norms[start:stop, None]  # never in place: X is the caller's
    return out


def _top_candidates(S: torch.Tensor, k: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``min(k, width)`` best entries of every row of ``S``; among equal scores, lower columns first.

    ``torch.topk`` picks any of several equal scores; it is asked for one more entry than needed, and rows
    whose last kept score equals the next one (a tie across the cut) are re-selected by a stable sort.
    """
    width = S.shape[1]
    if width <= k:
        values, columns = torch.sort(S, dim=1, descending=True, stable=True)
        return values, columns + offset
    values, columns = torch.topk(S, k + 1, dim=1, sorted=True)
    tied = (values[:, k - 1] == values[:, k]).nonzero()[:, 0]
    values, columns = values[:, :k], columns[:, :k]
    if tied.numel():
        tv, tc = torch.sort(S[tied], dim=1, descending=True, stable=True)
        values[tied], columns[tied] = tv[:, :k], tc[:, :k]
    return values, columns + offset


def _merge_candidates(
    best_v: torch.Tensor, best_i: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, indices: torch.Tensor
) -> None:
    """Merge candidate neighbours ``(rows, values, indices)`` into the running lists ``best_v``/``best_i``, in place.

    Each row ends with its ``k`` best by decreasing score, then increasing index (three stable sorts: by
    index, by score, by row). Only the rows that have candidates are re-sorted.
    """
    k = best_v.shape[1]
    touched, slot, counts = torch.unique(rows, return_inverse=True, return_counts=True)
    t = touched.numel()
    v = torch.cat([best_v[touched].reshape(-1), values])
    i = torch.cat([best_i[touched].reshape(-1), indices])
    r = torch.cat([torch.arange(t, device=rows.device).repeat_interleave(k), slot])
    order = torch.sort(i).indices  # indices are distinct within a row
    order = order[torch.sort(v[order], descending=True, stable=True).indices]
    order = order[torch.sort(r[order], stable=True).indices]
    sizes = counts + k
    first = torch.cumsum(sizes, 0) - sizes
    keep = order[(first[:, None] + torch.arange(k, device=rows.device)).reshape(-1)]
    best_v[touched] = v[keep].view(t, k)
    best_i[touched] = i[keep].view(t, k)


class _SelfSearch:
    """Running k-nearest lists of every row, fed with blocks of the score matrix, each entry exactly once.

    Every row first takes the top ``k`` of its diagonal block (a sort). Its ``k``-th best score so far is
    then a threshold that an entry must reach to matter, so only the entries of an off-diagonal block that
    reach it are found (:func:`_entries_reaching`, by chunk maxima) and merged (:func:`_merge_candidates`
    orders ties by index, so the blocks may come in any order). A block with many entries at the thresholds
    is reduced by a top-``k`` instead.
    """

    def __init__(self, n: int, k: int, dtype: torch.dtype, device: torch.device) -> None:
        self.k = k
        self.values = torch.full((n, k), -math.inf, dtype=dtype, device=device)
        self.indices = torch.full((n, k), n, dtype=torch.int64, device=device)

    def add_diagonal(self, S: torch.Tensor, row0: int) -> None:
        """The block of rows ``row0 + i`` against themselves, its diagonal already set to ``-inf``."""
        self._add_top(S, row0, row0)

    def add_rows(self, S: torch.Tensor, row0: int, col0: int) -> None:
        """Rows ``row0 + i`` of the score block ``S`` against columns ``col0 + j``."""
        threshold = self.values[row0 : row0 + S.shape[0], self.k - 1]
        hits = _entries_reaching(S, threshold, self.k)
        if hits is None:
            self._add_top(S, row0, col0)
        elif hits[0].numel():
            i, j, v = hits
            _merge_candidates(self.values, self.indices, i + row0, v, j + col0)

    def add_columns(self, S: torch.Tensor, row0: int, col0: int) -> None:
        """Rows ``col0 + j`` of the transposed score block ``S^T`` (their scores against rows ``row0 + i``)."""
        threshold = self.values[col0 : col0 + S.shape[1], self.k - 1]
        hits = _entries_reaching(S.T, threshold, self.k)
        if hits is None:
            self._add_top(S.T.contiguous(), col0, row0)
        elif hits[0].numel():
            j, i, v = hits
            _merge_candidates(self.values, self.indices, j + col0, v, i + row0)

    def _add_top(self, S: torch.Tensor, row0: int, col0: int, rows: torch.Tensor | None = None) -> None:
        values, columns = _top_candidates(S, self.k, col0)
        if rows is None:
            rows = torch.arange(row0, row0 + S.shape[0], device=S.device)
        rows = rows.repeat_interleave(values.shape[1])
        _merge_candidates(self.values, self.indices, rows, values.reshape(-1), columns.reshape(-1))


#: Scores per chunk reduced to their maximum before the entries of a block are compared with the thresholds.
#: Smaller chunks gather fewer scores around each entry that reaches a threshold, larger ones make fewer
#: maxima; CPU time of the row and column searches of one 16,384 x 768 float32 set: 0.44 s with 32,
#: 0.52 s with 64, 0.54 s with 16, 0.73 s with 128.
CHUNK = 32


def _entries_reaching(
    S: torch.Tensor, threshold: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(i, j, S[i, j])`` for the entries with ``S[i, j] >= threshold[i]``; ``None`` when there are many.

    ``S`` may be a transposed view. Its rows are cut into chunks of :data:`CHUNK` scores along the
    contiguous dimension, each chunk is reduced to its maximum (one pass over ``S``), and only the chunks
    whose maximum reaches the row's threshold are gathered and compared: once the thresholds are good,
    a few per row. More than ``k`` such chunks per row on average returns ``None`` (a top-k is cheaper).
    """
    h, w = S.shape
    transposed = S.stride(0) == 1 and S.stride(1) != 1
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    m = w // CHUNK * CHUNK
    if m:
        main = S[:, :m]
        if transposed:  # chunks of CHUNK rows of the underlying row-major block, reduced across them
            peaks = main.T.reshape(m // CHUNK, CHUNK, h).amax(1).T
        else:
            peaks = main.reshape(h, m // CHUNK, CHUNK).amax(2)
        ci, cj = (peaks >= threshold[:, None]).nonzero(as_tuple=True)
        if ci.numel() > k * h:
            return None
        cols = cj[:, None] * CHUNK + torch.arange(CHUNK, device=S.device)
        values = S[ci[:, None], cols]
        ii, jj = (values >= threshold[ci, None]).nonzero(as_tuple=True)
        parts.append((ci[ii], cols[ii, jj], values[ii, jj]))
    if m < w:
        tail = S[:, m:]
        ti, tj = (tail >= threshold[:, None]).nonzero(as_tuple=True)
        parts.append((ti, tj + m, tail[ti, tj]))
    if len(parts) == 1:
        return parts[0]
    return (
        torch.cat([p[0] for p in parts]),
        torch.cat([p[1] for p in parts]),
        torch.cat([p[2] for p in parts]),
    )


def _score_product(U: torch.Tensor) -> Any:
    """``(a, c, out) -> U[a] @ U[c]^T`` into ``out``: on the CPU in the library of
    :func:`~latentalign.functional.cpu_blas.cpu_products`, elsewhere in torch."""
    if U.device.type == "cpu" and cpu_products() == "numpy":
        u = U.numpy()

        def numpy_product(a: slice, c: slice, out: torch.Tensor) -> None:
            np.matmul(u[a], u[c].T, out=out.numpy())  # a block against itself: numpy calls syrk

        return numpy_product

    def torch_product(a: slice, c: slice, out: torch.Tensor) -> None:
        torch.mm(U[a], U[c].T, out=out)

    return torch_product


def self_knn_cosine(
    X: torch.Tensor, k: int, block_rows: int | None = None, name: str = "X"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact cosine k-nearest neighbours of every row of ``X`` among the other rows.

    The similarity matrix of unit rows is symmetric, so each off-diagonal block ``U_I U_J^T`` is computed
    once (half the GEMM flops of searching ``X`` against itself) and read twice: by its rows for the
    rows of ``I`` and by its columns for the rows of ``J``. The diagonal blocks come first; from then on
    each row keeps its ``k`` best scores so far, and a block is searched only where it reaches them (see
    ``_SelfSearch``), so the search costs little more than the GEMM. The row itself is excluded; among equal similarities the
    lower row index comes first (the order of a stable sort), whatever the blocks.

    Parameters
    ----------
    X : torch.Tensor of shape (n, d)
        Validated, finite rows, none of them zero; ``1 <= k <= n - 1``.
    k : int
    block_rows : int, optional
        Rows per block (default :data:`KNN_BLOCK_ROWS`); memory is about two ``block_rows^2`` score blocks.
    name : str
        Name of ``X`` in the error raised for an all-zero row.

    Returns
    -------
    values : torch.Tensor of shape (n, k)
        Cosine similarities in decreasing order, in ``X``'s dtype.
    indices : torch.Tensor of shape (n, k)
        int64 row indices.

    Examples
    --------
    >>> import torch
    >>> X = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    >>> self_knn_cosine(X, 2)[1].tolist()
    [[1, 3], [0, 3], [3, 0], [0, 1]]
    """
    n = X.shape[0]
    b = max(1, min(block_rows or KNN_BLOCK_ROWS, n))
    numpy_products = X.device.type == "cpu" and cpu_products() == "numpy"
    hold_torch_threads = torch_threads_beside_blas(X.device) if numpy_products else nullcontext()
    with torch.no_grad(), hold_torch_threads:
        U = _unit_rows(X, name, b)
        product = _score_product(U)
        search = _SelfSearch(n, k, X.dtype, X.device)
        scores = torch.empty(b * b, dtype=X.dtype, device=X.device)
        starts = range(0, n, b)

        def block(a: int, c: int) -> torch.Tensor:
            h, w = min(b, n - a), min(b, n - c)
            S = scores[: h * w].view(h, w)
            product(slice(a, a + h), slice(c, c + w), S)
            return S

        # The diagonal blocks first: every row then holds k candidates (with b > k) and a threshold.
        for a in starts:
            S = block(a, a)
            S.fill_diagonal_(-math.inf)
            search.add_diagonal(S, a)
        for a in starts:
            for c in starts[a // b + 1 :]:
                S = block(a, c)
                search.add_rows(S, a, c)
                search.add_columns(S, a, c)
    return search.values, search.indices


def _neighbours(
    X: torch.Tensor, k: int, metric: str, chunk_size: int | None, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if metric == "cosine":
        # chunk_size rows against all n: the memory of square blocks of two sides b with 2 b^2 = chunk_size n
        block = None if chunk_size is None else max(1, math.isqrt(chunk_size * X.shape[0] // 2))
        return self_knn_cosine(X, k, block, name)
    return knn_tensors(X, X, k, metric, "exact", chunk_size, exclude_self=True, names=(name, name))


def _shared_neighbours(ia: torch.Tensor, ib: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(r, p, q)`` with ``ia[r, p] == ib[r, q]``: the neighbours row ``r`` has in both lists, by row and ``p``.

    Each row of ``ib`` is sorted once and every entry of ``ia`` is looked up by binary search.
    """
    k = ib.shape[1]
    sorted_b, order = torch.sort(ib, dim=1)
    pos = torch.searchsorted(sorted_b, ia).clamp_(max=k - 1)
    found = sorted_b.gather(1, pos) == ia
    r, p = found.nonzero(as_tuple=True)
    return r, p, order[r, pos[r, p]]


def mutual_knn(
    X: ArrayLike, Y: ArrayLike, *, k: int = 10, metric: str = "cosine", chunk_size: int | None = None
) -> float:
    """Mutual k-nearest-neighbour alignment (Huh et al., 2024, "The Platonic Representation Hypothesis").

    For every row ``i``, ``kNN_X(i)`` is the set of the ``k`` rows nearest to ``X[i]`` in ``X`` (itself
    excluded; among equally near rows the lower index first), likewise ``kNN_Y(i)``; the score is the mean
    over rows of ``|kNN_X(i) & kNN_Y(i)| / k``.
    With ``metric="cosine"`` this is their ``mutual_knn`` on L2-normalised features (``k = 10``).

    Parameters
    ----------
    X, Y : arrays of shape (n, d1) and (n, d2), rows paired
    k : int
        Neighbourhood size, ``1 <= k <= n - 1``.
    metric : {"cosine", "l2", "dot"}
    chunk_size : int, optional
        Bounds the scores held at once to about ``chunk_size x n`` (default: two blocks of 4096^2).

    Raises
    ------
    ValueError
        If all rows of ``X`` or of ``Y`` are identical (zero variance, as :func:`linear_cka`), or, for
        ``metric="dot"`` / ``"l2"``, if the scores would overflow the compute dtype.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((40, 5))
    >>> mutual_knn(X, 2 * X, k=5)
    1.0
    """
    check_choice(metric, "metric", METRICS)
    check_number(chunk_size, "chunk_size", integer=True, low=1, allow_none=True)
    Xt, Yt = _check_xy(X, Y, 2, "mutual_knn")
    k = _check_knn_k(k, Xt.shape[0])
    _check_rows_differ(Xt, Yt, "mutual_knn")
    with torch.no_grad():
        _, ia = _neighbours(Xt, k, metric, chunk_size, "X")
        _, ib = _neighbours(Yt, k, metric, chunk_size, "Y")
    return mutual_knn_from_neighbours(ia, ib)


def mutual_knn_from_neighbours(ia: torch.Tensor, ib: torch.Tensor) -> float:
    """:func:`mutual_knn` from the ``(n, k)`` neighbour indices of each space (e.g. :func:`self_knn_cosine`),
    so that each space's search can be reused across many pairs.

    Examples
    --------
    >>> import torch
    >>> mutual_knn_from_neighbours(torch.tensor([[1, 2], [0, 2]]), torch.tensor([[2, 1], [2, 3]]))
    0.75
    """
    with torch.no_grad():
        shared = _shared_neighbours(ia, ib)[0].numel()
    return shared / (ia.shape[0] * ia.shape[1])


def _sparse_hsic_u(n: int, rows: torch.Tensor, cols: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC of two n x n matrices with zero diagonal that are non-zero only at ``(rows, cols)``."""
    key = rows * n + cols
    key_sorted, order = torch.sort(key)
    b_sorted = b[order]
    transposed = cols * n + rows
    pos = torch.searchsorted(key_sorted, transposed).clamp(max=key_sorted.numel() - 1)
    found = key_sorted[pos] == transposed
    trace = (a * torch.where(found, b_sorted[pos], torch.zeros_like(a))).sum()  # sum_ij A_ij B_ji
    col_a = torch.zeros(n, dtype=a.dtype, device=a.device).index_add_(0, cols, a)
    row_b = torch.zeros(n, dtype=b.dtype, device=b.device).index_add_(0, rows, b)
    cross = col_a @ row_b  # 1^T A B 1
    return (trace + a.sum() * b.sum() / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))


def cknna(X: ArrayLike, Y: ArrayLike, *, k: int = 10, chunk_size: int | None = None) -> float:
    """CKNNA: centered kernel nearest-neighbour alignment (Huh et al., 2024).

    With cosine kernels ``K_ij = cos(X_i, X_j)`` and ``L_ij = cos(Y_i, Y_j)`` and the mask ``M_ij = 1`` when
    ``j`` is among the ``k`` nearest neighbours of ``i`` (itself excluded) in BOTH spaces,
    ``CKNNA = HSIC_u(M*K, M*L) / sqrt(HSIC_u(M_X*K, M_X*K) HSIC_u(M_Y*L, M_Y*L))`` where ``M_X`` / ``M_Y``
    are the kNN masks of each space alone and ``HSIC_u`` is the unbiased estimator of :func:`unbiased_cka`
    (their ``cknna`` with ``unbiased=True``, ``topk=k``). Only the ``n k`` kNN entries are stored. With
    ``k = n - 1`` it equals :func:`unbiased_cka` of the row-normalised embeddings.

    Parameters
    ----------
    X, Y : arrays of shape (n, d1) and (n, d2), rows paired, ``n >= 4``
    k : int
        Neighbourhood size, ``2 <= k <= n - 1`` (their code rejects ``k < 2``).
    chunk_size : int, optional
        Bounds the scores held at once in the k-NN searches to about ``chunk_size x n``.

    Raises
    ------
    ValueError
        If all rows of ``X`` or of ``Y`` are identical (zero variance, as :func:`linear_cka`).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((60, 6))
    >>> round(cknna(X, 3 * X, k=5), 6)
    1.0
    """
    check_number(chunk_size, "chunk_size", integer=True, low=1, allow_none=True)
    Xt, Yt = _check_xy(X, Y, 4, "CKNNA (unbiased HSIC)")
    n = Xt.shape[0]
    k = _check_knn_k(k, n, low=2)
    _check_rows_differ(Xt, Yt, "CKNNA")
    with torch.no_grad():
        va, ia = _neighbours(Xt, k, "cosine", chunk_size, "X")
        vb, ib = _neighbours(Yt, k, "cosine", chunk_size, "Y")
    return cknna_from_neighbours(va, ia, vb, ib)


def cknna_from_neighbours(va: torch.Tensor, ia: torch.Tensor, vb: torch.Tensor, ib: torch.Tensor) -> float:
    """:func:`cknna` from each space's ``(n, k)`` cosine neighbour similarities and indices (as
    :func:`self_knn_cosine` returns them), so that each space's search can be reused across many pairs.

    Examples
    --------
    >>> import torch
    >>> X = torch.randn(30, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> v, i = self_knn_cosine(X, 5)
    >>> round(cknna_from_neighbours(v, i, v, i), 6)
    1.0
    """
    n, k = ia.shape
    with torch.no_grad():
        va, vb = va.to(torch.float64), vb.to(torch.float64)
        rows = torch.arange(n, device=ia.device)[:, None].expand(n, k)
        kk = _sparse_hsic_u(n, rows.reshape(-1), ia.reshape(-1), va.reshape(-1), va.reshape(-1))
        ll = _sparse_hsic_u(n, rows.reshape(-1), ib.reshape(-1), vb.reshape(-1), vb.reshape(-1))
        _check_positive_hsic(kk, ll, "CKNNA")
        r, p, q = _shared_neighbours(ia, ib)  # row, slot in kNN_X, slot in kNN_Y
        if r.numel() == 0:
            return 0.0
        kl = _sparse_hsic_u(n, r, ia[r, p], va[r, p], vb[r, q])
    return float(kl / torch.sqrt(kk * ll))


def similarity_scores(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    metrics: Sequence[str] = SIMILARITY_METRICS,
    k: int = 10,
    variance: float = 0.99,
    procrustes: str = "angular",
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Several similarity measures at once (the second moments are computed once).

    Parameters
    ----------
    X, Y : arrays of shape (n, d1) and (n, d2), rows paired
    metrics : sequence of str
        Any of ``SIMILARITY_METRICS``; the keys of the result.
    k : int
        Neighbourhood size of ``mutual_knn`` and ``cknna``.
    variance : float
        Fraction of variance kept by ``svcca``.
    procrustes : {"angular", "euclidean"}
        ``kind`` of ``procrustes_distance``.
    chunk_size : int, optional
        Bounds the scores held at once in the k-NN searches to about ``chunk_size x n``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((40, 4))
    >>> {name: round(v, 6) for name, v in similarity_scores(X, X, metrics=("linear_cka", "mutual_knn")).items()}
    {'linear_cka': 1.0, 'mutual_knn': 1.0}
    """
    metrics = check_metrics(metrics)
    variance = check_variance_fraction(variance)
    check_choice(procrustes, "procrustes", PROCRUSTES_KINDS)
    min_rows = 4 if {"unbiased_cka", "cknna"} & set(metrics) else 2
    knn_wanted = bool(set(KNN_METRICS) & set(metrics))  # the moment measures find non-finite values themselves
    Xt, Yt = _check_xy(X, Y, min_rows, ", ".join(metrics), ensure_finite=knn_wanted)
    out: dict[str, float] = {}
    if set(MOMENT_METRICS) & set(metrics):
        out.update(scores_from_stats(moment_stats(Xt, Yt, metrics), metrics, variance, procrustes))
    if "mutual_knn" in metrics:
        out["mutual_knn"] = mutual_knn(Xt, Yt, k=k, chunk_size=chunk_size)
    if "cknna" in metrics:
        out["cknna"] = cknna(Xt, Yt, k=k, chunk_size=chunk_size)
    return {name: out[name] for name in metrics}


def check_metrics(metrics: Any) -> tuple[str, ...]:
    """Validate a metric name or a sequence of names from ``SIMILARITY_METRICS``; return them without repeats.

    Examples
    --------
    >>> check_metrics(["svcca", "linear_cka", "svcca"])
    ('svcca', 'linear_cka')
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError(f"metrics is empty; choose some of {list(SIMILARITY_METRICS)}.")
    for name in metrics:
        check_choice(name, "metrics entry", SIMILARITY_METRICS)
    return tuple(dict.fromkeys(metrics))


def scores_from_stats(stats: CrossStats, metrics: Sequence[str], variance: float, procrustes: str) -> dict[str, float]:
    """The moment-based measures named in ``metrics``, from statistics holding what they read (:func:`moment_flags`)."""
    out: dict[str, float] = {}
    if "linear_cka" in metrics:
        out["linear_cka"] = cka_from_stats(stats)
    if "unbiased_cka" in metrics:
        out["unbiased_cka"] = unbiased_cka_from_stats(stats)
    if "svcca" in metrics:
        out["svcca"] = svcca_from_stats(stats, variance)
    if "procrustes_distance" in metrics:
        out["procrustes_distance"] = procrustes_from_stats(stats, procrustes)
    return out
