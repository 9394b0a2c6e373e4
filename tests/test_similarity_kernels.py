"""The fast similarity kernels: float32 moments against float64 references, the n x n CKA route, the
symmetric blocked cosine k-NN search (ties to the lower index, self excluded) and input safety."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentalign.functional import cpu_blas, moments
from latentalign.functional.similarity import (
    cknna,
    linear_cka,
    mutual_knn,
    procrustes_distance,
    self_knn_cosine,
    similarity_scores,
    svcca,
    unbiased_cka,
)


def offset_pair(n: int, d_x: int, d_y: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 data whose common offset dwarfs its spread (mean ~1e3, spread ~1), partly related."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_x)) + 1000.0
    Y = (X - 1000.0) @ rng.standard_normal((d_x, d_y)) / math.sqrt(d_x) + 0.5 * rng.standard_normal((n, d_y)) - 700.0
    return X.astype(np.float32), Y.astype(np.float32)


def cka64(X: np.ndarray, Y: np.ndarray) -> float:
    """The plain numpy formula in float64."""
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    return float(np.linalg.norm(Xc.T @ Yc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)))


def procrustes64(X: np.ndarray, Y: np.ndarray) -> float:
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    nuclear = np.linalg.svd(Xc.T @ Yc, compute_uv=False).sum()
    return math.acos(min(1.0, nuclear / (np.linalg.norm(Xc) * np.linalg.norm(Yc))))


def unbiased_cka64(X: np.ndarray, Y: np.ndarray) -> float:
    """Gram form of Song et al.'s unbiased HSIC, float64 (small n only)."""

    def hsic(K: np.ndarray, L: np.ndarray) -> float:
        n = len(K)
        K, L = K.copy(), L.copy()
        np.fill_diagonal(K, 0)
        np.fill_diagonal(L, 0)
        one = np.ones(n)
        value = np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
        return (value - 2.0 / (n - 2) * one @ K @ L @ one) / (n * (n - 3))

    X, Y = X.astype(np.float64), Y.astype(np.float64)
    X, Y = X - X.mean(0), Y - Y.mean(0)  # HSIC_u is translation invariant; centring avoids the offset's cancellation
    K, L = X @ X.T, Y @ Y.T
    return hsic(K, L) / math.sqrt(hsic(K, K) * hsic(L, L))


# --------------------------------------------------------------------------------------------------------
# float32 inputs, float32 products: the values of float64 arithmetic on the same data
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "d_x", "d_y"), [(30000, 40, 24), (150, 300, 200), (60, 40, 30)])
def test_float32_cka_with_a_large_offset_matches_the_float64_formula(n, d_x, d_y):
    X, Y = offset_pair(n, d_x, d_y)
    assert linear_cka(X, Y) == pytest.approx(cka64(X, Y), rel=1e-6)
    assert linear_cka(torch.from_numpy(X), torch.from_numpy(Y)) == pytest.approx(cka64(X, Y), rel=1e-6)


def test_float32_moment_measures_with_a_large_offset_match_float64():
    X, Y = offset_pair(30000, 40, 24, seed=1)
    assert procrustes_distance(X, Y) == pytest.approx(procrustes64(X, Y), rel=1e-6)
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    assert svcca(X, Y) == pytest.approx(svcca(X64, Y64), rel=1e-6)
    assert unbiased_cka(X, Y) == pytest.approx(unbiased_cka(X64, Y64), rel=1e-6)
    small_x, small_y = offset_pair(300, 20, 12, seed=2)
    assert unbiased_cka(small_x, small_y) == pytest.approx(unbiased_cka64(small_x, small_y), rel=1e-6)


def test_gram_route_equals_the_feature_route():
    # n < d_x + d_y takes the n x n route; the d x d route on the same rows must agree (float64: to 1e-12).
    X, Y = offset_pair(50, 40, 30, seed=3)
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    feature_form = similarity_scores(X64, Y64, metrics=("linear_cka", "svcca"))["linear_cka"]
    assert linear_cka(X64, Y64) == pytest.approx(feature_form, rel=1e-12)
    assert linear_cka(X64, Y64) == pytest.approx(cka64(X, Y), rel=1e-12)


@pytest.mark.parametrize("scale", [1e25, 1e-25])
@pytest.mark.parametrize("shape", [(2000, 12, 8), (40, 30, 20)])
def test_float32_products_that_overflow_or_underflow_are_redone(scale, shape):
    X, Y = offset_pair(*shape, seed=4)
    X, Y = X - X.mean(0), Y - Y.mean(0)  # the offset cancels in the scaled data otherwise
    assert linear_cka(X * np.float32(scale), Y) == pytest.approx(linear_cka(X, Y), rel=1e-6)
    assert procrustes_distance(X, Y * np.float32(scale)) == pytest.approx(procrustes_distance(X, Y), rel=1e-6)


@pytest.mark.parametrize("shape", [(100, 3, 2), (5, 4, 6)])
def test_non_finite_inputs_still_raise_naming_the_entry(shape):
    n, d_x, d_y = shape
    X, Y = np.ones((n, d_x)), np.random.default_rng(0).standard_normal((n, d_y))
    X[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(first at row 1, column 2: nan\)"):
        linear_cka(X, Y)
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(first at row 1, column 2: nan\)"):
        svcca(X, Y)


def test_inputs_are_never_modified():
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((80, 6)) * 3.0, rng.standard_normal((80, 4))
    X0, Y0 = X.copy(), Y.copy()
    similarity_scores(X, Y, k=5)
    linear_cka(X[:5], Y[:5])
    Xt = torch.from_numpy(X.astype(np.float32))
    Xt0 = Xt.clone()
    self_knn_cosine(Xt, 4, block_rows=16)
    assert np.array_equal(X, X0) and np.array_equal(Y, Y0) and torch.equal(Xt, Xt0)


# --------------------------------------------------------------------------------------------------------
# Symmetric blocked cosine k-NN
# --------------------------------------------------------------------------------------------------------
def stable_knn(X: np.ndarray, k: int) -> np.ndarray:
    """Reference: cosine scores in float64, self last, equal scores by increasing index (stable sort)."""
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    return np.argsort(-S, axis=1, kind="stable")[:, :k]


def sign_rows(n: int, d: int, seed: int) -> np.ndarray:
    """Rows of +-1: every norm is sqrt(d), so unit rows and all their products are exact and ties are exact."""
    return np.where(np.random.default_rng(seed).random((n, d)) < 0.5, -1.0, 1.0)


@pytest.mark.parametrize("block_rows", [None, 7, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_go_to_the_lower_index_across_blocks(block_rows, dtype):
    X = sign_rows(300, 16, seed=0).astype(dtype)  # scores in steps of 1/8: many ties at every cut
    k = 12
    values, indices = self_knn_cosine(torch.from_numpy(X), k, block_rows)
    np.testing.assert_array_equal(indices.numpy(), stable_knn(X, k))
    assert values.dtype == torch.from_numpy(X).dtype
    assert bool((values[:, :-1] >= values[:, 1:]).all())


def test_mutual_knn_with_ties_and_duplicate_rows_matches_the_stable_reference():
    X = sign_rows(200, 16, seed=1)
    Y = np.vstack([X[:100], X[:100]])  # every row of Y has an exact duplicate (cosine 1)
    k = 5

    def reference(A: np.ndarray, B: np.ndarray) -> float:
        a, b = stable_knn(A, k), stable_knn(B, k)
        return float(np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(A))]))

    assert mutual_knn(X, Y, k=k) == reference(X, Y)
    assert mutual_knn(X, Y, k=k, chunk_size=13) == reference(X, Y)
    # The duplicate is found before any other row, and never the row itself.
    _, idx = self_knn_cosine(torch.from_numpy(Y), 1)
    np.testing.assert_array_equal(idx[:, 0].numpy(), np.r_[np.arange(100, 200), np.arange(100)])


@pytest.mark.parametrize("n", [2, 3, 11])
def test_every_other_row_is_a_neighbour_when_k_is_n_minus_1(n):
    X = np.random.default_rng(n).standard_normal((n, 3))
    _, idx = self_knn_cosine(torch.from_numpy(X), n - 1, block_rows=2)
    for i, row in enumerate(idx.tolist()):
        assert sorted(row) == [j for j in range(n) if j != i]


def test_block_size_changes_nothing_on_random_data():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((500, 24)).astype(np.float32)
    Y = X[:, :10] @ rng.standard_normal((10, 16)).astype(np.float32) + rng.standard_normal((500, 16)).astype(np.float32)
    whole_knn, whole_cknna = mutual_knn(X, Y, k=10), cknna(X, Y, k=10)
    for chunk in (5, 33, 499):
        assert mutual_knn(X, Y, k=10, chunk_size=chunk) == whole_knn
        # the same neighbours; their float32 cosines may differ in the last bit between GEMM shapes
        assert cknna(X, Y, k=10, chunk_size=chunk) == pytest.approx(whole_cknna, abs=1e-6)


def test_zero_row_is_refused_for_cosine():
    X = np.random.default_rng(8).standard_normal((10, 3))
    X[4] = 0.0
    with pytest.raises(ValueError, match=r"X has a zero row \(row 4\), whose cosine similarity is undefined"):
        mutual_knn(X, np.random.default_rng(9).standard_normal((10, 2)), k=3)


# --------------------------------------------------------------------------------------------------------
# CPU products in numpy's BLAS or in torch; the thresholded block search
# --------------------------------------------------------------------------------------------------------
@pytest.fixture(params=["numpy", "torch"])
def cpu_products(request, monkeypatch):
    monkeypatch.setattr(cpu_blas, "CPU_PRODUCTS", request.param)
    return request.param


def test_both_cpu_product_libraries_give_the_float64_values(cpu_products):
    X, Y = offset_pair(8000, 40, 24, seed=6)
    assert linear_cka(X, Y) == pytest.approx(cka64(X, Y), rel=1e-6)
    assert procrustes_distance(X, Y) == pytest.approx(procrustes64(X, Y), rel=1e-6)
    stats = moments.compute_stats(torch.from_numpy(X), torch.from_numpy(Y), gram=True, block_rows=3000)
    X64 = X.astype(np.float64) - X.astype(np.float64).mean(0)
    np.testing.assert_allclose(stats.gram().numpy(), X64.T @ X64, rtol=1e-6, atol=1e-6 * np.abs(X64.T @ X64).max())
    values, indices = self_knn_cosine(torch.from_numpy(sign_rows(150, 16, seed=3)), 6, block_rows=40)
    np.testing.assert_array_equal(indices.numpy(), stable_knn(sign_rows(150, 16, seed=3), 6))


@pytest.mark.parametrize(("n", "block_rows"), [(700, 200), (700, 64), (301, 100)])
def test_thresholded_search_matches_the_float64_reference(n, block_rows):
    # Widths that are and are not multiples of the 32-score chunks, a short last block, float64 scores.
    X = np.random.default_rng(n + block_rows).standard_normal((n, 12))
    _, indices = self_knn_cosine(torch.from_numpy(X), 7, block_rows)
    np.testing.assert_array_equal(indices.numpy(), stable_knn(X, 7))


def test_blocks_where_most_entries_reach_the_thresholds_fall_back_to_a_top_k():
    # 16 distinct rows of +-1, each repeated: after the diagonal blocks every threshold is 1 (a duplicate),
    # and in every other block all the row's duplicates reach it, in most 32-score chunks: more than k chunks
    # per row, so each block is reduced by a top-k; the ties go to the lower index.
    X = sign_rows(1200, 4, seed=12)
    _, indices = self_knn_cosine(torch.from_numpy(X), 3, block_rows=400)
    np.testing.assert_array_equal(indices.numpy(), stable_knn(X, 3))
