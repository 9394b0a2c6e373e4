"""The blocked retrieval engine: exact ties whatever the tiling, CSLS in one pass with its exactness bound
(adversarial hubs force the recomputation), gold counts per tile, and the same code on a torch device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _reference import brute_csls, brute_topk

from latentalign.functional import blocks
from latentalign.functional.knn_csls import csls_candidates
from latentalign.functional.retrieval import csls_knn, csls_penalties, knn, retrieval_scores


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of a few keys, so that small inputs cross many tile and group boundaries."""
    monkeypatch.setattr(blocks, "TILE_ELEMENTS", 64)
    monkeypatch.setattr(blocks, "QUERY_BLOCK", 8)


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_knn_ties_lower_index_first_across_tiles(small_tiles, metric):
    rng = np.random.default_rng(0)
    # Integer vectors with few distinct values: many exactly equal scores, across tile and group borders.
    K = rng.integers(-1, 2, size=(300, 3)).astype(np.float64)
    K[np.abs(K).sum(1) == 0] = 1.0
    Q = rng.integers(-1, 2, size=(41, 3)).astype(np.float64)
    Q[np.abs(Q).sum(1) == 0] = 1.0
    S = Q @ K.T
    if metric == "cosine":
        S = S / np.linalg.norm(Q, axis=1)[:, None] / np.linalg.norm(K, axis=1)[None, :]
        S = np.round(S, 12)  # equal cosines computed along different paths differ in the last bits
    values, indices = knn(Q, K, k=25, metric=metric, chunk_size=7)
    expected_v, expected_i = brute_topk(S, 25)
    if metric == "cosine":
        # the same cosines, and within each run of equal cosines the lowest indices, in increasing order
        np.testing.assert_allclose(values, expected_v, atol=1e-9)
        for row in range(len(Q)):
            for value in np.unique(np.round(values[row], 9)):
                got = indices[row][np.round(values[row], 9) == value]
                assert (np.diff(got) > 0).all()
        return
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_array_equal(values, expected_v)


def test_knn_exclude_self_with_duplicates_across_tiles(small_tiles):
    X = np.repeat(np.eye(4), 30, axis=0)  # 4 groups of 30 identical rows: every score ties within a group
    _, indices = knn(X, X, k=5, metric="dot", exclude_self=True)
    first = np.arange(120) // 30 * 30
    expected = np.array([[j for j in range(f, f + 6) if j != i][:5] for i, f in enumerate(first)])
    np.testing.assert_array_equal(indices, expected)


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_knn_same_with_any_tiling(small_tiles, metric):
    rng = np.random.default_rng(1)
    Q, K = rng.standard_normal((50, 16)), rng.standard_normal((333, 16))
    tiled = knn(Q, K, k=12, metric=metric)
    blocks.TILE_ELEMENTS = 2**21  # restored by monkeypatch
    whole = knn(Q, K, k=12, metric=metric)
    np.testing.assert_array_equal(tiled[1], whole[1])
    np.testing.assert_allclose(tiled[0], whole[0], rtol=1e-12)


@pytest.mark.parametrize("tiles", [False, True])
def test_csls_knn_adversarial_hubs_force_recomputation_and_match_brute_force(request, tiles):
    if tiles:
        request.getfixturevalue("small_tiles")
    rng = np.random.default_rng(2)
    Q = rng.standard_normal((120, 10))
    K = rng.standard_normal((400, 10))
    K[7] = Q.mean(0) * 50  # a hub: near every query, so its r_Q is huge and CSLS pushes it down
    K[100:140] = -Q[:40] + 0.01 * rng.standard_normal((40, 10))  # far from most queries: very negative r_Q
    K[200:230] = K[200]  # exact duplicates: equal CSLS scores
    S = brute_csls(Q, K, csls_k=5)
    expected_v, expected_i = brute_topk(S, 6)
    # the bound that decides whether a row's candidates settle it: some rows must fail it
    scorer = blocks.Scorer.build(torch.from_numpy(Q), torch.from_numpy(K), "cosine")
    bound = csls_candidates(scorer, 5, 2 * 6 + 16).bound
    assert (bound.numpy() >= expected_v[:, -1]).any()
    values, indices = csls_knn(Q, K, k=6, csls_k=5)
    np.testing.assert_allclose(values, expected_v, atol=1e-12)
    ties = np.isclose(expected_v[:, None, :], expected_v[:, :, None], atol=1e-12).sum(1) > 1
    np.testing.assert_array_equal(np.where(ties, 0, indices), np.where(ties, 0, expected_i))


def test_csls_knn_ties_with_duplicate_keys_lower_index_first():
    K = np.repeat(np.eye(3), 4, axis=0)  # keys 0-3, 4-7, 8-11 identical: equal CSLS within each group
    Q = np.eye(3) + 0.1
    _, indices = csls_knn(Q, K, k=5, csls_k=2)
    S = brute_csls(Q, K, 2)
    np.testing.assert_array_equal(indices, brute_topk(np.round(S, 12), 5)[1])


def test_csls_penalties_one_pass_match_brute_force(small_tiles):
    rng = np.random.default_rng(3)
    Q, K = rng.standard_normal((37, 6)), rng.standard_normal((90, 6))
    r_q, r_k = csls_penalties(Q, K, k=4)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    Kn = K / np.linalg.norm(K, axis=1, keepdims=True)
    C = Qn @ Kn.T
    np.testing.assert_allclose(r_q, -np.sort(-C, axis=1)[:, :4].mean(1), atol=1e-12)
    np.testing.assert_allclose(r_k, -np.sort(-C, axis=0)[:4].mean(0), atol=1e-12)


# float32 only: float64 matrix products (MKL dgemm) may round equal columns differently by their place in
# the tile, so exact copies are then ties only up to the last bit.
@pytest.mark.parametrize("dtype", [np.float32])
@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_ranks_with_duplicates_of_the_gold_key(monkeypatch, dtype, ties):
    monkeypatch.setattr(blocks, "TILE_ELEMENTS", 2**12)  # tiles of 208 keys for 20 queries
    rng = np.random.default_rng(4)
    K = rng.standard_normal((1000, 12)).astype(dtype)
    K[np.arange(150, 1000, 85)] = K[3]  # ten exact copies of key 3, in other tiles
    Q = (K[3] + 0.5 * rng.standard_normal((20, 12))).astype(dtype)
    gold = np.full(20, 3)
    got = retrieval_scores(Q, K, gold=gold, k=(1, 11), ties=ties)
    # the copies score exactly like the gold key: pessimistic puts all ten ahead, optimistic none
    Sd = (Q.astype(np.float64) / np.linalg.norm(Q.astype(np.float64), axis=1, keepdims=True)) @ (
        K.astype(np.float64) / np.linalg.norm(K.astype(np.float64), axis=1, keepdims=True)
    ).T
    others = np.delete(Sd, list(range(150, 1000, 85)) + [3], axis=1)
    ahead = (others > Sd[:, 3:4] + 1e-6).sum(1)
    expected = ahead + (11 if ties == "pessimistic" else 1)
    assert got["mean_rank"] == pytest.approx(expected.mean())


def test_ranks_several_gold_keys_across_tiles_match_brute_force(small_tiles):
    rng = np.random.default_rng(5)
    Q = rng.integers(-2, 3, size=(33, 4)).astype(np.float64)
    K = rng.integers(-2, 3, size=(150, 4)).astype(np.float64)
    gold = [set(rng.choice(150, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(33)]
    S = Q @ K.T
    for ties in ("pessimistic", "optimistic"):
        got = retrieval_scores(Q, K, gold=gold, k=(1, 5), metric="dot", ties=ties)
        best = []
        for i, g in enumerate(gold):
            positions = []
            for t in g:
                non_gold = [j for j in range(150) if j not in g]
                ahead = (S[i, non_gold] >= S[i, t]).sum() if ties == "pessimistic" else (S[i, non_gold] > S[i, t]).sum()
                golds_before = sum(
                    1
                    for u in g
                    if u != t and (S[i, u] > S[i, t] or (S[i, u] == S[i, t] and (ties == "pessimistic") == (u < t)))
                )
                positions.append(ahead + golds_before + 1)
            best.append(min(positions))
        assert got["mean_rank"] == pytest.approx(np.mean(best))


def test_blocked_engine_on_a_torch_device_argument(small_tiles):
    """The GPU path is this torch code; here it runs on whatever device is available."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(6)
    Q = torch.randn(30, 8, generator=gen, dtype=torch.float64).to(device)
    K = torch.randn(120, 8, generator=gen, dtype=torch.float64).to(device)
    values, indices = knn(Q, K, k=9, metric="dot")
    assert values.device.type == device and indices.device.type == device
    expected_v, expected_i = brute_topk((Q @ K.T).cpu().numpy(), 9)
    np.testing.assert_array_equal(indices.cpu().numpy(), expected_i)
    c_values, c_indices = csls_knn(Q, K, k=3, csls_k=4)
    np.testing.assert_array_equal(
        c_indices.cpu().numpy(), brute_topk(brute_csls(Q.cpu().numpy(), K.cpu().numpy(), 4), 3)[1]
    )
    scores = retrieval_scores(Q, K, gold=torch.arange(30), k=(1,), metric="dot")
    S = (Q @ K.T).cpu().numpy()
    assert scores["mean_rank"] == pytest.approx(((S >= S[np.arange(30), np.arange(30)][:, None]).sum(1)).mean())


@pytest.mark.parametrize("first_tiles", [2, 3, 1000])
def test_csls_pass_with_a_wide_first_tile_is_the_same_pass(small_tiles, first_tiles):
    # Unit rows with entries 0, +-0.5 or +-1: every cosine (0, +-0.5, +-1) is exact whatever the BLAS and the
    # shape of its product, so the many exact ties span the border of the wide first span and the next tiles.
    rng = np.random.default_rng(5)
    halves = 0.5 * np.array(np.meshgrid(*[[-1.0, 1.0]] * 4)).reshape(4, -1).T
    rows = np.concatenate([halves, np.eye(4), -np.eye(4)]).astype(np.float32)
    Q = torch.from_numpy(rows[rng.integers(0, len(rows), size=45)])
    K = torch.from_numpy(rows[rng.integers(0, len(rows), size=230)])
    scorer = blocks.Scorer(Q, K, "unit")
    narrow = blocks.csls_pass(scorer, 3, 9, chunk_size=10)
    wide = blocks.csls_pass(scorer, 3, 9, chunk_size=10, first_tiles=first_tiles)
    for a, b in zip(narrow, wide):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    C = Q.double() @ K.double().T
    np.testing.assert_allclose(wide.r_key, C.topk(3, dim=0).values.mean(0), rtol=1e-7)  # a float32 mean
    np.testing.assert_array_equal(wide.key_best, C.amax(0))
