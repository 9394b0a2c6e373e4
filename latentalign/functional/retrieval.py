"""Nearest-neighbour search, CSLS and retrieval metrics, blocked: no n_queries x n_keys matrix is ever held.

Exact search runs on :mod:`latentalign.functional.blocks`: the scores are produced one cache-sized tile
(a block of query rows against a block of keys) at a time and feed a fused top-k, the CSLS penalties or the
gold counts, so memory is a few tiles whatever the input sizes. Among keys with equal scores, the lower key
index ranks first. CSLS retrieval and CSLS ranks take one pass over the cosines for both penalties and each
query's best candidates, plus a recomputation of the rows whose candidates cannot be proven to hold the
answer (:mod:`latentalign.functional.knn_csls`). On the CPU the tile products go through numpy's BLAS or
torch's, whichever :func:`~latentalign.functional.cpu_blas.cpu_products` chooses for the machine. Inputs may be numpy arrays
or torch tensors (CPU or GPU, same code); outputs come back the same way. No gradients flow through these
functions.

Metrics returned by :func:`retrieval_scores`
--------------------------------------------
Every query ``i`` has a non-empty set ``G(i)`` of gold keys (default: key ``i``). The *position* of a key
is its 1-based place in the query's ranking of all ``n_k`` keys by decreasing score. Positions are exact
(every key is scored), and ties are resolved by ``ties``: ``"pessimistic"`` (default) places non-gold keys
tied with a gold key ahead of it, ``"optimistic"`` places them behind it.

==================  =======================================================================================
name                definition (averaged over queries)
==================  =======================================================================================
``recall@k``        1 if ANY gold key is among the top ``k`` (best gold position <= k), else 0
``precision@k``     (number of gold keys among the top ``k``) / ``k``; at most ``min(|G(i)|, k) / k``
``mrr``             1 / (position of the best gold key)
``mean_rank``       position of the best gold key (1 = perfect)
``median_rank``     median over queries of the position of the best gold key
``mrr@D``           only with a faiss index: like ``mrr`` but 0 when no gold key is in the top ``D``
                    (``D`` = the largest ``k``); ``mrr``, ``mean_rank`` and ``median_rank`` are then absent
==================  =======================================================================================

With a faiss index the metrics are read from the top ``max(k)`` list that faiss returns, so ties are
ordered as faiss orders them; ``index="faiss-ivf"`` is approximate (it only scans ``nprobe`` of ``nlist``
clusters).

Scores
------
``"cosine"`` and ``"dot"`` scores are similarities (higher is better). ``"l2"`` scores returned by
:func:`knn` are squared Euclidean distances in increasing order (faiss's convention); internally keys are
ranked by the negated squared distance. CSLS (Conneau et al., 2018, "Word translation without parallel
data", the MUSE code) is ``2 cos(q, k) - r_K(q) - r_Q(k)`` where ``r_K(q)`` is the mean cosine between
``q`` and its ``csls_k`` nearest keys and ``r_Q(k)`` the mean cosine between ``k`` and its ``csls_k``
nearest queries.

Cosine scores do not depend on the scale of the rows, at any magnitude the dtype holds: row norms are
computed without overflow or underflow (:func:`~latentalign.functional.norms.row_norms`), and rows whose norms lie outside
``[sqrt(tiny), sqrt(max)]`` of the dtype (about ``1e-19`` to ``1e19`` in float32) are scaled to unit length
before the product. ``"dot"`` and ``"l2"`` scores are the raw products, so inputs whose scores would
overflow the dtype, or underflow below ``tiny / eps``, raise a ``ValueError`` naming the range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import torch

from latentalign._array import ArrayLike, ArraySpec, restore
from latentalign._optional import import_optional
from latentalign._validation import check_choice, check_number, check_pair
from latentalign.functional.blocks import (
    Scorer,
    blocked_topk,
    check_score_range,
    count_ahead,
    csls_pass,
    nonzero_norms,
    unit_rows,
)
from latentalign.functional.knn_csls import CSLS_FIRST_TILES, csls_block_rows, csls_counts, csls_topk

__all__ = [
    "knn",
    "csls_penalties",
    "csls_scores",
    "csls_knn",
    "retrieval_scores",
    "retrieval_positions",
    "summarize_positions",
    "RetrievalPositions",
    "check_retrieval_options",
    "knn_tensors",
    "METRICS",
    "INDEXES",
    "BLOCK_ELEMENTS",
]

METRICS = ("cosine", "l2", "dot")
INDEXES = ("exact", "faiss", "faiss-ivf")
TIES = ("pessimistic", "optimistic")
BLOCK_ELEMENTS = 2**25
# Position given to padding entries of the gold table (never <= any k).
_PAD = 2**62


# --------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------
def _check_queries_keys(Q: Any, K: Any) -> tuple[torch.Tensor, torch.Tensor, ArraySpec]:
    """Queries and keys: any row counts, one feature space, one compute dtype; the queries' spec."""
    return check_pair(Q, K, ("Q", "K"), paired=False, same_features=True)


def _check_chunk(chunk_size: Any) -> int | None:
    return check_number(chunk_size, "chunk_size", integer=True, low=1, allow_none=True)


# --------------------------------------------------------------------------------------------------------
# faiss
# --------------------------------------------------------------------------------------------------------
def _to_faiss(X: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(X.detach().to(device="cpu", dtype=torch.float32).numpy())


def _ivf_params(n_k: int, nlist: int | None, nprobe: int | None) -> tuple[int, int]:
    if nlist is None:
        nlist = max(1, min(int(round(math.sqrt(n_k))), n_k // 39 or 1))
    if nlist > n_k:
        raise ValueError(
            f"nlist={nlist} is larger than the number of keys ({n_k}); each IVF list needs training points. "
            "Use a smaller nlist (about sqrt(n_keys)) or index='faiss'."
        )
    if nprobe is None:
        nprobe = max(1, nlist // 8)
    if nprobe > nlist:
        raise ValueError(f"nprobe={nprobe} is larger than nlist={nlist}; nprobe counts the lists scanned.")
    return nlist, nprobe


def _faiss_search(
    Qf: np.ndarray,
    Kf: np.ndarray,
    k: int,
    inner_product: bool,
    index: str,
    nlist: int | None,
    nprobe: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    faiss = import_optional("faiss", "faiss", purpose=f"nearest-neighbour search with index={index!r}")
    d = Kf.shape[1]
    if index == "faiss":
        searcher = faiss.IndexFlatIP(d) if inner_product else faiss.IndexFlatL2(d)
    else:
        nlist, nprobe = _ivf_params(Kf.shape[0], nlist, nprobe)
        quantizer = faiss.IndexFlatIP(d) if inner_product else faiss.IndexFlatL2(d)
        kind = faiss.METRIC_INNER_PRODUCT if inner_product else faiss.METRIC_L2
        searcher = faiss.IndexIVFFlat(quantizer, d, nlist, kind)
        searcher.train(Kf)
        searcher.nprobe = nprobe
    searcher.add(Kf)
    D, found = searcher.search(Qf, k)
    if (found < 0).any():
        missing = int((found < 0).any(axis=1).sum())
        raise ValueError(
            f"index='faiss-ivf' found fewer than {k} neighbours for {missing} queries (it scanned {nprobe} of "
            f"{nlist} lists). Increase nprobe, decrease nlist, or use index='faiss' (exact)."
        )
    return D, found


def _faiss_topk(
    Q: torch.Tensor,
    K: torch.Tensor,
    k: int,
    metric: str,
    index: str,
    nlist: int | None,
    nprobe: int | None,
    exclude_self: bool = False,
    q_pen: torch.Tensor | None = None,
    k_pen: torch.Tensor | None = None,
    names: tuple[str, str] = ("Q", "K"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """faiss search returning (similarity values higher-is-better, indices), on Q's device and dtype."""
    if metric == "cosine":  # faiss has no cosine index: normalised copies + inner product
        nonzero_norms(Q, names[0])
        nonzero_norms(K, names[1])
        Qf, Kf = _to_faiss(unit_rows(Q)), _to_faiss(unit_rows(K))
    else:
        check_score_range(Q, K, metric, names, torch.float32)  # faiss computes in float32
        Qf, Kf = _to_faiss(Q), _to_faiss(K)
    if q_pen is not None:  # CSLS as one inner product: [2 q, -1] . [k, r_Q(k)] = 2 cos - r_Q(k)
        Qf = np.hstack([2.0 * Qf, -np.ones((Qf.shape[0], 1), np.float32)])
        Kf = np.hstack([Kf, _to_faiss(cast(torch.Tensor, k_pen)[:, None])])  # passed with q_pen
    depth = k + 1 if exclude_self else k
    D, found = _faiss_search(Qf, Kf, depth, metric != "l2", index, nlist, nprobe)
    values = torch.from_numpy(D).to(device=Q.device, dtype=Q.dtype)
    indices = torch.from_numpy(found).to(device=Q.device)
    if metric == "l2":
        values = -values
    if exclude_self:
        is_self = indices == torch.arange(indices.shape[0], device=indices.device)[:, None]
        order = torch.argsort(is_self.to(torch.int8), dim=1, stable=True)[:, :k]
        values, indices = values.gather(1, order), indices.gather(1, order)
    if q_pen is not None:
        values = values - q_pen[:, None].to(values.dtype)
    return values, indices


# --------------------------------------------------------------------------------------------------------
# Public: knn and CSLS
# --------------------------------------------------------------------------------------------------------
def _check_index_options(index: str, nlist: Any, nprobe: Any) -> None:
    check_choice(index, "index", INDEXES)
    if index != "faiss-ivf" and (nlist is not None or nprobe is not None):
        raise ValueError(
            f"nlist and nprobe configure the approximate IVF index; they are not used with index={index!r}. "
            "Pass index='faiss-ivf' or drop them."
        )
    check_number(nlist, "nlist", integer=True, low=1, allow_none=True)
    check_number(nprobe, "nprobe", integer=True, low=1, allow_none=True)


def _check_k(k: Any, available: int, name: str = "k", what: str = "keys") -> int:
    check_number(k, name, integer=True, low=1)
    if k > available:
        raise ValueError(f"{name}={k} neighbours were asked for, but only {available} {what} are available.")
    return int(k)


def knn_tensors(
    Q: torch.Tensor,
    K: torch.Tensor,
    k: int,
    metric: str,
    index: str = "exact",
    chunk_size: int | None = None,
    exclude_self: bool = False,
    nlist: int | None = None,
    nprobe: int | None = None,
    names: tuple[str, str] = ("Q", "K"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (similarity values, indices) of validated tensors; similarities are -squared distance for l2.

    The unchecked core of :func:`knn` (no input validation, no conversion back to numpy), for callers
    that already hold validated tensors, e.g. the k-NN based similarity measures.

    Examples
    --------
    >>> import torch
    >>> values, indices = knn_tensors(torch.eye(3), torch.eye(3), 1, "dot", exclude_self=True)
    >>> values.tolist()
    [[0.0], [0.0], [0.0]]
    """
    with torch.no_grad():
        if index == "exact":
            return blocked_topk(Scorer.build(Q, K, metric, names), k, chunk_size, exclude_self)
        return _faiss_topk(Q, K, k, metric, index, nlist, nprobe, exclude_self, names=names)


def knn(
    Q: ArrayLike,
    K: ArrayLike,
    *,
    k: int = 10,
    metric: str = "cosine",
    index: str = "exact",
    chunk_size: int | None = None,
    exclude_self: bool = False,
    nlist: int | None = None,
    nprobe: int | None = None,
) -> tuple[ArrayLike, ArrayLike]:
    """Find the ``k`` nearest keys of every query.

    Parameters
    ----------
    Q : array of shape (n_queries, d)
        Queries (numpy array or torch tensor).
    K : array of shape (n_keys, d)
        Keys, same backend and device as ``Q``.
    k : int
        Number of neighbours, ``1 <= k <= n_keys`` (``n_keys - 1`` with ``exclude_self``).
    metric : {"cosine", "l2", "dot"}
        Cosine similarity, squared Euclidean distance, or inner product.
    index : {"exact", "faiss", "faiss-ivf"}
        ``"exact"``: blocked matrix product + top-k in torch (runs on the inputs' device; on the CPU the
        products use numpy's BLAS, see the module docstring).
        ``"faiss"``: faiss ``IndexFlatIP`` / ``IndexFlatL2`` on the CPU, also exact; both give the same
        neighbours up to ties and float32 rounding. ``"faiss-ivf"``: faiss ``IndexIVFFlat``, APPROXIMATE
        (scans ``nprobe`` of ``nlist`` k-means cells); use it only for large key sets.
    chunk_size : int, optional
        Query rows per block (exact index; default ``blocks.QUERY_BLOCK``); each tile holds about
        ``blocks.TILE_ELEMENTS`` scores.
    exclude_self : bool
        ``Q`` and ``K`` are the same set: drop key ``i`` from the neighbours of query ``i``.
    nlist, nprobe : int, optional
        IVF cells and cells scanned per query (``index="faiss-ivf"`` only); defaults ``round(sqrt(n_keys))``
        (at most ``n_keys // 39``) and ``max(1, nlist // 8)``.

    Returns
    -------
    scores : array of shape (n_queries, k)
        Similarities in decreasing order, or for ``metric="l2"`` squared distances in increasing order.
        Same backend, dtype and device as ``Q`` (faiss computes in float32).
    indices : array of shape (n_queries, k)
        int64 row indices into ``K``.

    Examples
    --------
    >>> import numpy as np
    >>> K = np.eye(4)
    >>> scores, idx = knn(K[[2, 0]] + 0.1, K, k=1)
    >>> idx.ravel().tolist()
    [2, 0]
    """
    check_choice(metric, "metric", METRICS)
    _check_index_options(index, nlist, nprobe)
    chunk_size = _check_chunk(chunk_size)
    Qt, Kt, spec = _check_queries_keys(Q, K)
    if exclude_self and Qt.shape[0] != Kt.shape[0]:
        raise ValueError(
            f"exclude_self=True treats Q and K as the same set, but Q has {Qt.shape[0]} rows and K has "
            f"{Kt.shape[0]}. Pass the same array twice, or exclude_self=False."
        )
    available = Kt.shape[0] - (1 if exclude_self else 0)
    k = _check_k(k, available)
    values, indices = knn_tensors(Qt, Kt, k, metric, index, chunk_size, exclude_self, nlist, nprobe)
    if metric == "l2":
        values = -values
    return restore(values, spec), _restore_indices(indices, spec)


def _restore_indices(indices: torch.Tensor, spec: ArraySpec) -> ArrayLike:
    if spec.backend == "torch":
        return indices.to(spec.device)
    return indices.cpu().numpy()


def _penalties(
    Q: torch.Tensor, K: torch.Tensor, k: int, index: str, chunk_size: int | None, nlist: Any = None, nprobe: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    if index == "exact":  # both penalties from one pass over the scores
        found = csls_pass(Scorer.build(Q, K, "cosine"), k, k, csls_block_rows(chunk_size), CSLS_FIRST_TILES)
        return found.r_query, found.r_key
    r_q = knn_tensors(Q, K, k, "cosine", index, chunk_size, nlist=nlist, nprobe=nprobe)[0].mean(1)
    r_k = knn_tensors(K, Q, k, "cosine", index, chunk_size, nlist=nlist, nprobe=nprobe, names=("K", "Q"))[0].mean(1)
    return r_q, r_k


def csls_penalties(
    Q: ArrayLike, K: ArrayLike, *, k: int = 10, index: str = "exact", chunk_size: int | None = None
) -> tuple[ArrayLike, ArrayLike]:
    """The CSLS hubness penalties ``r_K(q)`` for every query and ``r_Q(k)`` for every key.

    ``r_K(q)`` is the mean cosine similarity between query ``q`` and its ``k`` nearest keys; ``r_Q(k)`` is
    the mean cosine similarity between key ``k`` and its ``k`` nearest queries (MUSE's
    ``get_nn_avg_dist``, computed in row blocks).

    Returns
    -------
    r_query : array of shape (n_queries,)
    r_key : array of shape (n_keys,)

    Examples
    --------
    >>> import numpy as np
    >>> r_q, r_k = csls_penalties(np.eye(3), np.eye(3), k=1)
    >>> r_q.tolist(), r_k.tolist()
    ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    """
    chunk_size = _check_chunk(chunk_size)
    check_choice(index, "index", ("exact", "faiss"))
    Qt, Kt, spec = _check_queries_keys(Q, K)
    k = _check_csls_k(k, Qt, Kt, "k")
    r_q, r_k = _penalties(Qt, Kt, k, index, chunk_size)
    return restore(r_q, spec), restore(r_k, spec)


def _check_csls_k(k: Any, Q: torch.Tensor, K: torch.Tensor, name: str) -> int:
    check_number(k, name, integer=True, low=1)
    smallest = min(Q.shape[0], K.shape[0])
    if k > smallest:
        raise ValueError(
            f"{name}={k} is the CSLS neighbourhood size, but Q has {Q.shape[0]} rows and K has {K.shape[0]}; "
            f"it must be at most {smallest} (MUSE uses 10)."
        )
    return int(k)


def csls_scores(Q: ArrayLike, K: ArrayLike, *, k: int = 10, chunk_size: int | None = None) -> ArrayLike:
    """The full (n_queries, n_keys) matrix of CSLS scores ``2 cos(q, k) - r_K(q) - r_Q(k)``.

    The penalties are computed in row blocks, but the result itself holds ``n_queries x n_keys`` values:
    use :func:`csls_knn` or :func:`retrieval_scores` (``csls=True``) for large sets.

    Parameters
    ----------
    Q, K : arrays of shape (n_queries, d) and (n_keys, d)
    k : int
        CSLS neighbourhood size (MUSE: 10).
    chunk_size : int, optional
        Query rows scored at once while computing the penalties.

    Examples
    --------
    >>> import numpy as np
    >>> S = csls_scores(np.eye(3), np.eye(3), k=1)   # cos = identity, every penalty is 1
    >>> S.diagonal().tolist(), float(S[0, 1])
    ([0.0, 0.0, 0.0], -2.0)
    """
    chunk_size = _check_chunk(chunk_size)
    Qt, Kt, spec = _check_queries_keys(Q, K)
    k = _check_csls_k(k, Qt, Kt, "k")
    with torch.no_grad():
        r_q, r_k = _penalties(Qt, Kt, k, "exact", chunk_size)
        scorer = Scorer.build(Qt, Kt, "cosine")
        scorer.q_pen, scorer.k_pen = r_q, r_k
        S = scorer.block(0, Qt.shape[0])
    return restore(S, spec)


def csls_knn(
    Q: ArrayLike,
    K: ArrayLike,
    *,
    k: int = 10,
    csls_k: int = 10,
    index: str = "exact",
    chunk_size: int | None = None,
    nlist: int | None = None,
    nprobe: int | None = None,
) -> tuple[ArrayLike, ArrayLike]:
    """The ``k`` keys with the highest CSLS score for every query (MUSE's CSLS retrieval).

    Parameters
    ----------
    Q, K : arrays of shape (n_queries, d) and (n_keys, d)
    k : int
        Number of keys returned per query.
    csls_k : int
        CSLS neighbourhood size for the penalties (MUSE: 10).
    index : {"exact", "faiss", "faiss-ivf"}
        As in :func:`knn`. With faiss the penalty ``r_Q(k)`` is folded into one inner product
        (``[2 q, -1] . [k, r_Q(k)]``), so the search stays a plain inner-product search.
    chunk_size, nlist, nprobe :
        As in :func:`knn`.

    Returns
    -------
    scores : array of shape (n_queries, k)
        CSLS scores in decreasing order.
    indices : array of shape (n_queries, k)

    Examples
    --------
    >>> import numpy as np
    >>> _, idx = csls_knn(np.eye(3) + 0.1, np.eye(3), k=1, csls_k=1)
    >>> idx.ravel().tolist()
    [0, 1, 2]
    """
    _check_index_options(index, nlist, nprobe)
    chunk_size = _check_chunk(chunk_size)
    Qt, Kt, spec = _check_queries_keys(Q, K)
    k = _check_k(k, Kt.shape[0])
    csls_k = _check_csls_k(csls_k, Qt, Kt, "csls_k")
    values, indices = _csls_topk(Qt, Kt, k, csls_k, index, chunk_size, nlist, nprobe)
    return restore(values, spec), _restore_indices(indices, spec)


def _csls_topk(
    Q: torch.Tensor, K: torch.Tensor, k: int, csls_k: int, index: str, chunk_size: Any, nlist: Any, nprobe: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        if index == "exact":
            return csls_topk(Q, K, k, csls_k, chunk_size)
        r_q, r_k = _penalties(Q, K, csls_k, "faiss", chunk_size)
        return _faiss_topk(Q, K, k, "cosine", index, nlist, nprobe, q_pen=r_q, k_pen=r_k)


# --------------------------------------------------------------------------------------------------------
# Gold answers and exact positions
# --------------------------------------------------------------------------------------------------------
def _parse_gold(gold: Any, n_q: int, n_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(indices, valid)``, both (n_q, g): gold key indices per query (padding masked out)."""
    if gold is None:
        if n_q > n_k:
            raise ValueError(
                f"gold=None pairs query i with key i, but Q has {n_q} rows and K only {n_k}. Pass gold= with "
                "the correct key index (or indices) of every query."
            )
        idx = torch.arange(n_q, dtype=torch.int64)[:, None]
        return idx, torch.ones_like(idx, dtype=torch.bool)
    if isinstance(gold, torch.Tensor):
        gold = gold.detach().cpu().numpy()
    if isinstance(gold, np.ndarray):
        if gold.dtype.kind not in "iu":
            raise TypeError(
                f"gold must hold integer key indices, got an array of dtype {gold.dtype}. Convert it with "
                "gold.astype(np.int64)."
            )
        if gold.ndim not in (1, 2):
            raise ValueError(
                f"gold must be 1-D (one key per query) or 2-D (several keys per query, -1 = padding), got "
                f"shape {gold.shape}."
            )
        table = gold.reshape(len(gold), -1).astype(np.int64)
        if table.shape[0] != n_q:
            raise ValueError(f"gold has {table.shape[0]} entries but Q has {n_q} rows; give one entry per query.")
        if (table < -1).any():
            raise ValueError("gold contains negative indices other than -1 (the padding value of a 2-D gold).")
        valid = table >= 0
    elif isinstance(gold, Sequence) and not isinstance(gold, (str, bytes)):
        if len(gold) != n_q:
            raise ValueError(f"gold has {len(gold)} entries but Q has {n_q} rows; give one entry per query.")
        rows = [_gold_row(entry, i) for i, entry in enumerate(gold)]
        width = max(len(r) for r in rows)
        table = np.full((n_q, width), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            table[i, : len(r)] = r
        valid = table >= 0
    else:
        raise TypeError(
            f"gold must be None, an integer array, or a list with the gold key index (or a set of indices) of "
            f"every query, got {type(gold).__name__}."
        )
    if (table >= n_k).any():
        bad = int(table.max())
        raise ValueError(f"gold refers to key {bad}, but K has only {n_k} rows (valid indices 0..{n_k - 1}).")
    empty = ~valid.any(axis=1)
    if empty.any():
        raise ValueError(
            f"query {int(np.flatnonzero(empty)[0])} has no gold key; every query needs at least one. Drop "
            "queries without an answer before scoring."
        )
    # Remove duplicate answers within a row (they would be counted twice by precision@k).
    table = np.where(valid, table, n_k)  # sort padding last
    table.sort(axis=1)
    dup = np.zeros_like(valid)
    dup[:, 1:] = table[:, 1:] == table[:, :-1]
    valid = (table < n_k) & ~dup
    table = np.where(valid, table, 0)
    return torch.from_numpy(table), torch.from_numpy(valid)


def _gold_row(entry: Any, i: int) -> list[int]:
    if isinstance(entry, (int, np.integer)) and not isinstance(entry, bool):
        items = [entry]
    elif isinstance(entry, (set, frozenset, list, tuple, np.ndarray, torch.Tensor, range)):
        items = entry.tolist() if isinstance(entry, (np.ndarray, torch.Tensor)) else list(entry)
    else:
        raise TypeError(f"gold[{i}] must be a key index or a collection of key indices, got {type(entry).__name__}.")
    if not items:
        raise ValueError(
            f"query {i} has no gold key; every query needs at least one. Drop queries without an answer before scoring."
        )
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)) or item < 0:
            raise ValueError(f"gold[{i}] contains {item!r}; key indices must be non-negative integers.")
    return [int(x) for x in items]


def _exact_positions(
    scorer: Scorer,
    gold_idx: torch.Tensor,
    valid: torch.Tensor,
    ties: str,
    chunk_size: int | None,
    csls_k: int | None = None,
    depth_k: int = 1,
) -> torch.Tensor:
    """Exact 1-based positions of every gold key (sorted ascending per query; padding = _PAD).

    A gold key's position is the number of non-gold keys ranked ahead of it (scoring ``>=`` it when
    pessimistic, ``>`` when optimistic), plus its place among the query's gold keys. With ``csls_k`` the
    scores are CSLS (``scorer`` scores cosines), ranked from one pass where the candidates settle them.
    """
    n_q, g = gold_idx.shape
    device = scorer.Q.device
    gold_idx, valid = gold_idx.to(device), valid.to(device)
    inclusive = ties == "pessimistic"
    if csls_k is None:
        counts, gm = count_ahead(scorer, gold_idx, valid, inclusive, chunk_size)
    else:
        counts, gm = csls_counts(scorer, gold_idx, valid, inclusive, csls_k, depth_k, chunk_size)
    order = torch.argsort(gm, dim=1, descending=True, stable=True)
    place = torch.empty_like(order)
    place.scatter_(1, order, torch.arange(1, g + 1, device=device).expand(n_q, g).contiguous())
    positions = (counts + place).masked_fill(~valid, _PAD)
    return positions.sort(dim=1).values


def _list_positions(indices: torch.Tensor, gold_idx: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Positions of gold keys in top-D lists (padding / not found = _PAD), sorted ascending per query."""
    gold_idx, valid = gold_idx.to(indices.device), valid.to(indices.device)
    n_q, depth = indices.shape
    out = torch.empty(n_q, gold_idx.shape[1], dtype=torch.int64, device=indices.device)
    step = max(1, BLOCK_ELEMENTS // max(1, depth * gold_idx.shape[1]))
    for start in range(0, n_q, step):
        stop = min(n_q, start + step)
        match = (indices[start:stop, :, None] == gold_idx[start:stop, None, :]) & valid[start:stop, None, :]
        found = match.any(1)
        first = match.to(torch.int8).argmax(1) + 1
        out[start:stop] = torch.where(found, first, torch.full_like(first, _PAD)).sort(dim=1).values
    return out


def _reduce_positions(positions: torch.Tensor, ks: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(best gold position per query, number of gold keys within each top-k) on the CPU."""
    best = positions[:, 0].cpu()
    within = torch.stack([(positions <= k).sum(1) for k in ks], dim=1).cpu()
    return best, within


def summarize_positions(
    best: torch.Tensor, within: torch.Tensor, ks: tuple[int, ...], depth: int | None
) -> dict[str, float]:
    """The metrics of :func:`retrieval_scores` from gold positions (see :class:`RetrievalPositions`).

    Examples
    --------
    >>> import torch
    >>> summarize_positions(torch.tensor([1, 2]), torch.tensor([[1], [0]]), (1,), None)["mrr"]
    0.75
    """
    out: dict[str, float] = {}
    best64 = best.to(torch.float64)
    for k in ks:
        out[f"recall@{k}"] = float((best <= k).to(torch.float64).mean())
    for j, k in enumerate(ks):
        out[f"precision@{k}"] = float((within[:, j].to(torch.float64) / k).mean())
    if depth is None:
        out["mrr"] = float(best64.reciprocal().mean())
        out["mean_rank"] = float(best64.mean())
        out["median_rank"] = float(np.median(best64.numpy()))
    else:
        rr = torch.where(best <= depth, best64.reciprocal(), torch.zeros_like(best64))
        out[f"mrr@{depth}"] = float(rr.mean())
    return out


def _check_ks(k: Any, n_k: int) -> tuple[int, ...]:
    ks = (k,) if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else k
    if not isinstance(ks, (tuple, list)) or not ks:
        raise TypeError(f"k must be an integer or a non-empty tuple of integers, got {k!r}.")
    for value in ks:
        check_number(value, "k", integer=True, low=1)
    if max(ks) > n_k:
        raise ValueError(f"k={tuple(ks)} asks for the top {max(ks)} keys, but K has only {n_k} rows.")
    return tuple(sorted({int(v) for v in ks}))


def _positions(
    Q: torch.Tensor,
    K: torch.Tensor,
    gold: Any,
    ks: tuple[int, ...],
    csls: bool,
    csls_k: int,
    metric: str,
    index: str,
    ties: str,
    chunk_size: int | None,
    nlist: Any,
    nprobe: Any,
) -> tuple[torch.Tensor, int | None]:
    """Gold positions for one retrieval problem, and the list depth (None when positions are exact)."""
    gold_idx, valid = _parse_gold(gold, Q.shape[0], K.shape[0])
    with torch.no_grad():
        if index == "exact":
            scorer = Scorer.build(Q, K, metric)
            if csls:
                return _exact_positions(scorer, gold_idx, valid, ties, chunk_size, csls_k, max(ks)), None
            return _exact_positions(scorer, gold_idx, valid, ties, chunk_size), None
        depth = max(ks)
        if csls:
            _, indices = _csls_topk(Q, K, depth, csls_k, index, chunk_size, nlist, nprobe)
        else:
            _, indices = _faiss_topk(Q, K, depth, metric, index, nlist, nprobe)
        return _list_positions(indices, gold_idx, valid), depth


def check_retrieval_options(metric: str, csls: Any, index: str, ties: str, nlist: Any, nprobe: Any) -> None:
    """Validate the ranking options shared by :func:`retrieval_scores` and the stateful evaluator.

    Examples
    --------
    >>> check_retrieval_options("l2", True, "exact", "pessimistic", None, None)
    Traceback (most recent call last):
    ...
    ValueError: csls=True is defined on cosine similarities, but metric='l2'; use metric='cosine'.
    """
    check_choice(metric, "metric", METRICS)
    check_choice(ties, "ties", TIES)
    _check_index_options(index, nlist, nprobe)
    if not isinstance(csls, (bool, np.bool_)):
        raise TypeError(f"csls must be True or False, got {csls!r}.")
    if csls and metric != "cosine":
        raise ValueError(f"csls=True is defined on cosine similarities, but metric={metric!r}; use metric='cosine'.")


def retrieval_scores(
    Q: ArrayLike,
    K: ArrayLike,
    *,
    gold: Any = None,
    k: int | Sequence[int] = (1, 5, 10),
    csls: bool = False,
    csls_k: int = 10,
    metric: str = "cosine",
    index: str = "exact",
    ties: str = "pessimistic",
    chunk_size: int | None = None,
    nlist: int | None = None,
    nprobe: int | None = None,
) -> dict[str, float]:
    """Recall@k, precision@k, MRR, mean and median rank of retrieving gold keys for every query.

    Parameters
    ----------
    Q : array of shape (n_queries, d)
        Queries (e.g. source embeddings mapped into the target space).
    K : array of shape (n_keys, d)
        Keys (target embeddings).
    gold : None, integer array or list, optional
        The correct key(s) of every query. ``None``: query ``i`` <-> key ``i``. A 1-D integer array: one
        key per query. A 2-D integer array: several keys per query, ``-1`` = padding. A list whose entry
        ``i`` is a key index or a collection (set, list, array) of key indices.
    k : int or tuple of int
        Cut-offs for recall@k and precision@k.
    csls : bool
        Rank by CSLS instead of the raw metric (cosine only).
    csls_k : int
        CSLS neighbourhood size (MUSE: 10).
    metric : {"cosine", "l2", "dot"}
    index : {"exact", "faiss", "faiss-ivf"}
        ``"exact"`` ranks every key (exact positions, see the module docstring). faiss indexes only return the
        top ``max(k)`` keys: the result then has ``mrr@D`` instead of ``mrr`` / ``mean_rank`` / ``median_rank``.
    ties : {"pessimistic", "optimistic"}
        How a non-gold key with the same score as a gold key is ordered (exact index only).
    chunk_size : int, optional
        Query rows scored at once.
    nlist, nprobe : int, optional
        IVF parameters (``index="faiss-ivf"`` only).

    Returns
    -------
    dict
        ``{"recall@1": ..., "recall@5": ..., "precision@1": ..., "mrr": ..., "mean_rank": ...,
        "median_rank": ...}`` (names in the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((50, 8))
    >>> retrieval_scores(X, X, k=1)
    {'recall@1': 1.0, 'precision@1': 1.0, 'mrr': 1.0, 'mean_rank': 1.0, 'median_rank': 1.0}
    """
    check_retrieval_options(metric, csls, index, ties, nlist, nprobe)
    found = retrieval_positions(
        Q,
        K,
        gold=gold,
        k=k,
        csls=csls,
        csls_k=csls_k,
        metric=metric,
        index=index,
        ties=ties,
        chunk_size=chunk_size,
        nlist=nlist,
        nprobe=nprobe,
    )
    return summarize_positions(found.best, found.within, found.ks, found.depth)


class RetrievalPositions(NamedTuple):
    """Where the gold keys of one retrieval problem were ranked (what the metrics are computed from).

    Attributes
    ----------
    best : torch.Tensor of shape (n_queries,)
        1-based position of each query's best-ranked gold key (CPU, int64).
    within : torch.Tensor of shape (n_queries, len(ks))
        Number of gold keys within each top-``k``.
    ks : tuple of int
        The sorted cut-offs.
    depth : int or None
        Length of the ranked lists a faiss index returned (positions beyond it are unknown); ``None``
        when positions are exact.
    """

    best: torch.Tensor
    within: torch.Tensor
    ks: tuple[int, ...]
    depth: int | None


def retrieval_positions(
    Q: ArrayLike,
    K: ArrayLike,
    *,
    gold: Any = None,
    k: int | Sequence[int] = (1, 5, 10),
    csls: bool = False,
    csls_k: int = 10,
    metric: str = "cosine",
    index: str = "exact",
    ties: str = "pessimistic",
    chunk_size: int | None = None,
    nlist: int | None = None,
    nprobe: int | None = None,
) -> RetrievalPositions:
    """The ranked positions of the gold keys of every query, reduced to what the metrics need.

    Parameters are those of :func:`retrieval_scores`; the options are assumed checked with
    :func:`check_retrieval_options`. Positions of several problems are concatenated and summarised with
    :func:`summarize_positions` (a micro-average over all queries), which is how the stateful
    :class:`~latentalign.evaluation.retrieval.RetrievalEvaluator` accumulates.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((6, 3))
    >>> found = retrieval_positions(X, X, k=(1, 2))
    >>> found.best.tolist(), found.ks, found.depth
    ([1, 1, 1, 1, 1, 1], (1, 2), None)
    >>> summarize_positions(*found)["mrr"]
    1.0
    """
    chunk_size = _check_chunk(chunk_size)
    Qt, Kt, _ = _check_queries_keys(Q, K)
    ks = _check_ks(k, Kt.shape[0])
    if csls:
        csls_k = _check_csls_k(csls_k, Qt, Kt, "csls_k")
    positions, depth = _positions(Qt, Kt, gold, ks, csls, csls_k, metric, index, ties, chunk_size, nlist, nprobe)
    best, within = _reduce_positions(positions, ks)
    return RetrievalPositions(best, within, ks, depth)
