"""The retrieval kernels at full speed: CPU products through numpy's BLAS or torch's (same answers), key groups
dealt across the tile with ties settled exactly, column top-k with a remainder of rows, and CSLS ranks read
from one pass (settled rows) or recounted (the others), against float64 brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _reference import brute_csls, brute_topk

from latentalign.functional import blocks, cpu_blas
from latentalign.functional.knn_csls import candidate_depth, csls_candidates, outside_bound
from latentalign.functional.retrieval import csls_knn, csls_penalties, knn, retrieval_scores


@pytest.fixture
def medium_tiles(monkeypatch):
    """Query blocks of 40 rows and tiles of 112 keys (7 groups of 16): the first tile of a block selects
    its groups by the k-th best group maximum, and 40 rows leave a remainder of 8 below a group of 16."""
    monkeypatch.setattr(blocks, "TILE_ELEMENTS", 40 * 112)
    monkeypatch.setattr(blocks, "QUERY_BLOCK", 40)


@pytest.fixture(params=["numpy", "torch"], ids=["numpy-blas", "torch-blas"])
def blas(request, monkeypatch):
    monkeypatch.setattr(cpu_blas, "CPU_PRODUCTS", request.param)
    return request.param


def brute_best_positions(S: np.ndarray, gold: list[set[int]], ties: str) -> np.ndarray:
    """Best 1-based position of a gold key per row: non-gold keys scoring >= (pessimistic) or > it ahead,
    gold keys ahead by score, equal gold keys in index order (pessimistic) or after (optimistic)."""
    best = []
    for i, keys in enumerate(gold):
        non_gold = np.array([j for j in range(S.shape[1]) if j not in keys])
        positions = []
        for t in keys:
            s = S[i, t]
            ahead = (S[i, non_gold] >= s).sum() if ties == "pessimistic" else (S[i, non_gold] > s).sum()
            golds = sum(
                1 for u in keys if u != t and (S[i, u] > s or (S[i, u] == s and (ties == "pessimistic") == (u < t)))
            )
            positions.append(ahead + golds + 1)
        best.append(min(positions))
    return np.array(best, float)


def test_numpy_and_torch_products_give_the_same_neighbours_and_ranks(medium_tiles, monkeypatch):
    rng = np.random.default_rng(0)
    Q = rng.integers(-2, 3, size=(90, 6)).astype(np.float32)  # integer scores: exact in any BLAS, many ties
    K = rng.integers(-2, 3, size=(700, 6)).astype(np.float32)
    Qr, Kr = rng.standard_normal((90, 24)).astype(np.float32), rng.standard_normal((700, 24)).astype(np.float32)
    gold = rng.integers(0, 700, size=90)
    results = {}
    for switch in ("numpy", "torch"):
        monkeypatch.setattr(cpu_blas, "CPU_PRODUCTS", switch)
        results[switch] = (
            knn(Q, K, k=12, metric="dot"),
            retrieval_scores(Q, K, gold=gold, k=(1, 10), metric="dot"),
            knn(Qr, Kr, k=12),
            csls_knn(Qr, Kr, k=5, csls_k=4),
            retrieval_scores(Qr, Kr, gold=gold, k=(1, 10), csls=True, csls_k=4),
        )
    (dot_n, ranks_n, cos_n, csls_n, csls_ranks_n), (dot_t, ranks_t, cos_t, csls_t, csls_ranks_t) = results.values()
    np.testing.assert_array_equal(dot_n[1], dot_t[1])
    np.testing.assert_array_equal(dot_n[0], dot_t[0])
    assert ranks_n == ranks_t
    np.testing.assert_array_equal(cos_n[1], cos_t[1])  # random data: no near-ties within the last bit
    np.testing.assert_allclose(cos_n[0], cos_t[0], rtol=1e-6)
    np.testing.assert_array_equal(csls_n[1], csls_t[1])
    np.testing.assert_allclose(csls_n[0], csls_t[0], atol=1e-6)
    assert csls_ranks_n == pytest.approx(csls_ranks_t, abs=1e-12)
    expected = brute_topk((Q.astype(np.float64) @ K.T.astype(np.float64)), 12)
    np.testing.assert_array_equal(dot_n[1], expected[1])


@pytest.mark.parametrize("k", [3, 7])
def test_first_tile_group_floor_keeps_every_tie_of_the_kth_score(medium_tiles, blas, k):
    # 7 groups per tile >= k: the first tile is filtered by the k-th best group maximum. Keys of few
    # distinct values put many equal scores at the k-th place, spread over groups dealt across the tile.
    rng = np.random.default_rng(1)
    K = rng.integers(0, 2, size=(500, 3)).astype(np.float64)
    Q = rng.integers(0, 2, size=(45, 3)).astype(np.float64)
    values, indices = knn(Q, K, k=k, metric="dot")
    expected_v, expected_i = brute_topk(Q @ K.T, k)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_array_equal(values, expected_v)
    _, excluded = knn(K[:300], K[:300], k=k, metric="dot", exclude_self=True)
    S = K[:300] @ K[:300].T
    np.fill_diagonal(S, -np.inf)
    np.testing.assert_array_equal(excluded, brute_topk(S, k)[1])


def test_column_topk_with_groups_and_a_remainder_of_rows(medium_tiles, blas):
    # 150 queries: blocks of 40, 40, 40, 30 rows (2 groups of 16 + 8, 1 group + 14): column top-2 from the
    # group floor on the first block, then merged groups and remainders.
    rng = np.random.default_rng(2)
    Q, K = rng.standard_normal((150, 8)), rng.standard_normal((230, 8))
    Q[60:70] = Q[60]  # equal values in one column: the order of equal values does not matter
    r_q, r_k = csls_penalties(Q, K, k=2)
    C = (Q / np.linalg.norm(Q, axis=1, keepdims=True)) @ (K / np.linalg.norm(K, axis=1, keepdims=True)).T
    np.testing.assert_allclose(r_q, -np.sort(-C, axis=1)[:, :2].mean(1), atol=1e-12)
    np.testing.assert_allclose(r_k, -np.sort(-C, axis=0)[:2].mean(0), atol=1e-12)


def planted(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Queries near their gold key, a few far from it, a hub and a block of exact duplicate keys."""
    rng = np.random.default_rng(seed)
    K = rng.standard_normal((400, 10))
    gold = rng.permutation(400)[:120]
    Q = K[gold] + 0.3 * rng.standard_normal((120, 10))
    Q[:15] = rng.standard_normal((15, 10))  # lost queries: the gold key is far down, outside the candidates
    K[7] = Q.mean(0) * 50  # a hub near every query
    K[200:230] = K[200]  # exact duplicates: equal CSLS scores
    return Q, K, gold


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_csls_ranks_from_one_pass_and_recounts_match_brute_force(blas, ties):
    Q, K, gold = planted(3)
    scorer = blocks.Scorer.build(torch.from_numpy(Q), torch.from_numpy(K), "cosine")
    found = csls_candidates(scorer, 5, candidate_depth(10, 5, 400))
    gold_scores = found.scores.gather(
        1, (found.indices == torch.from_numpy(gold)[:, None]).to(torch.int8).argmax(1)[:, None]
    )
    listed = (found.indices == torch.from_numpy(gold)[:, None]).any(1)
    settled = listed & (gold_scores[:, 0] > found.bound)
    assert 0 < int(settled.sum()) < 120  # both paths are taken: read from the candidates, and recounted
    S = brute_csls(Q, K, 5)
    got = retrieval_scores(Q, K, gold=gold, k=(1, 10), csls=True, csls_k=5, ties=ties)
    best = brute_best_positions(S, [{int(g)} for g in gold], ties)
    assert got["mean_rank"] == pytest.approx(best.mean())
    assert got["recall@10"] == pytest.approx((best <= 10).mean())


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_csls_ranks_with_copies_of_the_gold_key_and_several_gold_keys(ties):
    # One-hot style data: exactly representable cosines, so copies of a key tie exactly with it.
    K = np.repeat(np.eye(4), 5, axis=0)  # keys 0-4, 5-9, 10-14, 15-19: identical within each group
    Q = np.eye(4) + 0.05
    gold = [{0}, {5, 6}, {12}, {19, 3}]
    S = brute_csls(Q, K, 2)
    got = retrieval_scores(Q, K, gold=gold, k=(1, 3), csls=True, csls_k=2, ties=ties)
    best = brute_best_positions(np.round(S, 12), gold, ties)
    assert got["mean_rank"] == pytest.approx(best.mean())
    # pessimistic: the 4 copies of a single gold key rank ahead of it; optimistic: none
    assert best[0] == (5 if ties == "pessimistic" else 1)


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_gold_counts_from_group_maxima_and_whole_tiles_match_brute_force(monkeypatch, ties):
    # Tiles of 80 keys: two groups of 32 plus a remainder of 16 columns counted directly. Integer scores tie
    # often. The first block of queries has its gold keys near the top (few groups reach them: counted from
    # the maxima), the second at the bottom (most groups reach them: the whole tile is counted).
    monkeypatch.setattr(blocks, "TILE_ELEMENTS", 30 * 80)
    monkeypatch.setattr(blocks, "QUERY_BLOCK", 30)
    rng = np.random.default_rng(4)
    K = rng.integers(-3, 4, size=(500, 8)).astype(np.float32)
    K[:100:7] = K[100]  # copies of one key: exact ties with a gold key
    gold = rng.integers(0, 500, size=60)
    gold[::5] = 100
    Q = K[gold] * 2
    Q[30:] = -K[gold[30:]]
    S = Q.astype(np.float64) @ K.T.astype(np.float64)
    expected = brute_best_positions(S, [{int(g)} for g in gold], ties)
    assert (expected[:30] <= 20).all() and (expected[30:] > 250).all()  # both paths are taken
    got = retrieval_scores(Q, K, gold=gold, k=(1, 10), metric="dot", ties=ties)
    assert got["mean_rank"] == pytest.approx(expected.mean())
    assert got["recall@10"] == pytest.approx((expected <= 10).mean())


def test_outside_bound_holds_for_every_key_left_out_and_settles_more_rows():
    # Anti-hubs (keys far from every query: the lowest penalties, and low best cosines) loosen the simple
    # bound 2 cos_last - r_query - min r_key; the bound by each key's best cosine takes them into account.
    rng = np.random.default_rng(7)
    K = rng.standard_normal((1500, 16))
    Q = K[rng.permutation(1500)[:300]] + 0.8 * rng.standard_normal((300, 16))
    K[:40] = -Q.mean(0) + 0.05 * rng.standard_normal((40, 16))
    scorer = blocks.Scorer.build(torch.from_numpy(Q), torch.from_numpy(K), "cosine")
    found = blocks.csls_pass(scorer, 5, 12)
    cos_last = found.cand_values[:, -1]
    bound = outside_bound(cos_last, found.r_query, found.r_key, found.key_best).numpy()
    simple = (2 * cos_last - found.r_query - found.r_key.min()).numpy()
    S = brute_csls(Q, K, 5)
    left_out = S.copy()
    np.put_along_axis(left_out, found.cand_indices.numpy(), -np.inf, axis=1)
    assert (left_out.max(1) <= bound).all()
    assert (bound <= simple).all()
    kth = brute_topk(S, 5)[0][:, -1]
    settled, settled_simple = int((bound < kth).sum()), int((simple < kth).sum())
    assert settled_simple < settled < 300  # tighter, and some rows are still recounted
    values, indices = csls_knn(Q, K, k=5, csls_k=5)
    np.testing.assert_allclose(values, brute_topk(S, 5)[0], atol=1e-12)
    np.testing.assert_array_equal(indices, brute_topk(S, 5)[1])


def test_outside_bound_with_every_key_on_one_side_of_the_last_candidate():
    r_query, r_key = torch.tensor([0.3, 0.3]), torch.tensor([0.2, 0.4, 0.1])
    key_best = torch.tensor([0.5, 0.9, 0.2])
    # query 0: every key's best is above its last candidate cosine 0.1; query 1: every key's best is below 0.95
    bound = outside_bound(torch.tensor([0.1, 0.95]), r_query, r_key, key_best)
    expected = [2 * 0.1 - 0.1 - 0.3, max(2 * 0.5 - 0.2, 2 * 0.9 - 0.4, 2 * 0.2 - 0.1) - 0.3]
    np.testing.assert_allclose(bound, expected, atol=1e-5)
