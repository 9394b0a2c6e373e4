"""Latent functional maps: correspondence between two point clouds from the spectra of their kNN graphs.

Functional maps (Ovsjanikov et al., 2012) transfer *functions* between two shapes instead of points: with
orthonormal bases ``Phi_x`` (``n_x x k_x``) and ``Phi_y`` (``n_y x k_y``) of functions on each side, a
function ``f = Phi_x a`` on ``X`` is sent to ``g = Phi_y C a`` on ``Y`` by the ``k_y x k_x`` matrix ``C``.
Fumero et al. ("Latent Functional Maps", NeurIPS 2024) apply this to latent spaces: each space is a kNN
graph, the bases are the first eigenvectors of the graph Laplacians, and ``C`` is estimated from a few
known correspondences (anchors) through functions both spaces can compute (descriptors). This module is
the pure maths, in float64 numpy (a sparse eigensolver is the core); the estimator is
:class:`latentalign.align.functional_map.LatentFunctionalMap`.

Pipeline:

1. :func:`knn_graph` -- symmetric kNN affinity per space (joined into one component, with a warning, when
   it falls apart), :func:`normalized_laplacian` ``L = I - D^-1/2 W D^-1/2``;
2. :func:`laplacian_eigenbasis` -- the ``k`` smallest eigenpairs of ``L`` (ascending, the first ~0);
3. :func:`similarity_descriptors` (cosine similarity to each anchor: the relative representation, which
   two spaces share up to an angle-preserving map) and :func:`heat_descriptors` (each anchor's indicator
   diffused on the graph at several times), standardised by :func:`standardize_columns`;
4. :func:`solve_functional_map` -- least squares ``||C A - B||^2`` plus the Laplacian commutativity
   penalty ``alpha ||C Lambda_x - Lambda_y C||^2`` (optionally projected onto orthonormal matrices);
5. :func:`zoomout` -- spectral upsampling (Melzi et al., 2019): alternate the point-to-point map
   (:func:`pointwise_map`) and the functional map it induces (:func:`map_from_pointwise`) while the basis
   grows, which removes most of the noise of the small initial map.

Conventions: ``C`` maps coefficients on ``X`` to coefficients on ``Y``; the point-to-point map it induces
assigns each row of ``Y`` a row of ``X`` (a function on ``X`` is pulled back along it).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg
import torch

from latentalign._validation import check_choice, check_number
from latentalign.exceptions import ConvergenceWarning, IllConditionedWarning

__all__ = [
    "GRAPH_METRICS",
    "GRAPH_WEIGHTS",
    "knn_graph",
    "normalized_laplacian",
    "laplacian_eigenbasis",
    "similarity_descriptors",
    "heat_descriptors",
    "standardize_columns",
    "solve_functional_map",
    "pointwise_map",
    "map_from_pointwise",
    "zoomout",
]

GRAPH_METRICS = ("cosine", "euclidean")
GRAPH_WEIGHTS = ("heat", "binary")
#: Smallest weight of a kNN edge: keeps every node attached when its neighbours' scales differ wildly.
MIN_WEIGHT = 1e-6
#: Up to this many nodes the eigenbasis comes from a dense symmetric solver (exact, deterministic).
DENSE_EIGEN_MAX = 1000
_ROW_CHUNK = 2048


def _as_float64(X: Any, name: str) -> torch.Tensor:
    t = X.detach() if isinstance(X, torch.Tensor) else torch.from_numpy(np.asarray(X))
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_features), got shape {tuple(t.shape)}.")
    return t.to(device="cpu", dtype=torch.float64)


def _unit_rows(X: torch.Tensor, name: str) -> torch.Tensor:
    norms = torch.linalg.vector_norm(X, dim=1)
    zero = torch.nonzero(norms == 0).reshape(-1)
    if zero.numel():
        raise ValueError(
            f"{name} has {zero.numel()} zero row(s) (first: row {int(zero[0])}); a zero vector has no direction, "
            "so metric='cosine' cannot place it. Remove those rows or use metric='euclidean'."
        )
    return X / norms[:, None]


def _distances(Q: torch.Tensor, K: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":  # chordal distance between unit rows, sqrt(2 - 2 cos)
        return (2.0 - 2.0 * (Q @ K.T)).clamp_min(0.0).sqrt()
    return torch.cdist(Q, K)


def knn_graph(
    X: Any, n_neighbors: int = 10, *, metric: str = "cosine", weights: str = "heat"
) -> scipy.sparse.csr_matrix:
    """Symmetric kNN affinity matrix of the rows of ``X``, joined into one connected component.

    Each row is linked to its ``n_neighbors`` nearest rows (itself excluded); the graph is made symmetric
    by keeping an edge found from either end. ``weights="heat"`` weighs an edge ``exp(-d_ij^2 / (s_i s_j))``
    with the self-tuning scales ``s_i`` = distance of row ``i`` to its ``n_neighbors``-th neighbour
    (Zelnik-Manor and Perona, 2004), floored at :data:`MIN_WEIGHT`; ``"binary"`` weighs every edge 1.

    When the kNN graph has several connected components (separate clusters, too few neighbours), its
    Laplacian has one zero eigenvalue per component and its eigenvectors describe the components, not the
    geometry. The components are then joined: each is linked by its closest pair of rows to the rest,
    until one remains, with an :class:`~latentalign.exceptions.IllConditionedWarning` saying how many
    there were.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        numpy array or torch tensor; computed in float64 on the CPU.
    n_neighbors : int, default 10
        Neighbours per row, ``1 <= n_neighbors < n_samples``.
    metric : {"cosine", "euclidean"}, default "cosine"
        ``"cosine"``: chordal distance between the L2-normalised rows (zero rows are refused).
    weights : {"heat", "binary"}, default "heat"

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_samples, n_samples)
        Symmetric, non-negative, zero diagonal, connected.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((50, 3))
    >>> W = knn_graph(X, 5)
    >>> W.shape, bool(abs(W - W.T).max() == 0), bool((W.sum(1) > 0).all())
    ((50, 50), True, True)
    """
    check_choice(metric, "metric", GRAPH_METRICS)
    check_choice(weights, "weights", GRAPH_WEIGHTS)
    Xt = _as_float64(X, "X")
    n = Xt.shape[0]
    check_number(n_neighbors, "n_neighbors", integer=True, low=1)
    if n_neighbors >= n:
        raise ValueError(
            f"n_neighbors={n_neighbors} must be smaller than the number of rows ({n}): each row needs that "
            f"many other rows as neighbours. Pass n_neighbors <= {n - 1} or more rows."
        )
    points = _unit_rows(Xt, "X") if metric == "cosine" else Xt
    k = int(n_neighbors)
    idx = torch.empty((n, k), dtype=torch.long)
    dist = torch.empty((n, k), dtype=torch.float64)
    for start in range(0, n, _ROW_CHUNK):
        stop = min(start + _ROW_CHUNK, n)
        D = _distances(points[start:stop], points, metric)
        D[torch.arange(stop - start), torch.arange(start, stop)] = float("inf")  # not its own neighbour
        d, i = torch.topk(D, k, dim=1, largest=False)
        idx[start:stop], dist[start:stop] = i, d
    scale = dist[:, -1].clone()
    positive = scale[scale > 0]
    scale[scale <= 0] = positive.min() if positive.numel() else 1.0  # rows with k exact duplicates
    rows = torch.arange(n).repeat_interleave(k)
    cols = idx.reshape(-1)
    d = dist.reshape(-1)
    if weights == "heat":
        w = torch.exp(-(d**2) / (scale[rows] * scale[cols])).clamp_min(MIN_WEIGHT)
    else:
        w = torch.ones_like(d)
    W = scipy.sparse.coo_matrix((w.numpy(), (rows.numpy(), cols.numpy())), shape=(n, n)).tocsr()
    W = W.maximum(W.T).tocsr()
    return _join_components(W, points, metric, scale, weights)


def _join_components(
    W: scipy.sparse.csr_matrix, points: torch.Tensor, metric: str, scale: torch.Tensor, weights: str
) -> scipy.sparse.csr_matrix:
    n_components, labels = scipy.sparse.csgraph.connected_components(W, directed=False)
    if n_components == 1:
        return W
    warnings.warn(
        f"The kNN graph of {points.shape[0]} rows has {n_components} connected components (clusters with no "
        "neighbour in common); each was linked to the rest by its closest pair of rows, so that the Laplacian "
        "eigenvectors describe the geometry rather than the components. Raise n_neighbors if the clusters "
        "belong together.",
        IllConditionedWarning,
        stacklevel=3,
    )
    W = W.tolil()
    while n_components > 1:
        lab = torch.from_numpy(labels)
        for c in range(n_components):
            inside = torch.nonzero(lab == c).reshape(-1)
            outside = torch.nonzero(lab != c).reshape(-1)
            best = (float("inf"), -1, -1)
            for start in range(0, inside.numel(), _ROW_CHUNK):
                block = inside[start : start + _ROW_CHUNK]
                D = _distances(points[block], points[outside], metric)
                flat = int(torch.argmin(D))
                value = float(D.reshape(-1)[flat])
                if value < best[0]:
                    best = (value, int(block[flat // D.shape[1]]), int(outside[flat % D.shape[1]]))
            d, i, j = best
            w = 1.0 if weights == "binary" else max(float(np.exp(-(d**2) / float(scale[i] * scale[j]))), MIN_WEIGHT)
            W[i, j] = W[j, i] = w
        n_components, labels = scipy.sparse.csgraph.connected_components(W.tocsr(), directed=False)
    return W.tocsr()


def normalized_laplacian(W: scipy.sparse.spmatrix) -> scipy.sparse.csr_matrix:
    """Symmetric normalised graph Laplacian ``L = I - D^-1/2 W D^-1/2`` (eigenvalues in [0, 2]).

    Parameters
    ----------
    W : sparse matrix of shape (n, n)
        Symmetric non-negative affinities with no isolated node (every row sums to > 0).

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n, n), float64

    Examples
    --------
    >>> import numpy as np, scipy.sparse
    >>> L = normalized_laplacian(scipy.sparse.csr_matrix(np.array([[0.0, 1.0], [1.0, 0.0]])))
    >>> L.toarray().tolist()
    [[1.0, -1.0], [-1.0, 1.0]]
    """
    W = scipy.sparse.csr_matrix(W, dtype=np.float64)
    degree = np.asarray(W.sum(axis=1)).reshape(-1)
    if W.shape[0] != W.shape[1]:
        raise ValueError(f"W must be a square affinity matrix, got shape {W.shape}.")
    if (degree <= 0).any():
        i = int(np.flatnonzero(degree <= 0)[0])
        raise ValueError(f"W has isolated nodes (row {i} has no edge); build it with knn_graph, which links every row.")
    inv_sqrt = scipy.sparse.diags(1.0 / np.sqrt(degree))
    L = scipy.sparse.identity(W.shape[0], format="csr") - inv_sqrt @ W @ inv_sqrt
    return scipy.sparse.csr_matrix((L + L.T) * 0.5)


def laplacian_eigenbasis(L: scipy.sparse.spmatrix, k: int, *, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest eigenvalues of a symmetric Laplacian and their orthonormal eigenvectors.

    Graphs of up to :data:`DENSE_EIGEN_MAX` nodes (or ``k >= n - 1``) use a dense symmetric solver; larger
    ones use ARPACK in shift-invert mode about a small negative shift (``L + 1e-3 I`` is positive definite,
    so its sparse factorisation is stable and the smallest eigenvalues converge in a few iterations), with
    the dense solver as a fallback, and a :class:`~latentalign.exceptions.ConvergenceWarning`, when ARPACK
    does not converge. Each eigenvector's sign is fixed so that its largest-magnitude entry is positive, so
    the basis is reproducible.

    Parameters
    ----------
    L : sparse matrix of shape (n, n)
        Symmetric Laplacian (e.g. :func:`normalized_laplacian`).
    k : int
        Number of eigenpairs, ``1 <= k <= n``.
    random_state : int, default 0
        Seed of ARPACK's start vector.

    Returns
    -------
    eigenvalues : numpy.ndarray of shape (k,)
        Ascending; the first is ~0 for a connected graph.
    eigenvectors : numpy.ndarray of shape (n, k)
        Orthonormal columns.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((60, 3))
    >>> vals, vecs = laplacian_eigenbasis(normalized_laplacian(knn_graph(X, 6)), 8)
    >>> bool(abs(vals[0]) < 1e-10), bool(np.all(np.diff(vals) >= 0)), bool(np.allclose(vecs.T @ vecs, np.eye(8)))
    (True, True, True)
    """
    n = L.shape[0]
    check_number(k, "k", integer=True, low=1)
    if k > n:
        raise ValueError(
            f"k={k} eigenvectors were asked of a graph with {n} nodes; there are at most {n}. Pass k <= {n}."
        )
    k = int(k)
    if n <= DENSE_EIGEN_MAX or k >= n - 1:
        vals, vecs = _dense_eigen(L, k)
    else:
        v0 = np.random.default_rng(random_state).uniform(0.5, 1.5, size=n)
        try:
            vals, vecs = scipy.sparse.linalg.eigsh(scipy.sparse.csc_matrix(L), k=k, sigma=-1e-3, which="LM", v0=v0)
        except scipy.sparse.linalg.ArpackNoConvergence:
            warnings.warn(
                f"ARPACK did not converge on the {k} smallest eigenpairs of a {n}-node Laplacian; solved densely "
                "instead (O(n^3)). Lower k or n_neighbors' spread to keep the sparse solver.",
                ConvergenceWarning,
                stacklevel=2,
            )
            vals, vecs = _dense_eigen(L, k)
        order = np.argsort(vals, kind="stable")
        vals, vecs = vals[order], vecs[:, order]
    peak = np.argmax(np.abs(vecs), axis=0)
    signs = np.sign(vecs[peak, np.arange(k)])
    signs[signs == 0] = 1.0
    return np.asarray(vals, dtype=np.float64), np.ascontiguousarray(vecs * signs)


def _dense_eigen(L: scipy.sparse.spmatrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    dense = L.toarray() if scipy.sparse.issparse(L) else np.asarray(L, dtype=np.float64)
    return scipy.linalg.eigh(dense, subset_by_index=[0, k - 1])


def similarity_descriptors(X: Any, anchors: Any, *, metric: str = "cosine") -> np.ndarray:
    """One function per anchor: the similarity of every row of ``X`` to it (a relative representation).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    anchors : array of int of shape (m,)
        Rows of ``X`` that are anchors.
    metric : {"cosine", "euclidean"}, default "cosine"
        ``"cosine"``: cosine similarity; ``"euclidean"``: negative distance.

    Returns
    -------
    numpy.ndarray of shape (n_samples, m), float64

    Examples
    --------
    >>> import numpy as np
    >>> similarity_descriptors(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]), [0]).round(3).tolist()
    [[1.0], [0.0], [0.707]]
    """
    check_choice(metric, "metric", GRAPH_METRICS)
    Xt = _as_float64(X, "X")
    rows = torch.as_tensor(np.asarray(anchors, dtype=np.int64))
    if metric == "cosine":
        unit = _unit_rows(Xt, "X")
        return (unit @ unit[rows].T).numpy()
    return (-torch.cdist(Xt, Xt[rows])).numpy()


def heat_descriptors(
    eigenvalues: np.ndarray, eigenvectors: np.ndarray, anchors: Any, *, n_times: int = 4
) -> np.ndarray:
    """Each anchor's indicator diffused on the graph, at ``n_times`` times: ``Phi exp(-t Lambda) Phi[a]^T``.

    The times are log-spaced between ``4 ln 10 / lambda_max`` and ``4 ln 10 / lambda_1`` (the heat kernel
    signature's range, Sun et al. 2009): from local bumps around each anchor to smooth functions of the
    whole graph. They depend only on the graph, so two graphs of the same shape get comparable functions.

    Parameters
    ----------
    eigenvalues : array of shape (k,)
        Ascending Laplacian eigenvalues (:func:`laplacian_eigenbasis`).
    eigenvectors : array of shape (n, k)
    anchors : array of int of shape (m,)
        Rows that are anchors.
    n_times : int, default 4

    Returns
    -------
    numpy.ndarray of shape (n, m * n_times), float64
        Column ``t * m + j``: anchor ``j`` at time ``t``.

    Examples
    --------
    Relabelling the rows relabels the functions, whatever the signs and order the eigensolver returns:

    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((40, 3))
    >>> perm = np.random.default_rng(1).permutation(40)
    >>> def heat(Z, anchors):
    ...     vals, vecs = laplacian_eigenbasis(normalized_laplacian(knn_graph(Z, 5)), 40)
    ...     return heat_descriptors(vals, vecs, anchors, n_times=2)
    >>> F, G = heat(X, perm[[3, 7]]), heat(X[perm], [3, 7])
    >>> F.shape, bool(np.allclose(F[perm], G))
    ((40, 4), True)
    """
    check_number(n_times, "n_times", integer=True, low=1)
    vals = np.asarray(eigenvalues, dtype=np.float64)
    vecs = np.asarray(eigenvectors, dtype=np.float64)
    rows = np.asarray(anchors, dtype=np.int64)
    positive = vals[vals > 1e-12]
    low, high = (positive.min(), positive.max()) if positive.size else (1.0, 1.0)
    times = np.geomspace(4 * np.log(10) / high, 4 * np.log(10) / low, int(n_times)) if high > low else [1.0 / high]
    blocks = [vecs @ (np.exp(-t * vals)[:, None] * vecs[rows].T) for t in times]
    return np.concatenate(blocks, axis=1)


def standardize_columns(F: np.ndarray) -> np.ndarray:
    """Centre each column and scale it to unit norm; constant columns become zero.

    Descriptors of two spaces differ in offset and spread (cosine similarities of one model sit higher
    than another's); standardising both makes their shapes, not their ranges, what the map matches.

    Examples
    --------
    >>> import numpy as np
    >>> standardize_columns(np.array([[1.0, 5.0], [3.0, 5.0]])).tolist()
    [[-0.7071067811865475, 0.0], [0.7071067811865475, 0.0]]
    """
    F = np.asarray(F, dtype=np.float64)
    centred = F - F.mean(axis=0)
    norms = np.linalg.norm(centred, axis=0)
    scale = np.where(norms > 1e-12 * np.maximum(np.abs(F).max(axis=0), 1e-300), norms, np.inf)
    return centred / scale


def solve_functional_map(
    A: np.ndarray,
    B: np.ndarray,
    eigenvalues_x: np.ndarray,
    eigenvalues_y: np.ndarray,
    *,
    alpha: float = 0.1,
    orthogonal: bool = False,
) -> np.ndarray:
    """Functional map ``C`` (``k_y x k_x``) with ``C A ~ B`` and ``C`` nearly commuting with the Laplacians.

    Minimises ``||C A - B||_F^2 + mu ||C Lambda_x - Lambda_y C||_F^2``. The penalty is diagonal in the
    eigenbases, so each row ``i`` of ``C`` is one ``k_x x k_x`` linear system
    ``(A A^T + mu diag((lambda_x - lambda_y[i])^2)) c_i = A B[i]^T``. The eigenvalues are divided by the
    largest of them and ``mu = alpha * ||A||_F^2 / k_x``, so ``alpha`` weighs the penalty against the mean
    descriptor energy per basis function, whatever the scales. A ridge of ``1e-8`` times that energy keeps
    the systems solvable when the descriptors do not span the basis.

    Parameters
    ----------
    A : array of shape (k_x, p)
        Descriptors of ``X`` in its eigenbasis (``Phi_x^T F``).
    B : array of shape (k_y, p)
        The same descriptors of ``Y`` in its eigenbasis (``Phi_y^T G``), column by column.
    eigenvalues_x : array of shape (k_x,)
    eigenvalues_y : array of shape (k_y,)
    alpha : float, default 0.1
        Weight of the commutativity penalty (>= 0).
    orthogonal : bool, default False
        Replace the solution by the nearest matrix with orthonormal rows or columns (``U V^T`` of its SVD):
        the functional map of an isometry is orthogonal.

    Returns
    -------
    numpy.ndarray of shape (k_y, k_x), float64

    Examples
    --------
    A map that swaps two basis functions of one eigenvalue is recovered from descriptors that determine it:

    >>> import numpy as np
    >>> A = np.random.default_rng(0).standard_normal((3, 10))
    >>> P = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    >>> vals = np.array([0.0, 0.5, 0.5])
    >>> bool(np.allclose(solve_functional_map(A, P @ A, vals, vals), P))
    True
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    lx = np.asarray(eigenvalues_x, dtype=np.float64).reshape(-1)
    ly = np.asarray(eigenvalues_y, dtype=np.float64).reshape(-1)
    check_number(alpha, "alpha", low=0.0)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise ValueError(
            f"A (k_x, p) and B (k_y, p) must hold the same p descriptors, got shapes {A.shape} and {B.shape}."
        )
    if lx.shape[0] != A.shape[0] or ly.shape[0] != B.shape[0]:
        raise ValueError(
            f"eigenvalues_x must have k_x = {A.shape[0]} values and eigenvalues_y k_y = {B.shape[0]}, got "
            f"{lx.shape[0]} and {ly.shape[0]}."
        )
    top = max(float(np.abs(lx).max(initial=0.0)), float(np.abs(ly).max(initial=0.0)), 1e-300)
    lx, ly = lx / top, ly / top
    k_x = A.shape[0]
    energy = float(np.sum(A * A)) / k_x
    energy = energy if energy > 0 else 1.0
    gram = A @ A.T + 1e-8 * energy * np.eye(k_x)
    rhs = A @ B.T  # (k_x, k_y): column i is A b_i
    mu = float(alpha) * energy
    C = np.empty((B.shape[0], k_x))
    for i in range(B.shape[0]):
        C[i] = scipy.linalg.solve(gram + np.diag(mu * (lx - ly[i]) ** 2), rhs[:, i], assume_a="pos")
    if orthogonal:
        U, _, Vt = np.linalg.svd(C, full_matrices=False)
        C = U @ Vt
    return C


def pointwise_map(eigenvectors_x: np.ndarray, eigenvectors_y: np.ndarray, C: np.ndarray) -> np.ndarray:
    """The point-to-point map a functional map induces: for each row of ``Y``, a row of ``X``.

    A map ``T: Y -> X`` pulls functions back, ``g(y) = f(T(y))``; in the bases that is
    ``Phi_y C ~ Phi_x[T]``, so ``T(y)`` is the row of ``Phi_x`` nearest to row ``y`` of ``Phi_y C``
    (computed in row blocks, never the whole ``n_y x n_x`` distance matrix).

    Parameters
    ----------
    eigenvectors_x : array of shape (n_x, k_x)
    eigenvectors_y : array of shape (n_y, k_y)
    C : array of shape (k_y, k_x)

    Returns
    -------
    numpy.ndarray of int64, shape (n_y,)

    Examples
    --------
    >>> import numpy as np
    >>> Phi = np.linalg.qr(np.random.default_rng(0).standard_normal((6, 3)))[0]
    >>> perm = np.array([2, 0, 1, 5, 3, 4])
    >>> pointwise_map(Phi, Phi[perm], np.eye(3)).tolist() == perm.tolist()
    True
    """
    Px = torch.from_numpy(np.ascontiguousarray(eigenvectors_x, dtype=np.float64))
    Py = torch.from_numpy(np.ascontiguousarray(eigenvectors_y, dtype=np.float64))
    Ct = torch.from_numpy(np.ascontiguousarray(C, dtype=np.float64))
    if Ct.shape != (Py.shape[1], Px.shape[1]):
        raise ValueError(
            f"C must have shape (k_y, k_x) = ({Py.shape[1]}, {Px.shape[1]}) for these bases, got {tuple(Ct.shape)}."
        )
    queries = Py @ Ct
    out = torch.empty(Py.shape[0], dtype=torch.long)
    sq = (Px * Px).sum(1)
    for start in range(0, Py.shape[0], _ROW_CHUNK):
        block = queries[start : start + _ROW_CHUNK]
        # ||q - p||^2 up to ||q||^2, which does not change the argmin over p
        out[start : start + block.shape[0]] = torch.argmin(sq[None, :] - 2.0 * (block @ Px.T), dim=1)
    return out.numpy()


def map_from_pointwise(eigenvectors_x: np.ndarray, eigenvectors_y: np.ndarray, matches: np.ndarray) -> np.ndarray:
    """The functional map of a point-to-point map ``T: Y -> X`` (``matches[y] = T(y)``): ``Phi_y^T Phi_x[T]``.

    Exact projection when the columns of ``eigenvectors_y`` are orthonormal.

    Examples
    --------
    >>> import numpy as np
    >>> Phi = np.linalg.qr(np.random.default_rng(0).standard_normal((6, 3)))[0]
    >>> bool(np.allclose(map_from_pointwise(Phi, Phi, np.arange(6)), np.eye(3)))
    True
    """
    Px = np.asarray(eigenvectors_x, dtype=np.float64)
    Py = np.asarray(eigenvectors_y, dtype=np.float64)
    T = np.asarray(matches, dtype=np.int64)
    if T.shape != (Py.shape[0],):
        raise ValueError(f"matches must have one entry per row of eigenvectors_y ({Py.shape[0]}), got shape {T.shape}.")
    return Py.T @ Px[T]


def zoomout(
    eigenvectors_x: np.ndarray,
    eigenvectors_y: np.ndarray,
    C: np.ndarray,
    *,
    k_final: int | None = None,
    step: int = 1,
    fixed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Refine a functional map by spectral upsampling (ZoomOut; Melzi et al., SIGGRAPH Asia 2019).

    From the ``k_y x k_x`` map ``C``, alternate: the point-to-point map ``T`` it induces
    (:func:`pointwise_map`), then the map of ``T`` on ``step`` more basis functions per side
    (:func:`map_from_pointwise`), until the bases reach ``k_final`` functions. Rows in ``fixed`` keep
    their known match throughout.

    Parameters
    ----------
    eigenvectors_x : array of shape (n_x, K_x)
    eigenvectors_y : array of shape (n_y, K_y)
        Bases with at least ``k_final`` columns each.
    C : array of shape (k_y, k_x)
        Initial map (e.g. from :func:`solve_functional_map`).
    k_final : int, optional
        Final size of both bases (default: the smaller number of columns given).
    step : int, default 1
        Basis functions added per iteration.
    fixed : array of int of shape (m, 2), optional
        Known matches ``(row of X, row of Y)``; ``T(y) = x`` for each.

    Returns
    -------
    C : numpy.ndarray of shape (k_final, k_final)
    matches : numpy.ndarray of int64, shape (n_y,)
        The point-to-point map ``T`` of the final ``C`` (for each row of ``Y``, a row of ``X``).
    history : list of dict
        One entry per iteration: ``k`` (basis size the map was computed at) and ``changed`` (fraction of
        rows of ``Y`` whose match changed since the previous iteration; None for the first).

    Examples
    --------
    Two copies of one graph in shuffled order: ZoomOut from a 2 x 2 identity recovers the shuffle when the
    low frequencies are unambiguous.

    >>> import numpy as np
    >>> t = np.linspace(0, 1, 80) ** 1.5  # points on a segment, unevenly spaced
    >>> X = np.stack([t, np.zeros_like(t)], 1)
    >>> perm = np.random.default_rng(0).permutation(80)
    >>> _, vx = laplacian_eigenbasis(normalized_laplacian(knn_graph(X, 4, metric="euclidean")), 12)
    >>> _, vy = laplacian_eigenbasis(normalized_laplacian(knn_graph(X[perm], 4, metric="euclidean")), 12)
    >>> C0 = map_from_pointwise(vx[:, :2], vy[:, :2], perm)
    >>> _, T, _ = zoomout(vx, vy, C0, k_final=12, step=2)
    >>> float((T == perm).mean())
    1.0
    """
    Px = np.asarray(eigenvectors_x, dtype=np.float64)
    Py = np.asarray(eigenvectors_y, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    check_number(step, "step", integer=True, low=1)
    k_top = min(Px.shape[1], Py.shape[1])
    k_final = k_top if k_final is None else int(check_number(k_final, "k_final", integer=True, low=1))
    if k_final > k_top:
        raise ValueError(
            f"k_final={k_final} exceeds the basis sizes given ({Px.shape[1]} for X, {Py.shape[1]} for Y); pass "
            "bases with at least k_final columns."
        )
    known = np.zeros((0, 2), dtype=np.int64) if fixed is None else np.asarray(fixed, dtype=np.int64).reshape(-1, 2)
    history: list[dict[str, Any]] = []
    previous: np.ndarray | None = None
    while True:
        k_y, k_x = C.shape
        T = pointwise_map(Px[:, :k_x], Py[:, :k_y], C)
        T[known[:, 1]] = known[:, 0]
        changed = None if previous is None else float(np.mean(T != previous))
        history.append({"k": int(max(k_x, k_y)), "changed": changed})
        previous = T
        if max(k_x, k_y) >= k_final:
            return C, T, history
        k = min(max(k_x, k_y) + int(step), k_final)
        C = map_from_pointwise(Px[:, :k], Py[:, :k], T)
