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
``linear_cka``, ``unbiased_cka``, ``svcca`` and ``procrustes_distance`` are computed from second moments
(``X^T X``, ``Y^T Y``, ``X^T Y`` and a few vectors) accumulated over row chunks in float64: time
``O(n (d1 + d2)^2)``, memory ``O((d1 + d2)^2)``, never an ``n x n`` Gram matrix. The unbiased HSIC is
rewritten exactly in that form (for the linear kernel every sum over the Gram matrix is a sum over
features). Because all four are invariant to translating ``X`` or ``Y``, rows are shifted by the column
means first, which keeps float64 accurate. ``mutual_knn`` and ``cknna`` run two chunked exact k-NN
searches (``O(n^2 d)`` time, ``O(n k)`` memory); CKNNA's HSIC is evaluated on the ``n k`` kNN entries only.

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
from dataclasses import dataclass, fields
from typing import Any

import torch

from latentalign._array import ArrayLike
from latentalign._validation import check_choice, check_number, check_pair
from latentalign.functional.retrieval import METRICS, knn_tensors

__all__ = [
    "linear_cka",
    "unbiased_cka",
    "mutual_knn",
    "cknna",
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
MOMENT_CHUNK_ROWS = 8192


def _check_xy(X: Any, Y: Any, min_rows: int, purpose: str) -> tuple[torch.Tensor, torch.Tensor]:
    Xt, Yt, _ = check_pair(X, Y, min_rows=min_rows, purpose=purpose)
    return Xt, Yt


# --------------------------------------------------------------------------------------------------------
# Second moments (additive over row chunks, so the streaming evaluator uses the same code)
# --------------------------------------------------------------------------------------------------------
@dataclass
class Moments:
    """Sums over rows of the shifted data ``x = X - shift_x``, ``y = Y - shift_y`` (float64).

    ``a_i = ||x_i||^2`` and ``b_i = ||y_i||^2``. Two ``Moments`` of the same shifts add up (``+``).
    """

    n: int
    sx: torch.Tensor
    sy: torch.Tensor
    cxx: torch.Tensor
    cyy: torch.Tensor
    cxy: torch.Tensor
    sa: torch.Tensor
    sb: torch.Tensor
    saa: torch.Tensor
    sbb: torch.Tensor
    sab: torch.Tensor
    sxa: torch.Tensor
    sxb: torch.Tensor
    sya: torch.Tensor
    syb: torch.Tensor

    def __add__(self, other: Moments) -> Moments:
        values = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        return Moments(**values)


def compute_moments(
    X: torch.Tensor, Y: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor, chunk_rows: int = MOMENT_CHUNK_ROWS
) -> Moments:
    """Accumulate :class:`Moments` of ``X - shift_x`` and ``Y - shift_y`` over row chunks, in float64."""
    f64 = torch.float64
    d1, d2 = X.shape[1], Y.shape[1]
    dev = X.device
    z = lambda *shape: torch.zeros(*shape, dtype=f64, device=dev)  # noqa: E731
    m = Moments(X.shape[0], z(d1), z(d2), z(d1, d1), z(d2, d2), z(d1, d2), z(()), z(()), z(()), z(()), z(()),
                z(d1), z(d1), z(d2), z(d2))
    shift_x, shift_y = shift_x.to(device=dev, dtype=f64), shift_y.to(device=dev, dtype=f64)
    with torch.no_grad():
        for start in range(0, X.shape[0], chunk_rows):
            x = X[start : start + chunk_rows].to(f64) - shift_x
            y = Y[start : start + chunk_rows].to(f64) - shift_y
            a, b = (x * x).sum(1), (y * y).sum(1)
            m.sx += x.sum(0)
            m.sy += y.sum(0)
            m.cxx += x.T @ x
            m.cyy += y.T @ y
            m.cxy += x.T @ y
            m.sa += a.sum()
            m.sb += b.sum()
            m.saa += (a * a).sum()
            m.sbb += (b * b).sum()
            m.sab += (a * b).sum()
            m.sxa += x.T @ a
            m.sxb += x.T @ b
            m.sya += y.T @ a
            m.syb += y.T @ b
    return m


def column_means(X: torch.Tensor, chunk_rows: int = MOMENT_CHUNK_ROWS) -> torch.Tensor:
    """Column means in float64, accumulated over row chunks."""
    total = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device)
    for start in range(0, X.shape[0], chunk_rows):
        total += X[start : start + chunk_rows].to(torch.float64).sum(0)
    return total / X.shape[0]


def _moments_of(X: torch.Tensor, Y: torch.Tensor) -> Moments:
    return compute_moments(X, Y, column_means(X), column_means(Y))


def _centered(m: Moments) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cxx = m.cxx - torch.outer(m.sx, m.sx) / m.n
    cyy = m.cyy - torch.outer(m.sy, m.sy) / m.n
    cxy = m.cxy - torch.outer(m.sx, m.sy) / m.n
    return cxx, cyy, cxy


def _check_variance(cxx: torch.Tensor, cyy: torch.Tensor, what: str) -> None:
    for name, c in (("X", cxx), ("Y", cyy)):
        if float(torch.trace(c)) <= 0:
            raise ValueError(
                f"{name} has zero variance (all rows are identical), so {what} is undefined. Check that the "
                "embeddings were extracted correctly."
            )


def cka_from_moments(m: Moments) -> float:
    """Linear CKA from :class:`Moments`."""
    cxx, cyy, cxy = _centered(m)
    _check_variance(cxx, cyy, "linear CKA")
    num = (cxy * cxy).sum()
    den = torch.linalg.matrix_norm(cxx) * torch.linalg.matrix_norm(cyy)
    return float(num / den)


def _hsic_u(n: int, c: torch.Tensor, sp: torch.Tensor, sq: torch.Tensor, spb: torch.Tensor, sqa: torch.Tensor,
            sab: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC (Song et al. 2012, eq. 5) of linear kernels, from feature-space sums.

    With ``K~ = P P^T - diag``, ``L~ = Q Q^T - diag`` and ``a_i = K_ii``, ``b_i = L_ii``:
    ``tr(K~ L~) = ||P^T Q||_F^2 - sum a b``, ``1^T K~ 1 = ||sum p||^2 - sum a``,
    ``1^T K~ L~ 1 = sp^T (P^T Q) sq - sp . sum(p b) - sq . sum(q a) + sum a b``.
    """
    trace = (c * c).sum() - sab
    k_sum = sp @ sp - sa
    l_sum = sq @ sq - sb
    cross = sp @ c @ sq - sp @ spb - sq @ sqa + sab
    return (trace + k_sum * l_sum / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))


def unbiased_cka_from_moments(m: Moments) -> float:
    """Unbiased linear CKA from :class:`Moments` (needs ``n >= 4``)."""
    n = m.n
    kl = _hsic_u(n, m.cxy, m.sx, m.sy, m.sxb, m.sya, m.sab, m.sa, m.sb)
    kk = _hsic_u(n, m.cxx, m.sx, m.sx, m.sxa, m.sxa, m.saa, m.sa, m.sa)
    ll = _hsic_u(n, m.cyy, m.sy, m.sy, m.syb, m.syb, m.sbb, m.sb, m.sb)
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


def svcca_from_moments(m: Moments, variance: float = 0.99) -> float:
    """SVCCA from :class:`Moments`."""
    cxx, cyy, cxy = _centered(m)
    _check_variance(cxx, cyy, "SVCCA")
    wx, wy = _whitening(cxx, variance), _whitening(cyy, variance)
    rho = torch.linalg.svdvals(wx.T @ cxy @ wy).clamp(0.0, 1.0)
    return float(rho[: min(wx.shape[1], wy.shape[1])].mean())


def procrustes_from_moments(m: Moments, kind: str = "angular") -> float:
    """Procrustes shape distance from :class:`Moments`."""
    cxx, cyy, cxy = _centered(m)
    _check_variance(cxx, cyy, "the Procrustes distance")
    similarity = torch.linalg.svdvals(cxy).sum() / torch.sqrt(torch.trace(cxx) * torch.trace(cyy))
    similarity = float(similarity.clamp(0.0, 1.0))
    if kind == "angular":
        return math.acos(similarity)
    return math.sqrt(max(0.0, 2.0 - 2.0 * similarity))


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
    Xt, Yt = _check_xy(X, Y, 2, "linear CKA")
    return cka_from_moments(_moments_of(Xt, Yt))


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
    Xt, Yt = _check_xy(X, Y, 4, "the unbiased HSIC estimator")
    return unbiased_cka_from_moments(_moments_of(Xt, Yt))


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
    Xt, Yt = _check_xy(X, Y, 2, "SVCCA")
    return svcca_from_moments(_moments_of(Xt, Yt), variance)


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
    Xt, Yt = _check_xy(X, Y, 2, "the Procrustes distance")
    return procrustes_from_moments(_moments_of(Xt, Yt), kind)


def _check_knn_k(k: Any, n: int, low: int = 1) -> int:
    check_number(k, "k", integer=True, low=low)
    if k > n - 1:
        raise ValueError(f"k={k} neighbours (self excluded) were asked for, but X and Y have only {n} rows.")
    return int(k)


def _neighbours(X: torch.Tensor, k: int, metric: str, chunk_size: int | None, name: str):
    return knn_tensors(X, X, k, metric, "exact", chunk_size, exclude_self=True, names=(name, name))


def mutual_knn(
    X: ArrayLike, Y: ArrayLike, *, k: int = 10, metric: str = "cosine", chunk_size: int | None = None
) -> float:
    """Mutual k-nearest-neighbour alignment (Huh et al., 2024, "The Platonic Representation Hypothesis").

    For every row ``i``, ``kNN_X(i)`` is the set of the ``k`` rows nearest to ``X[i]`` in ``X`` (itself
    excluded), likewise ``kNN_Y(i)``; the score is the mean over rows of ``|kNN_X(i) & kNN_Y(i)| / k``.
    With ``metric="cosine"`` this is their ``mutual_knn`` on L2-normalised features (``k = 10``).

    Parameters
    ----------
    X, Y : arrays of shape (n, d1) and (n, d2), rows paired
    k : int
        Neighbourhood size, ``1 <= k <= n - 1``.
    metric : {"cosine", "l2", "dot"}
    chunk_size : int, optional
        Rows scored at once in the k-NN searches.

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
    with torch.no_grad():
        _, ia = _neighbours(Xt, k, metric, chunk_size, "X")
        _, ib = _neighbours(Yt, k, metric, chunk_size, "Y")
        overlap = torch.zeros((), dtype=torch.float64, device=ia.device)
        step = max(1, 2**22 // (k * k))
        for start in range(0, ia.shape[0], step):
            a, b = ia[start : start + step], ib[start : start + step]
            overlap += (a[:, :, None] == b[:, None, :]).sum()
    return float(overlap / (ia.shape[0] * k))


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
        Rows scored at once in the k-NN searches.

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
    with torch.no_grad():
        va, ia = _neighbours(Xt, k, "cosine", chunk_size, "X")
        vb, ib = _neighbours(Yt, k, "cosine", chunk_size, "Y")
        va, vb = va.to(torch.float64), vb.to(torch.float64)
        rows = torch.arange(n, device=ia.device)[:, None].expand(n, k)
        kk = _sparse_hsic_u(n, rows.reshape(-1), ia.reshape(-1), va.reshape(-1), va.reshape(-1))
        ll = _sparse_hsic_u(n, rows.reshape(-1), ib.reshape(-1), vb.reshape(-1), vb.reshape(-1))
        _check_positive_hsic(kk, ll, "CKNNA")
        match = ia[:, :, None] == ib[:, None, :]  # (n, k, k): row, slot in kNN_X, slot in kNN_Y
        r, p, q = match.nonzero(as_tuple=True)
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
        Rows scored at once in the k-NN searches.

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
    Xt, Yt = _check_xy(X, Y, min_rows, ", ".join(metrics))
    out: dict[str, float] = {}
    if set(MOMENT_METRICS) & set(metrics):
        out.update(scores_from_moments(_moments_of(Xt, Yt), metrics, variance, procrustes))
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


def scores_from_moments(m: Moments, metrics: Sequence[str], variance: float, procrustes: str) -> dict[str, float]:
    """The moment-based measures named in ``metrics``."""
    out: dict[str, float] = {}
    if "linear_cka" in metrics:
        out["linear_cka"] = cka_from_moments(m)
    if "unbiased_cka" in metrics:
        out["unbiased_cka"] = unbiased_cka_from_moments(m)
    if "svcca" in metrics:
        out["svcca"] = svcca_from_moments(m, variance)
    if "procrustes_distance" in metrics:
        out["procrustes_distance"] = procrustes_from_moments(m, procrustes)
    return out
