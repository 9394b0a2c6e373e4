"""Anchor selection and anchor checks.

Relative projection and every paired aligner rest on a set of *anchors*: rows embedded by both models.
:func:`select_anchors` picks them from a pool of rows, and :func:`check_anchors` reports what makes a set
of anchors degenerate (exact duplicates, too few rows for the dimension, a numerical rank below it).

Every function accepts numpy arrays and torch tensors (any device) and is deterministic for a given
``seed``; selected rows are returned as a numpy ``int64`` array of row indices into ``X``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from latentalign._validation import check_array, check_choice, check_number
from latentalign.exceptions import IllConditionedWarning

__all__ = ["select_anchors", "check_anchors", "distinct_rows", "AnchorReport", "ANCHOR_METHODS"]

#: Methods accepted by :func:`select_anchors`.
ANCHOR_METHODS: tuple[str, ...] = ("uniform", "fps", "kmeans", "stratified")

_PARALLEL_TOL = 1e-6
_CHUNK = 4096


# -- selection --------------------------------------------------------------------------------------
def select_anchors(
    X: Any,
    n: int,
    *,
    method: str = "uniform",
    labels: Any = None,
    seed: int = 0,
    metric: str = "euclidean",
) -> np.ndarray:
    """Choose ``n`` distinct rows of ``X`` to serve as anchors.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        The pool of candidate rows (numpy array or torch tensor, any device).
    n : int
        Number of anchors, ``1 <= n <= n_samples``.
    method : {"uniform", "fps", "kmeans", "stratified"}, default="uniform"
        * ``"uniform"``: ``n`` rows drawn uniformly without replacement.
        * ``"fps"``: farthest-point sampling. Starts from one seeded random row, then repeatedly adds the
          row farthest (under ``metric``) from all rows chosen so far. Cost ``O(n * n_samples * d)``.
          Raises when ``X`` has fewer than ``n`` distinct rows (distinct directions for cosine).
        * ``"kmeans"``: scikit-learn ``KMeans(n_clusters=n, n_init=1, random_state=seed)``, then for each
          centroid the nearest real row; centroids are served in order of their nearest distance and a
          row already taken goes to the next-nearest free row, so the ``n`` indices are unique. With
          ``metric="cosine"`` the clustering and the matching run on L2-normalised rows.
        * ``"stratified"``: balanced over the classes in ``labels``: each class gets ``n // n_classes``
          rows, the remainder goes to randomly chosen classes (seeded), classes too small to fill their
          share give the rest to the others; with ``n < n_classes``, ``n`` randomly chosen classes get
          one row each (as many classes as possible). Rows inside a class are drawn uniformly.
    labels : array of shape (n_samples,), optional
        Class labels; required by ``"stratified"`` and rejected by the other methods.
    seed : int, default=0
        Seed of every random choice; the same seed gives the same indices.
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance used by ``"fps"`` and ``"kmeans"``.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        Row indices into ``X``, all distinct, in selection order (``"fps"``: the order points were added;
        ``"stratified"``: grouped by class in sorted class order).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(100, 5))
    >>> idx = select_anchors(X, 10, method="fps", seed=1)
    >>> idx.dtype, len(set(idx.tolist())), bool((idx == select_anchors(X, 10, method="fps", seed=1)).all())
    (dtype('int64'), 10, True)
    """
    Xt, _ = check_array(X, "X")
    N = Xt.shape[0]
    check_number(n, "n", integer=True, low=1)
    if n > N:
        raise ValueError(f"Cannot select n={n} anchors from X with {N} rows; use n <= {N}.")
    check_choice(method, "method", ANCHOR_METHODS)
    check_choice(metric, "metric", ("euclidean", "cosine"))
    check_number(seed, "seed", integer=True, low=0)
    if method != "stratified" and labels is not None:
        raise ValueError(
            f"labels are only used by method='stratified', but method={method!r}; drop labels or use "
            "method='stratified'."
        )
    rng = np.random.default_rng(int(seed))
    idx: np.ndarray | list[int]
    if method == "uniform":
        idx = rng.choice(N, size=int(n), replace=False)
    elif method == "fps":
        idx = _farthest_point(Xt, int(n), metric, rng)
    elif method == "kmeans":
        idx = _kmeans(Xt, int(n), metric, int(seed))
    else:
        idx = _stratified(labels, N, int(n), rng)
    return np.asarray(idx, dtype=np.int64)


def _compute(Xt: torch.Tensor) -> torch.Tensor:
    return Xt if Xt.dtype in (torch.float32, torch.float64) else Xt.to(torch.float32)


def _farthest_point(Xt: torch.Tensor, n: int, metric: str, rng: np.random.Generator) -> list[int]:
    X = _compute(Xt)
    N = X.shape[0]
    eps = torch.finfo(X.dtype).eps
    norms = torch.linalg.vector_norm(X, dim=1)
    if metric == "cosine":
        zero = torch.nonzero(norms == 0).flatten().tolist()
        if zero:
            raise ValueError(
                f"X rows {zero[:10]}{' ...' if len(zero) > 10 else ''} have zero norm; cosine distances to "
                "them are undefined. Remove them or use metric='euclidean'."
            )
    sq = norms.square()
    min_dist = torch.full((N,), float("inf"), dtype=X.dtype, device=X.device)
    chosen: list[int] = []
    current = int(rng.integers(N))
    for step in range(n):
        if step > 0:
            current = int(torch.argmax(min_dist))
            if float(min_dist[current]) <= 0.0:
                raise ValueError(
                    f"X has only {step} distinct rows{' (directions)' if metric == 'cosine' else ''} under "
                    f"metric={metric!r}, so fps cannot select {n} distinct anchors; use n <= {step} or "
                    "deduplicate X."
                )
        chosen.append(current)
        dots = X @ X[current]
        if metric == "euclidean":
            dist = (sq + sq[current] - 2.0 * dots).clamp_min_(0.0)
            # The dot-product form leaves ~eps * (|x|^2 + |c|^2) of rounding: treat that as equal rows.
            dist[dist <= 8 * eps * (sq + sq[current])] = 0.0
        else:
            dist = 1.0 - dots / (norms * norms[current])
            dist[dist <= 8 * eps] = 0.0
        torch.minimum(min_dist, dist, out=min_dist)
        min_dist[current] = -1.0  # never chosen again
    return chosen


def _kmeans(Xt: torch.Tensor, n: int, metric: str, seed: int) -> list[int]:
    from sklearn.cluster import KMeans

    X = _compute(Xt)
    if metric == "cosine":
        norms = torch.linalg.vector_norm(X, dim=1, keepdim=True)
        if bool((norms == 0).any()):
            zero = torch.nonzero(norms.flatten() == 0).flatten().tolist()
            raise ValueError(
                f"X rows {zero[:10]} have zero norm; metric='cosine' needs nonzero rows. Remove them or "
                "use metric='euclidean'."
            )
        X = X / norms
    data = X.detach().cpu().numpy()
    with warnings.catch_warnings():
        # Fewer distinct points than clusters is reported by the matching below, not by a sklearn warning.
        warnings.filterwarnings("ignore", message="Number of distinct clusters")
        km = KMeans(n_clusters=n, n_init=1, random_state=seed).fit(data)
    centers = torch.as_tensor(km.cluster_centers_, dtype=X.dtype, device=X.device)
    return _match_unique(X, centers)


def _sq_dist(C: torch.Tensor, X: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    """Squared distances (len(C), len(X)) in the dot-product form."""
    c_sq = torch.linalg.vector_norm(C, dim=1).square()
    return (c_sq[:, None] + x_sq[None, :] - 2.0 * (C @ X.T)).clamp_min_(0.0)


def _match_unique(X: torch.Tensor, centers: torch.Tensor, m: int = 16) -> list[int]:
    """Nearest distinct row of X for every centroid (greedy in order of nearest distance)."""
    N, n = X.shape[0], centers.shape[0]
    m = min(m, N)
    x_sq = torch.linalg.vector_norm(X, dim=1).square()
    best_d = torch.full((n, 0), float("inf"), dtype=X.dtype, device=X.device)
    best_i = torch.zeros((n, 0), dtype=torch.int64, device=X.device)
    for start in range(0, N, _CHUNK):
        stop = min(N, start + _CHUNK)
        d = _sq_dist(centers, X[start:stop], x_sq[start:stop])
        cand_d = torch.cat([best_d, d], dim=1)
        cand_i = torch.cat([best_i, torch.arange(start, stop, device=X.device).expand(n, -1)], dim=1)
        keep = min(m, cand_d.shape[1])
        # stable sort: ties go to the smaller row index
        order = torch.sort(cand_d, dim=1, stable=True).indices[:, :keep]
        best_d, best_i = cand_d.gather(1, order), cand_i.gather(1, order)
    best_d, best_i = best_d.cpu(), best_i.cpu()
    taken: set[int] = set()
    result = [0] * n
    for c in sorted(range(n), key=lambda c: (float(best_d[c, 0]), c)):
        free = [int(i) for i in best_i[c] if int(i) not in taken]
        if free:
            pick = free[0]
        else:  # all m nearest rows taken: search all rows for this centroid
            d = _sq_dist(centers[c : c + 1], X, x_sq)[0]
            d[torch.as_tensor(sorted(taken), device=X.device)] = float("inf")
            pick = int(torch.argmin(d))
        taken.add(pick)
        result[c] = pick
    return result


def _stratified(labels: Any, N: int, n: int, rng: np.random.Generator) -> list[int]:
    if labels is None:
        raise ValueError("method='stratified' needs labels: pass labels=<array of one class per row of X>.")
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != N:
        raise ValueError(f"labels must be a 1-D array with one label per row of X ({N}), got shape {y.shape}.")
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    C = len(classes)
    quota = np.zeros(C, dtype=np.int64)
    if n < C:
        quota[rng.choice(C, size=n, replace=False)] = 1
    else:
        remaining = n
        while remaining > 0:
            open_ = np.flatnonzero(counts > quota)
            share = remaining // len(open_)
            if share == 0:
                quota[rng.choice(open_, size=remaining, replace=False)] += 1
                break
            add = np.minimum(share, counts[open_] - quota[open_])
            quota[open_] += add
            remaining -= int(add.sum())
    picked: list[int] = []
    for c in range(C):
        if quota[c]:
            members = np.flatnonzero(inverse == c)
            picked.extend(rng.choice(members, size=int(quota[c]), replace=False).tolist())
    return picked


# -- checks -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnchorReport:
    """What :func:`check_anchors` found.

    Attributes
    ----------
    n_anchors, n_features : int
        Shape of the anchor matrix.
    rank : int
        Numerical rank (singular values above ``s_max * max(n_anchors, n_features) * eps`` of the input's
        floating type, NumPy's ``matrix_rank`` rule).
    condition_number : float
        ``s_max / s_min`` over the ``min(n_anchors, n_features)`` singular values (``inf`` when rank-deficient).
    parallel_pairs : tuple of (int, int)
        With ``metric="cosine"``: pairs of distinct rows pointing in the same direction (cosine
        ``> 1 - 1e-6``); they give identical cosine relative coordinates.
    """

    n_anchors: int
    n_features: int
    rank: int
    condition_number: float
    parallel_pairs: tuple[tuple[int, int], ...] = ()

    @property
    def full_rank(self) -> bool:
        """Whether the anchors span all ``n_features`` dimensions."""
        return self.rank >= self.n_features


def check_anchors(
    A: Any,
    *,
    min_count: int | None = None,
    metric: str | None = None,
    name: str = "anchors",
    warn: bool = True,
) -> AnchorReport:
    """Check a set of anchors for duplicates, rank and count versus dimension.

    Parameters
    ----------
    A : array of shape (n_anchors, n_features)
        Anchor embeddings (numpy array or torch tensor).
    min_count : int, optional
        Smallest acceptable number of anchors; fewer raise ``ValueError``.
    metric : {"cosine", "euclidean"}, optional
        With ``"cosine"``, zero-norm rows raise and rows pointing in the same direction warn.
    name : str, default="anchors"
        Name used in messages.
    warn : bool, default=True
        Emit the :class:`~latentalign.exceptions.IllConditionedWarning` for ``rank < n_features`` or
        ``n_anchors < n_features`` (and parallel rows); with ``False`` only the report says so.

    Returns
    -------
    AnchorReport

    Raises
    ------
    ValueError
        Exactly duplicated rows (their indices are listed), fewer than ``min_count`` rows, or zero-norm
        rows with ``metric="cosine"``.

    Examples
    --------
    >>> import numpy as np
    >>> report = check_anchors(np.random.default_rng(0).normal(size=(20, 4)))
    >>> report.rank, report.full_rank
    (4, True)
    """
    t, _ = check_array(A, name)
    k, d = t.shape
    check_number(min_count, "min_count", integer=True, low=1, allow_none=True)
    if metric is not None:
        check_choice(metric, "metric", ("cosine", "euclidean"))
    if min_count is not None and k < min_count:
        raise ValueError(f"{name} has {k} rows, but at least {min_count} anchors are required; select more.")
    data = t.detach().cpu()
    groups = _duplicate_groups(data.numpy() if data.dtype in (torch.float32, torch.float64) else data.double().numpy())
    if groups:
        shown = "; ".join(str(list(g)) for g in groups[:5])
        raise ValueError(
            f"{name} has exactly duplicated rows (row indices that repeat each other: {shown}"
            f"{' ...' if len(groups) > 5 else ''}). Duplicate anchors add no information and make the "
            "relative coordinates degenerate; keep one row of each group."
        )
    work = data.to(torch.float64)
    parallel: list[tuple[int, int]] = []
    if metric == "cosine":
        norms = torch.linalg.vector_norm(work, dim=1)
        zero = torch.nonzero(norms == 0).flatten().tolist()
        if zero:
            raise ValueError(
                f"{name} rows {zero[:10]}{' ...' if len(zero) > 10 else ''} have zero norm; their cosine "
                "similarity is undefined. Remove them."
            )
        parallel = _parallel_pairs(work / norms[:, None])
    s = torch.linalg.svdvals(work)
    eps = torch.finfo(t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32).eps
    tol = float(s.max()) * max(k, d) * eps if s.numel() else 0.0
    rank = int((s > tol).sum())
    cond = float(s.max() / s.min()) if rank == min(k, d) and float(s.min()) > 0 else float("inf")
    report = AnchorReport(k, d, rank, cond, tuple(parallel))
    if warn:
        if k < d or rank < d:
            warnings.warn(
                f"{name}: {k} anchors of dimension {d} with numerical rank {rank}"
                f"{' (fewer anchors than dimensions)' if k < d else ''}: they span only {rank} of {d} "
                f"dimensions, so maps fitted on them are under-determined (condition number {cond:.3g}). "
                f"Use at least {d} anchors in general position.",
                IllConditionedWarning,
                stacklevel=2,
            )
        if parallel:
            warnings.warn(
                f"{name}: {len(parallel)} pair(s) of rows point in the same direction (e.g. rows "
                f"{list(parallel[0])}); they give identical cosine relative coordinates. Keep one of each.",
                IllConditionedWarning,
                stacklevel=2,
            )
    return report


def distinct_rows(*matrices: Any) -> np.ndarray:
    """Indices (sorted) of the rows that are the first of their value in every one of ``matrices``.

    Repeated rows are degenerate anchors and ambiguous retrieval keys: two distinct captions can embed
    identically, two files can hold the same picture. Values compare as numbers, so ``-0.0 == 0.0``.

    Parameters
    ----------
    *matrices : array-like of shape (n_samples, n_features_i)
        One or more arrays (numpy or torch) with the same number of rows; a row is kept only when it
        repeats no earlier row in any of them.

    Returns
    -------
    numpy.ndarray of int64
        Row indices, ascending.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1.0, 0.0], [1.0, -0.0], [2.0, 0.0]])
    >>> B = np.array([[5.0], [6.0], [5.0]])
    >>> distinct_rows(A).tolist(), distinct_rows(A, B).tolist()
    ([0, 2], [0])
    """
    if not matrices:
        raise TypeError("distinct_rows needs at least one matrix.")
    arrays = [m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m) for m in matrices]
    n = len(arrays[0])
    for i, arr in enumerate(arrays):
        if arr.ndim != 2 or len(arr) != n:
            raise ValueError(f"matrices[{i}] must be 2-D with {n} rows like matrices[0], got shape {arr.shape}.")
    keep = np.ones(n, dtype=bool)
    for arr in arrays:
        first = np.zeros(n, dtype=bool)
        first[np.unique(_row_keys(arr), return_index=True)[1]] = True
        keep &= first
    return np.flatnonzero(keep).astype(np.int64)


def _row_keys(arr: np.ndarray) -> np.ndarray:
    """One opaque value per row, equal exactly when the rows' values are equal.

    Comparing rows as single byte strings is ~10x faster than ``np.unique(axis=0)``, which sorts
    column by column; ``+ 0.0`` first turns -0.0 into 0.0 so that equal numbers have equal bytes.
    """
    rows = np.ascontiguousarray(arr + 0.0 if arr.dtype.kind in "fc" else arr)
    if rows.shape[1] == 0:
        return np.zeros(len(rows), dtype=np.int8)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)


def _duplicate_groups(A: np.ndarray) -> list[tuple[int, ...]]:
    A = A + 0.0  # -0.0 -> 0.0, so that equal values compare equal
    _, inverse, counts = np.unique(A, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    groups = []
    for u in np.flatnonzero(counts > 1):
        groups.append(tuple(int(i) for i in np.flatnonzero(inverse == u)))
    return sorted(groups)


def _parallel_pairs(U: torch.Tensor) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    for start in range(0, U.shape[0], _CHUNK):
        G = U[start : start + _CHUNK] @ U.T
        rows, cols = torch.nonzero(G > 1.0 - _PARALLEL_TOL, as_tuple=True)
        for r, c in zip((rows + start).tolist(), cols.tolist()):
            if r < c:
                pairs.append((r, c))
    return pairs
