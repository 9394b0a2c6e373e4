"""The blocked score engine behind exact retrieval: tiles of the query x key score matrix, fused top-k.

The ``n_queries x n_keys`` score matrix is never held: it is produced one tile of ``rows x cols`` scores at a
time (a block of query rows against a block of key rows, at most :data:`TILE_ELEMENTS` scores, a few MiB:
the tile stays in the CPU's last-level cache while it is read again). Each tile feeds

* a running top-k per query (:func:`merge_topk`): the tile's keys are dealt into :data:`GROUP`-key groups
  (key ``j`` of a ``w``-key tile goes to group ``j mod (w / GROUP)``, so the group maxima are an elementwise
  maximum of ``GROUP`` contiguous slices, which vectorises); only groups whose best score beats the query's
  current k-th best are gathered and merged, so after the first tiles almost nothing but that maximum is
  done besides the matrix product;
* optionally a running top-k per key (the tile transposed), for the CSLS penalties, in the same pass;
* or per-query counts of keys scoring above a threshold (gold positions).

Ties are settled exactly: among keys with equal scores the lower key index ranks first, whatever the
tiling. The same torch code runs on CPU and GPU; memory is a few tiles whatever the input sizes. On the CPU
the tile products go through numpy's BLAS or torch's (:func:`product`, chosen by
:func:`~latentalign.functional.cpu_blas.cpu_products`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F

from latentalign.functional.cpu_blas import cpu_products
from latentalign.functional.norms import row_norms

__all__ = [
    "GROUP",
    "product",
    "tile_buffer",
    "torch_threads_beside_blas",
    "TILE_ELEMENTS",
    "QUERY_BLOCK",
    "KEPT_TILES",
    "Scorer",
    "nonzero_norms",
    "unit_rows",
    "check_score_range",
    "query_blocks",
    "key_blocks",
    "merge_topk",
    "merge_column_topk",
    "sort_ties_by_index",
    "blocked_topk",
    "CslsPass",
    "csls_pass",
    "count_ahead",
]

GROUP = 16
TILE_ELEMENTS = 2**21
QUERY_BLOCK = 1024
KEPT_TILES = 4


# --------------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------------
def nonzero_norms(X: torch.Tensor, name: str) -> torch.Tensor:
    """Row norms of ``X`` (float64); a zero row raises, as its cosine is undefined."""
    norms = row_norms(X)
    zero = norms == 0
    if bool(zero.any()):
        row = int(zero.nonzero()[0, 0])
        raise ValueError(
            f"{name} has a zero row (row {row}), whose cosine similarity is undefined. Drop all-zero rows "
            "first, or use metric='dot' or metric='l2'."
        )
    return norms


def unit_rows(X: torch.Tensor) -> torch.Tensor:
    """``X`` with every row scaled to unit length; each row is divided by its largest entry first, so nothing
    overflows or underflows. Rows must be non-zero."""
    scaled = X / X.abs().amax(dim=1, keepdim=True)
    return scaled / torch.linalg.vector_norm(scaled, dim=1, keepdim=True)


def _fits_scale_after_product(norms: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether rows with these norms can be scaled to unit length after the product, in ``dtype``.

    Between ``sqrt(tiny)`` and ``sqrt(max)`` of the dtype (``1e-19`` to ``1.8e19`` in float32) the
    reciprocal norms and every partial product are normal numbers; outside, the rows are normalised first.
    """
    info = torch.finfo(dtype)
    return math.sqrt(info.tiny) <= float(norms.min()) and float(norms.max()) <= math.sqrt(info.max)


def check_score_range(
    Q: torch.Tensor, K: torch.Tensor, metric: str, names: tuple[str, str], dtype: torch.dtype
) -> None:
    """Refuse dot and l2 scores that would overflow ``dtype`` or lose their precision to underflow.

    The scores are bounded by ``max ||q|| max ||k||`` (dot) and ``(max ||q|| + max ||k||)^2`` (l2); the bound
    must lie between ``tiny / eps`` (so that scores keep full precision) and the dtype's largest value.
    """
    if metric == "cosine" or Q.shape[0] == 0 or K.shape[0] == 0:
        return
    largest_q, largest_k = float(row_norms(Q).max()), float(row_norms(K).max())
    bound = largest_q * largest_k if metric == "dot" else (largest_q + largest_k) ** 2
    info = torch.finfo(dtype)
    low, high = info.tiny / info.eps, info.max
    if bound == 0 or low <= bound <= high:
        return
    invariance = (
        f"ranking by dot product does not change when {names[0]} or {names[1]} is multiplied by a positive number"
        if metric == "dot"
        else f"ranking by distance does not change when {names[0]} and {names[1]} are multiplied by the same "
        "positive number"
    )
    raise ValueError(
        f"metric={metric!r} scores of {names[0]} (largest row norm {largest_q:.3g}) and {names[1]} (largest row "
        f"norm {largest_k:.3g}) reach {bound:.3g}, outside the range {low:.3g} to {high:.3g} that {dtype} "
        f"scores can hold at full precision. Rescale the embeddings ({invariance}), pass float64 inputs, or "
        "use metric='cosine'."
    )


@dataclass
class Scorer:
    """Computes tiles of similarities (higher = better) between query rows and key rows.

    ``metric`` is ``"cosine"``, ``"l2"`` (negated squared distance), ``"dot"``, or ``"unit"`` (cosine of rows
    already scaled to unit length). With ``q_pen`` and ``k_pen`` set, scores are CSLS:
    ``2 s - q_pen - k_pen``.
    """

    Q: torch.Tensor
    K: torch.Tensor
    metric: str
    q_aux: torch.Tensor | None = None  # cosine: 1/||q||; l2: ||q||^2
    k_aux: torch.Tensor | None = None  # cosine: 1/||k||; l2: ||k||^2
    q_pen: torch.Tensor | None = None  # CSLS penalty r_K(q)
    k_pen: torch.Tensor | None = None  # CSLS penalty r_Q(k)

    @classmethod
    def build(cls, Q: torch.Tensor, K: torch.Tensor, metric: str, names: tuple[str, str] = ("Q", "K")) -> Scorer:
        """The scorer of ``metric`` for validated tensors (refusing zero rows and out-of-range scores).

        Examples
        --------
        >>> import torch
        >>> Scorer.build(torch.eye(2), 3 * torch.eye(2), "cosine").block(0, 2).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
        """
        if metric == "cosine":
            q_norms, k_norms = nonzero_norms(Q, names[0]), nonzero_norms(K, names[1])
            if _fits_scale_after_product(q_norms, Q.dtype) and _fits_scale_after_product(k_norms, K.dtype):
                return cls(Q, K, metric, q_norms.to(Q.dtype).reciprocal(), k_norms.to(K.dtype).reciprocal())
            return cls(unit_rows(Q), unit_rows(K), "unit")  # beyond the dtype's safe range: copies
        check_score_range(Q, K, metric, names, Q.dtype)
        if metric == "l2":
            sq = torch.linalg.vector_norm  # no (n, d) temporary, unlike (K * K).sum(1)
            return cls(Q, K, metric, sq(Q, dim=1).square(), sq(K, dim=1).square())
        return cls(Q, K, metric)

    @property
    def n_queries(self) -> int:
        return self.Q.shape[0]

    @property
    def n_keys(self) -> int:
        return self.K.shape[0]

    def subset(self, rows: torch.Tensor) -> Scorer:
        """The same scorer restricted to some query rows (same scaling and penalties)."""

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows]

        return replace(self, Q=self.Q[rows], q_aux=pick(self.q_aux), q_pen=pick(self.q_pen))

    def queries(self, start: int, stop: int) -> torch.Tensor:
        """Query rows ``start:stop`` ready for the product (scaled to unit length for cosine)."""
        if self.metric == "cosine":
            return self.Q[start:stop] * cast(torch.Tensor, self.q_aux)[start:stop, None]
        return self.Q[start:stop]

    def tile(
        self, Qb: torch.Tensor, start: int, stop: int, keys: slice | torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores of the prepared queries ``Qb`` (rows ``start:stop``) against the keys ``keys``, written
        into ``out`` (contiguous, ``len(Qb) x n_keys_in_tile``) when given."""
        S = product(Qb, self.K[keys], out)
        q_rows = slice(start, stop)
        if self.metric == "cosine":
            S.mul_(cast(torch.Tensor, self.k_aux)[keys][None, :])
        elif self.metric == "l2":
            q_aux, k_aux = cast(torch.Tensor, self.q_aux), cast(torch.Tensor, self.k_aux)
            S.mul_(2.0).sub_(q_aux[q_rows, None]).sub_(k_aux[keys][None, :]).clamp_(max=0.0)
        if self.q_pen is not None:  # CSLS; k_pen is always set with q_pen
            k_pen = cast(torch.Tensor, self.k_pen)
            S.mul_(2.0).sub_(self.q_pen[q_rows, None]).sub_(k_pen[keys][None, :])
        return S

    def block(self, start: int, stop: int) -> torch.Tensor:
        """Scores of query rows ``start:stop`` against every key."""
        return self.tile(self.queries(start, stop), start, stop, slice(0, self.n_keys))


def product(A: torch.Tensor, B: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``A @ B.T``, into ``out`` (contiguous) when given; on the CPU through the library that
    :func:`~latentalign.functional.cpu_blas.cpu_products` chooses (numpy's BLAS takes its thread count from
    ``OPENBLAS_NUM_THREADS`` or threadpoolctl, not from ``torch.set_num_threads``).

    The numpy arrays are views of the tensors and the result is a tensor over numpy's memory: nothing is
    copied.

    Examples
    --------
    >>> import torch
    >>> product(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0], [1.0, 0.0]])).tolist()
    [[11.0, 1.0]]
    """
    if A.device.type == "cpu" and A.dtype in (torch.float32, torch.float64) and cpu_products() == "numpy":
        a, b = A.detach().numpy(), B.detach().numpy()
        if out is None:
            return torch.from_numpy(np.matmul(a, b.T))
        np.matmul(a, b.T, out=out.numpy())
        return out
    if out is None:
        return A @ B.T
    return torch.mm(A, B.T, out=out)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (the previous count is restored after).

    For small kernels (d x d factorisations, the steps of a small network): each call is too short to
    share between threads, and when another job shares the cores every kernel waits for the other thread
    at its barrier. Measured on a loaded 2-core machine: a 768 x 768 float64 SVD took 0.2 s on one thread
    and 9 s on two; a 300 x 300 ``eigh`` 0.1 s against 1 to 6 s.

    Examples
    --------
    >>> import torch
    >>> with one_torch_thread():
    ...     inside = torch.get_num_threads()
    >>> inside
    1
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def torch_threads_beside_blas(device: torch.device) -> Iterator[None]:
    """Hold torch's intra-op threads at one while numpy's BLAS multiplies the CPU tiles (restored after);
    nothing changes when torch multiplies them.

    numpy's BLAS and torch keep separate thread pools, and each pool's threads keep spinning for a while after
    its call returns: side by side on every core they take the cores from each other (an exact search on 2
    cores ran 3x slower than its products alone). The products keep all of numpy's threads; torch's light
    per-tile work (maxima, merges) runs on the calling thread.

    Examples
    --------
    >>> import torch
    >>> with torch_threads_beside_blas(torch.device("cpu")):
    ...     inside = torch.get_num_threads()
    >>> inside == (1 if cpu_products() == "numpy" else torch.get_num_threads())  # torch products: untouched
    True
    """
    previous = torch.get_num_threads()
    if not (device.type == "cpu" and cpu_products() == "numpy") or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def tile_buffer(rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """Flat storage for the tiles of one query block (``rows x cols`` scores), reused tile after tile."""
    return torch.empty(rows * cols, dtype=like.dtype, device=like.device)


def _tile_out(buffer: torch.Tensor, rows: int, width: int) -> torch.Tensor:
    return buffer[: rows * width].view(rows, width)


# --------------------------------------------------------------------------------------------------------
# Tiling
# --------------------------------------------------------------------------------------------------------
def query_blocks(n_q: int, chunk_size: int | None, least: int = 1) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of the query blocks: ``chunk_size`` rows (default :data:`QUERY_BLOCK`), but at least
    ``least``, so that the first block can fill a per-key top-``least``."""
    rows = max(chunk_size if chunk_size is not None else QUERY_BLOCK, least)
    for start in range(0, n_q, rows):
        yield start, min(n_q, start + rows)


def key_blocks(n_k: int, rows: int, least: int = 1) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of the key blocks for query blocks of ``rows`` rows: about ``TILE_ELEMENTS / rows``
    keys, a multiple of :data:`GROUP`, and at least ``least`` (so that the first tile fills a top-k)."""
    cols = max(GROUP, TILE_ELEMENTS // max(rows, 1), least)
    cols = -(-cols // GROUP) * GROUP
    for start in range(0, n_k, cols):
        yield start, min(n_k, start + cols)


# --------------------------------------------------------------------------------------------------------
# Running top-k
# --------------------------------------------------------------------------------------------------------
def merge_topk(
    vals: torch.Tensor, idx: torch.Tensor | None, S: torch.Tensor, offset: int, first: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Merge the scores ``S`` (rows x w, keys ``offset .. offset + w - 1``) into a running top-k, in place.

    ``vals`` (rows x k, decreasing) and ``idx`` (their key indices, or ``None`` when only the values are
    needed) hold the best scores so far, all of keys below ``offset``; ``first`` says they are still empty
    (then ``S`` must hold at least ``k`` finite scores per row). Among equal scores the lower index is kept.

    Examples
    --------
    >>> import torch
    >>> vals, idx = torch.full((1, 2), -float("inf")), torch.zeros(1, 2, dtype=torch.int64)
    >>> vals, idx = merge_topk(vals, idx, torch.tensor([[1.0, 3.0, 3.0]]), 0, True)
    >>> vals, idx = merge_topk(vals, idx, torch.tensor([[3.0, 2.0]]), 3, False)
    >>> vals.tolist(), idx.tolist()
    ([[3.0, 3.0]], [[1, 2]])
    """
    rows, width = S.shape
    k = vals.shape[1]
    n_groups = -(-width // GROUP)
    if n_groups * GROUP != width:
        S = F.pad(S, (0, n_groups * GROUP - width), value=-math.inf)
    groups = S.view(rows, GROUP, n_groups)  # group g holds the keys g, g + n_groups, g + 2 n_groups, ...
    best = groups.amax(1)
    if first:
        # Every group holding a score >= the tile's k-th best is gathered (ties with it included, so the
        # lowest indices win). The k-th best group maximum is a lower bound of that score: k groups reach it.
        floor = torch.topk(best if n_groups >= k else S, k, dim=1, sorted=False).values.amin(1, keepdim=True)
        selected = best >= floor
    else:  # strictly better than the k-th so far: an equal score of a later key never displaces it
        floor = vals[:, -1:]
        selected = best > floor
    hit_rows, hit_groups = selected.nonzero(as_tuple=True)
    if hit_rows.shape[0] == 0:
        return vals, idx
    # Of the gathered groups only the scores that pass the floor are merged (a few per group).
    found = groups[hit_rows, :, hit_groups]
    passed = found >= floor[hit_rows] if first else found > floor[hit_rows]
    entry, lane = passed.nonzero(as_tuple=True)
    rows_e, cols_e = hit_rows[entry], hit_groups[entry] + lane * n_groups  # cols_e: the key's place in S
    values_e = found[entry, lane]
    if idx is not None:  # each row's new keys in increasing order (see below)
        by_key = torch.argsort(rows_e * S.shape[1] + cols_e)
        rows_e, cols_e, values_e = rows_e[by_key], cols_e[by_key], values_e[by_key]
    counts = torch.bincount(rows_e, minlength=rows)
    touched = counts.nonzero().squeeze(1)
    slot = (torch.cumsum(counts > 0, 0) - 1)[rows_e]
    place = torch.arange(rows_e.shape[0], device=S.device) - (torch.cumsum(counts, 0) - counts)[rows_e]
    width_c = int(counts.max())
    buf_v = S.new_full((touched.shape[0], width_c), -math.inf)
    buf_v[slot, place] = values_e
    # on the first tile nothing is kept yet (and every row has at least k new scores)
    all_v = buf_v if first else torch.cat([vals[touched], buf_v], dim=1)
    if idx is None:
        vals[touched] = torch.topk(all_v, k, dim=1).values
        return vals, None
    buf_i = torch.full((touched.shape[0], width_c), -1, dtype=torch.int64, device=S.device)
    buf_i[slot, place] = offset + cols_e
    # The kept scores come first, ordered by decreasing score and increasing index; all their keys are
    # below offset, and the new keys follow in increasing order: a stable sort by decreasing score keeps
    # the lower index first among equal scores.
    sorted_v, order = torch.sort(all_v, dim=1, descending=True, stable=True)
    vals[touched] = sorted_v[:, :k]
    all_i = buf_i if first else torch.cat([idx[touched], buf_i], dim=1)
    idx[touched] = all_i.gather(1, order[:, :k])
    return vals, idx


def sort_ties_by_index(values: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of (values, indices) ordered by decreasing value, and by increasing index among equal values.

    Examples
    --------
    >>> import torch
    >>> v, i = sort_ties_by_index(torch.tensor([[1.0, 2.0, 2.0]]), torch.tensor([[0, 9, 4]]))
    >>> v.tolist(), i.tolist()
    ([[2.0, 2.0, 1.0]], [[4, 9, 0]])
    """
    by_index = torch.argsort(indices, dim=1)
    values, indices = values.gather(1, by_index), indices.gather(1, by_index)
    values, order = torch.sort(values, dim=1, descending=True, stable=True)
    return values, indices.gather(1, order)


def merge_column_topk(vals: torch.Tensor, S: torch.Tensor, first: bool) -> torch.Tensor:
    """Merge the scores ``S`` (rows x w) into a running top-k of the values of each COLUMN, in place.

    ``vals`` (w x k, decreasing) holds each column's best values so far; ``first`` says it is still empty
    (then ``S`` must have at least ``k`` rows). Only values are kept (the CSLS penalty is their mean), so
    the order of equal values does not matter. Works on ``S`` as it lies, without transposing it.

    Examples
    --------
    >>> import torch
    >>> vals = merge_column_topk(torch.empty(2, 1), torch.tensor([[1.0, 5.0], [2.0, 0.0]]), True)
    >>> merge_column_topk(vals, torch.tensor([[4.0, 1.0]]), False).tolist()
    [[4.0], [5.0]]
    """
    k = vals.shape[1]
    rows, width = S.shape
    n_groups = rows // GROUP
    if first and n_groups < k:
        vals.copy_(torch.topk(S, k, dim=0).values.T)
        return vals
    full = n_groups * GROUP
    groups = S[:full].view(n_groups, GROUP, width)
    best = groups.amax(1)
    if first:  # the groups holding a column's k best values: those reaching its k-th best group maximum
        vals.fill_(-math.inf)
        floor = torch.topk(best, k, dim=0, sorted=False).values.amin(0)
        hit = (best >= floor[None, :]).nonzero()
    else:
        floor = vals[:, -1]
        hit = (best > floor[None, :]).nonzero()
    if hit.shape[0]:
        _merge_column_groups(vals, groups, hit, floor, first)
    if full < rows:  # the last rows (fewer than GROUP) are merged as they are, without a padded copy
        rest = S[full:]
        cols = (rest.amax(0) > vals[:, -1]).nonzero().squeeze(1)
        if cols.numel():
            vals[cols] = torch.topk(torch.cat([vals[cols], rest[:, cols].T], dim=1), k, dim=1).values
    return vals


def _merge_column_groups(
    vals: torch.Tensor, groups: torch.Tensor, hit: torch.Tensor, floor: torch.Tensor, inclusive: bool
) -> None:
    """Merge the values above ``floor`` (per column; or equal to it, ``inclusive``) of the row groups ``hit``
    ((group, column) pairs of ``groups``) into the column top-k ``vals``."""
    k, width = vals.shape[1], groups.shape[2]
    hit_groups, hit_cols = hit[:, 0], hit[:, 1]
    found = groups[hit_groups, :, hit_cols]
    passed = found >= floor[hit_cols, None] if inclusive else found > floor[hit_cols, None]
    entry, lane = passed.nonzero(as_tuple=True)
    cols_e, values = hit_cols[entry], found[entry, lane]
    counts = torch.bincount(cols_e, minlength=width)
    touched = counts.nonzero().squeeze(1)
    # nonzero() lists hits group by group; order the values by column to find each one's place in its column
    by_col = torch.argsort(cols_e, stable=True)
    cols_e, values = cols_e[by_col], values[by_col]
    place = torch.arange(cols_e.shape[0], device=groups.device) - (torch.cumsum(counts, 0) - counts)[cols_e]
    buf = groups.new_full((touched.shape[0], int(counts.max())), -math.inf)
    buf[(torch.cumsum(counts > 0, 0) - 1)[cols_e], place] = values
    vals[touched] = torch.topk(torch.cat([vals[touched], buf], dim=1), k, dim=1).values


def _mask_self(S: torch.Tensor, start: int, stop: int, c0: int, c1: int) -> None:
    if max(start, c0) < min(stop, c1):
        rows = torch.arange(max(start, c0), min(stop, c1), device=S.device)
        S[rows - start, rows - c0] = -math.inf


def blocked_topk(
    scorer: Scorer, k: int, chunk_size: int | None = None, exclude_self: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` (scores, key indices) of every query, lower key index first among equal scores.

    Examples
    --------
    >>> import torch
    >>> scorer = Scorer.build(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0]]), "dot")
    >>> values, indices = blocked_topk(scorer, 2)
    >>> values.tolist(), indices.tolist()
    ([[2.0, 1.0]], [[2, 1]])
    """
    n_q, device = scorer.n_queries, scorer.Q.device
    values = torch.empty(n_q, k, dtype=scorer.Q.dtype, device=device)
    indices = torch.empty(n_q, k, dtype=torch.int64, device=device)
    least = k + 1 if exclude_self else k
    with torch_threads_beside_blas(device):
        for start, stop in query_blocks(n_q, chunk_size):
            Qb = scorer.queries(start, stop)
            vals = torch.full((stop - start, k), -math.inf, dtype=scorer.Q.dtype, device=device)
            idx: torch.Tensor | None = torch.full((stop - start, k), -1, dtype=torch.int64, device=device)
            spans = list(key_blocks(scorer.n_keys, stop - start, least))
            buffer = tile_buffer(stop - start, spans[0][1] - spans[0][0], Qb)
            for j, (c0, c1) in enumerate(spans):
                S = scorer.tile(Qb, start, stop, slice(c0, c1), _tile_out(buffer, stop - start, c1 - c0))
                if exclude_self:
                    _mask_self(S, start, stop, c0, c1)
                vals, idx = merge_topk(vals, idx, S, c0, j == 0)
            values[start:stop], indices[start:stop] = vals, cast(torch.Tensor, idx)
    return values, indices


class CslsPass(NamedTuple):
    """What :func:`csls_pass` finds in one pass over the cosines."""

    r_query: torch.Tensor  # (n_queries,) mean of each query's csls_k best cosines to the keys
    r_key: torch.Tensor  # (n_keys,) mean of each key's csls_k best cosines to the queries
    key_best: torch.Tensor  # (n_keys,) each key's best cosine to any query
    cand_values: torch.Tensor  # (n_queries, depth) each query's best cosines, decreasing
    cand_indices: torch.Tensor  # (n_queries, depth) their keys, lower index first among equal cosines


def csls_pass(scorer: Scorer, csls_k: int, depth: int, chunk_size: int | None = None, first_tiles: int = 1) -> CslsPass:
    """One pass over the cosine scores: CSLS penalties and each query's top-``depth`` cosine candidates.

    Returns a :class:`CslsPass`: the penalties, each key's best cosine to any query, and each query's
    ``max(depth, csls_k)`` best keys by cosine (the candidates: decreasing, lower index first among ties).
    The first tile of every query block spans ``first_tiles`` tiles' keys: its candidates then start from
    a higher floor, so fewer scores of the next tiles pass it.

    Examples
    --------
    >>> import torch
    >>> found = csls_pass(Scorer.build(torch.eye(3), torch.eye(3), "cosine"), 1, 1)
    >>> found.r_query.tolist(), found.r_key.tolist(), found.cand_indices.ravel().tolist()
    ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0, 1, 2])
    """
    n_q, n_k, device, dtype = scorer.n_queries, scorer.n_keys, scorer.Q.device, scorer.Q.dtype
    depth = max(depth, csls_k)
    cand_v = torch.empty(n_q, depth, dtype=dtype, device=device)
    cand_i = torch.empty(n_q, depth, dtype=torch.int64, device=device)
    col_v = torch.full((n_k, csls_k), -math.inf, dtype=dtype, device=device)
    with torch_threads_beside_blas(device):
        for b, (start, stop) in enumerate(query_blocks(n_q, chunk_size, least=csls_k)):
            Qb = scorer.queries(start, stop)
            vals = torch.full((stop - start, depth), -math.inf, dtype=dtype, device=device)
            idx: torch.Tensor | None = torch.full((stop - start, depth), -1, dtype=torch.int64, device=device)
            spans = list(key_blocks(n_k, stop - start, depth))
            wide = min(first_tiles, len(spans))
            spans = [(spans[0][0], spans[wide - 1][1])] + spans[wide:]
            buffer = tile_buffer(stop - start, spans[0][1] - spans[0][0], Qb)
            for j, (c0, c1) in enumerate(spans):
                S = scorer.tile(Qb, start, stop, slice(c0, c1), _tile_out(buffer, stop - start, c1 - c0))
                vals, idx = merge_topk(vals, idx, S, c0, j == 0)
                merge_column_topk(col_v[c0:c1], S, b == 0)
            cand_v[start:stop], cand_i[start:stop] = vals, cast(torch.Tensor, idx)
    return CslsPass(cand_v[:, :csls_k].mean(1), col_v.mean(1), col_v[:, 0], cand_v, cand_i)


# --------------------------------------------------------------------------------------------------------
# Counting (gold positions)
# --------------------------------------------------------------------------------------------------------
#: Scores per group reduced to one maximum before counting (:func:`_count`): ``width / COUNT_GROUP``
#: interleaved keys per group, so the maxima are an elementwise maximum of contiguous slices.
COUNT_GROUP = 32


def _count(rows: torch.Tensor, threshold: torch.Tensor, inclusive: bool) -> torch.Tensor:
    """Per row, the number of scores ``>= threshold`` (``inclusive``) or ``> threshold``.

    On the CPU the scores are first reduced to group maxima (one pass, several times cheaper than a
    comparison and a count); only the groups whose maximum reaches the threshold are compared. When the
    gold keys are near the top, that is a few groups per row; when more than a quarter of the groups
    reach it, the whole tile is counted.
    """
    width = rows.shape[1] // COUNT_GROUP * COUNT_GROUP
    if rows.device.type == "cpu" and width:
        groups = rows[:, :width].unflatten(1, (COUNT_GROUP, width // COUNT_GROUP))
        best = groups.amax(1)
        hit_rows, hit_groups = (best >= threshold if inclusive else best > threshold).nonzero(as_tuple=True)
        if hit_rows.numel() * 4 <= best.numel():
            found = groups[hit_rows, :, hit_groups]
            above = found >= threshold[hit_rows] if inclusive else found > threshold[hit_rows]
            counts = torch.zeros(rows.shape[0], dtype=torch.int64)
            counts.index_add_(0, hit_rows, above.sum(1))
            if width < rows.shape[1]:
                counts += _count_all(rows[:, width:], threshold, inclusive)
            return counts
    return _count_all(rows, threshold, inclusive)


def _count_all(rows: torch.Tensor, threshold: torch.Tensor, inclusive: bool) -> torch.Tensor:
    if rows.device.type == "cpu":
        # numpy's count_nonzero is several times faster than torch's boolean sum on the CPU (which
        # materialises the comparison as int64); both read views, nothing is copied.
        a, t = rows.numpy(), threshold.numpy()
        return torch.from_numpy(np.count_nonzero(a >= t if inclusive else a > t, axis=1).astype(np.int64))
    return (rows >= threshold).sum(1) if inclusive else (rows > threshold).sum(1)


def count_ahead(
    scorer: Scorer, gold: torch.Tensor, valid: torch.Tensor, inclusive: bool, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every query and gold key: the number of NON-gold keys scoring ``>=`` (``inclusive``) or ``>`` it.

    ``gold`` and ``valid`` are (n_queries, g) key indices and a mask of the real entries. Returns
    ``(counts, gold_scores)``; padding entries count 0 and score ``-inf``. Gold columns are left out of the
    counts, so a gold key is never compared with itself.

    Examples
    --------
    >>> import torch
    >>> scorer = Scorer.build(torch.tensor([[1.0]]), torch.tensor([[1.0], [2.0], [1.0], [0.5]]), "dot")
    >>> counts, _ = count_ahead(scorer, torch.tensor([[0]]), torch.tensor([[True]]), inclusive=True)
    >>> counts.tolist()
    [[2]]
    """
    n_q, g = gold.shape
    device = scorer.Q.device
    counts = torch.zeros(n_q, g, dtype=torch.int64, device=device)
    scores = torch.full((n_q, g), -math.inf, dtype=scorer.Q.dtype, device=device)
    with torch_threads_beside_blas(device):
        for start, stop in query_blocks(n_q, chunk_size):
            Qb = scorer.queries(start, stop)
            gi, gv = gold[start:stop], valid[start:stop]
            spans = list(key_blocks(scorer.n_keys, stop - start))
            starts = torch.tensor([c0 for c0, _ in spans], device=device)
            home = torch.searchsorted(starts, gi, right=True) - 1  # the tile of each gold key
            # Gold scores are read from the very tiles that are counted (the same product, bit for bit), so a
            # key equal to a gold key is counted as tied with it; the first few of these tiles are kept.
            kept: dict[int, torch.Tensor] = {}
            buffer = tile_buffer(stop - start, spans[0][1] - spans[0][0], Qb)  # for the tiles not kept
            for t in torch.unique(home[gv]).tolist():
                c0, c1 = spans[t]
                keep = len(kept) < KEPT_TILES
                out = None if keep else _tile_out(buffer, stop - start, c1 - c0)
                S = scorer.tile(Qb, start, stop, slice(c0, c1), out)
                r, col = (gv & (home == t)).nonzero(as_tuple=True)
                scores[start + r, col] = S[r, gi[r, col] - c0]
                if keep:
                    kept[t] = S
            gs = scores[start:stop]
            threshold = gs.masked_fill(~gv, math.inf)  # padding: nothing scores >= +inf
            block = counts[start:stop]
            for t, (c0, c1) in enumerate(spans):
                if t in kept:
                    S = kept.pop(t)
                else:
                    S = scorer.tile(Qb, start, stop, slice(c0, c1), _tile_out(buffer, stop - start, c1 - c0))
                r, col = (gv & (home == t)).nonzero(as_tuple=True)
                S[r, gi[r, col] - c0] = -math.inf  # gold keys are not counted
                for j in range(g):
                    block[:, j] += _count(S, threshold[:, j : j + 1], inclusive).to(device)
    return counts, scores
