"""Exact CSLS retrieval from one pass over the cosines: the top-k keys and the ranks of gold keys.

CSLS (``2 cos(q, k) - r_K(q) - r_Q(k)``) needs both penalties before any score is known, which would take
two passes over the ``n_queries x n_keys`` cosines. :func:`~latentalign.functional.blocks.csls_pass` takes
one: it returns the penalties, each key's best cosine to any query and each query's ``depth`` best keys by
cosine (the *candidates*). A key ``y`` outside the candidates of ``q`` has ``cos(q, y) <= cos_depth(q)`` (the
last candidate's cosine) and ``cos(q, y) <= best(y)`` (its best cosine to any query), so its CSLS is at most

    ``bound(q) = max over keys y of [2 min(cos_depth(q), best(y)) - r_Q(y)] - r_K(q)``

(:func:`outside_bound`; the maximum over all keys is found for every query at once by sorting the keys by
their best cosine). Every score that beats ``bound`` is therefore among the candidates, and what is read
from them is exact, ties included:

* top-k (:func:`csls_topk`): a query whose k-th best candidate CSLS beats ``bound`` is settled;
* ranks (:func:`csls_counts`): a gold key whose CSLS beats ``bound`` has every key that could rank ahead
  of it among the candidates, so they are counted there.

Only the queries left unsettled (weak retrieval: the gold key far down, or keys with very different
penalties) are scored against every key again, with the penalties known. The candidate scores are
computed with the operations of :meth:`~latentalign.functional.blocks.Scorer.tile`, in its order, from
the same cosines, so they equal the scores of a full second pass bit for bit.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from latentalign.functional import blocks
from latentalign.functional.blocks import Scorer, blocked_topk, count_ahead, csls_pass, sort_ties_by_index

__all__ = [
    "CslsCandidates",
    "candidate_depth",
    "csls_candidates",
    "outside_bound",
    "csls_block_rows",
    "csls_topk",
    "csls_counts",
    "MATCH_ELEMENTS",
    "CSLS_ROWS_FACTOR",
    "CSLS_FIRST_TILES",
]

#: Largest (queries x candidates x gold keys) comparison table held at once when ranks are read.
MATCH_ELEMENTS = 2**22
#: Query rows per block of the one pass, as a multiple of :data:`~latentalign.functional.blocks.QUERY_BLOCK`
#: (when ``chunk_size`` is not given). The tiles keep their size, so they are half as wide. The per-key
#: top-``csls_k`` starts from the first block's rows and each row's candidates from its first tile: with
#: more rows the keys' running thresholds start higher and fewer later scores pass them, which outweighs
#: the rows' deeper start. Measured: 1.32x plain kNN with 1,024 rows, 1.20x with 2,048, 1.26x with 4,096
#: (8,192 x 20,000 x 768 float32, 2 threads).
CSLS_ROWS_FACTOR = 2
#: Tiles' worth of keys in the first tile of every query block (``first_tiles`` of
#: :func:`~latentalign.functional.blocks.csls_pass`): the candidates start from the ``depth``-th best group
#: maximum of 4 tiles instead of 1, a higher floor that fewer scores of the next tiles pass. Measured (8,192
#: x 20,000 x 768 float32, CPU time of the merges): 0.89 s with 1 tile, 0.68 s with 4, 0.62 s with 8; 4
#: holds 32 MiB of scores at the default sizes.
CSLS_FIRST_TILES = 4


def csls_block_rows(chunk_size: int | None) -> int:
    """Query rows per block of the CSLS pass: ``chunk_size`` when given, else :data:`CSLS_ROWS_FACTOR`
    times :data:`~latentalign.functional.blocks.QUERY_BLOCK`.

    Examples
    --------
    >>> csls_block_rows(None) == CSLS_ROWS_FACTOR * blocks.QUERY_BLOCK, csls_block_rows(100)
    (True, 100)
    """
    return chunk_size if chunk_size is not None else CSLS_ROWS_FACTOR * blocks.QUERY_BLOCK


class CslsCandidates(NamedTuple):
    """What one pass gives: the penalties, each query's candidates and the bound on the other keys."""

    r_query: torch.Tensor  # (n_queries,) mean of each query's csls_k best cosines
    r_key: torch.Tensor  # (n_keys,) mean of each key's csls_k best cosines
    indices: torch.Tensor  # (n_queries, depth) candidate keys, by decreasing cosine
    scores: torch.Tensor  # (n_queries, depth) their CSLS scores
    bound: torch.Tensor  # (n_queries,) no key outside the candidates scores above it
    complete: bool  # the candidates are all the keys


def candidate_depth(k: int, csls_k: int, n_keys: int) -> int:
    """The number of cosine candidates kept per query for a CSLS top-``k``: ``2 k + 16``, at least
    ``csls_k``, at most ``n_keys`` (enough for the bound to settle almost every row of real data).

    Examples
    --------
    >>> candidate_depth(10, 10, 10_000), candidate_depth(10, 50, 10_000), candidate_depth(10, 10, 20)
    (36, 50, 20)
    """
    return min(n_keys, max(csls_k, 2 * k + 16))


def csls_candidates(scorer: Scorer, csls_k: int, depth: int, chunk_size: int | None = None) -> CslsCandidates:
    """One pass over the cosines of ``scorer`` (metric cosine): penalties, candidates and their bound.

    ``chunk_size`` is the number of query rows per block (default :func:`csls_block_rows`).

    Examples
    --------
    >>> import torch
    >>> found = csls_candidates(Scorer.build(torch.eye(3), torch.eye(3), "cosine"), 1, 2)
    >>> found.indices[:, 0].tolist(), found.scores[:, 0].tolist(), found.bound.tolist()
    ([0, 1, 2], [0.0, 0.0, 0.0], [-2.0, -2.0, -2.0])
    """
    found = csls_pass(scorer, csls_k, depth, csls_block_rows(chunk_size), CSLS_FIRST_TILES)
    r_q, r_k, cand_v, cand_i = found.r_query, found.r_key, found.cand_values, found.cand_indices
    scores = cand_v.mul(2.0).sub_(r_q[:, None]).sub_(r_k[cand_i])  # the operations of Scorer.tile, in its order
    bound = outside_bound(cand_v[:, -1], r_q, r_k, found.key_best)
    return CslsCandidates(r_q, r_k, cand_i, scores, bound, cand_i.shape[1] >= scorer.n_keys)


#: Slack added to the bound computed in float64, in units of the scores' machine epsilon: it covers the
#: rounding of the CSLS scores themselves (two subtractions, scores of magnitude at most 4) and of the
#: bound's own arithmetic, with a wide margin (16 units in the last place at magnitude 4).
BOUND_SLACK = 64


def outside_bound(
    cos_last: torch.Tensor, r_query: torch.Tensor, r_key: torch.Tensor, key_best: torch.Tensor
) -> torch.Tensor:
    """Per query, a score that no key outside its candidates exceeds in CSLS.

    ``cos_last`` is each query's last candidate cosine, ``r_query`` and ``r_key`` the penalties and
    ``key_best`` each key's best cosine to any query. A key ``y`` outside the candidates of ``q`` scores at
    most ``2 min(cos_last(q), key_best(y)) - r_query(q) - r_key(y)``; the maximum over ``y`` is, with the keys
    sorted by ``key_best``, the larger of a prefix maximum of ``2 key_best - r_key`` (keys whose best is at
    most ``cos_last``) and ``2 cos_last`` plus a suffix maximum of ``-r_key`` (the others). It is computed in
    float64 with :data:`BOUND_SLACK` added, and never looser than ``2 cos_last - r_query - min r_key``
    (computed with the scores' own operations, exact by the monotonicity of rounding). Key penalties
    spread wide (hubs and anti-hubs) loosen that simple form; the keys with the lowest penalties usually
    have low best cosines too, which this one takes into account.

    Examples
    --------
    >>> import torch
    >>> cos_last, r_query = torch.tensor([0.5]), torch.tensor([0.6])
    >>> r_key, key_best = torch.tensor([0.7, 0.1]), torch.tensor([0.9, 0.2])
    >>> round(float(outside_bound(cos_last, r_query, r_key, key_best)[0]), 4)  # max(1 - 0.7, 0.4 - 0.1) - 0.6
    -0.3
    """
    simple = cos_last.mul(2.0).sub_(r_query).sub_(r_key.min())
    order = torch.argsort(key_best)
    best = key_best[order].to(torch.float64)
    penalty = r_key[order].to(torch.float64)
    below = torch.cummax(2.0 * best - penalty, 0).values  # keys whose best cosine is at most cos_last
    above = torch.flip(torch.cummax(torch.flip(-penalty, (0,)), 0).values, (0,))  # the others
    last = cos_last.to(torch.float64).contiguous()
    split = torch.searchsorted(best, last, right=True)  # keys [0, split) have key_best <= cos_last
    none = torch.tensor(-math.inf, dtype=torch.float64, device=last.device)
    from_below = torch.where(split > 0, below[(split - 1).clamp(min=0)], none)
    from_above = torch.where(split < best.shape[0], 2.0 * last + above[split.clamp(max=best.shape[0] - 1)], none)
    slack = BOUND_SLACK * torch.finfo(cos_last.dtype).eps
    tight = torch.maximum(from_below, from_above) - r_query.to(torch.float64) + slack
    return torch.minimum(simple, tight.to(cos_last.dtype))


def _with_penalties(scorer: Scorer, found: CslsCandidates) -> Scorer:
    scorer.q_pen, scorer.k_pen = found.r_query, found.r_key
    return scorer


def csls_topk(
    Q: torch.Tensor, K: torch.Tensor, k: int, csls_k: int, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact CSLS top-``k`` (scores, key indices) of validated tensors, lower key index first among ties.

    Examples
    --------
    >>> import torch
    >>> values, indices = csls_topk(torch.eye(3) + 0.1, torch.eye(3), 1, 1)
    >>> indices.ravel().tolist()
    [0, 1, 2]
    """
    scorer = Scorer.build(Q, K, "cosine")
    found = csls_candidates(scorer, csls_k, candidate_depth(k, csls_k, K.shape[0]), chunk_size)
    top_v, top_i = sort_ties_by_index(found.scores, found.indices)
    values, indices = top_v[:, :k].contiguous(), top_i[:, :k].contiguous()
    if not found.complete:
        unsettled = (found.bound >= values[:, -1]).nonzero().squeeze(1)
        if unsettled.numel():
            rows = _with_penalties(scorer, found).subset(unsettled)
            values[unsettled], indices[unsettled] = blocked_topk(rows, k, chunk_size)
    return values, indices


def csls_counts(
    scorer: Scorer,
    gold: torch.Tensor,
    valid: torch.Tensor,
    inclusive: bool,
    csls_k: int,
    k: int,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~latentalign.functional.blocks.count_ahead` for CSLS scores, from one pass where it can.

    ``scorer`` scores cosines (no penalties yet); ``gold`` and ``valid`` are (n_queries, g) key indices
    and the mask of real entries; ``k`` is the largest cut-off asked for (it sizes the candidate lists).
    Returns ``(counts, gold_scores)``: for every query and gold key the number of NON-gold keys whose CSLS
    is ``>=`` (``inclusive``) or ``>`` the gold key's, and that CSLS; padding entries count 0 and score
    ``-inf``.

    Examples
    --------
    >>> import torch
    >>> scorer = Scorer.build(torch.eye(2), torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]]), "cosine")
    >>> counts, _ = csls_counts(scorer, torch.tensor([[1], [2]]), torch.ones(2, 1, dtype=torch.bool), True, 1, 1)
    >>> counts.ravel().tolist()
    [1, 0]
    """
    n_q, g = gold.shape
    found = csls_candidates(scorer, csls_k, candidate_depth(k, csls_k, scorer.n_keys), chunk_size)
    counts = torch.zeros(n_q, g, dtype=torch.int64, device=gold.device)
    gold_scores = torch.full((n_q, g), -math.inf, dtype=found.scores.dtype, device=gold.device)
    settled = torch.empty(n_q, dtype=torch.bool, device=gold.device)
    step = max(1, MATCH_ELEMENTS // (found.indices.shape[1] * g))
    for start in range(0, n_q, step):
        rows = slice(start, min(n_q, start + step))
        counts[rows], gold_scores[rows], settled[rows] = _read_counts(found, rows, gold[rows], valid[rows], inclusive)
    unsettled = (~settled).nonzero().squeeze(1)
    if unsettled.numel():
        rest = _with_penalties(scorer, found).subset(unsettled)
        counts[unsettled], gold_scores[unsettled] = count_ahead(
            rest, gold[unsettled], valid[unsettled], inclusive, chunk_size
        )
    return counts, gold_scores


def _read_counts(
    found: CslsCandidates, rows: slice, gold: torch.Tensor, valid: torch.Tensor, inclusive: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Counts and gold scores of some queries read from their candidates, and which of them are exact."""
    scores = found.scores[rows]
    match = (found.indices[rows][:, :, None] == gold[:, None, :]) & valid[:, None, :]  # (rows, depth, g)
    listed = match.any(1)
    gold_scores = scores.gather(1, match.to(torch.int8).argmax(1)).masked_fill(~valid, -math.inf)
    others = scores.masked_fill(match.any(2), -math.inf)  # non-gold candidates
    if inclusive:
        ahead = (others[:, :, None] >= gold_scores[:, None, :]).sum(1)
    else:
        ahead = (others[:, :, None] > gold_scores[:, None, :]).sum(1)
    exact = listed if found.complete else listed & (gold_scores > found.bound[rows, None])
    return ahead.masked_fill(~valid, 0), gold_scores, (exact | ~valid).all(1)
