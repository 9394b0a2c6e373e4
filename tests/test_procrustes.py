"""Procrustes: functional core, streamed statistics and the estimator.

Planted truth (Y = s X Q + t with a random orthogonal Q), scipy.linalg.orthogonal_procrustes on the same
(centred) inputs, the zero-padding equivalence for different dimensions, and partial_fit == fit.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import latentalign
from latentalign.align import make_aligner
from latentalign.align.procrustes import Procrustes
from latentalign.exceptions import NotFittedError
from latentalign.functional.moments import CrossStats, compute_stats
from latentalign.functional.procrustes import (
    orthogonal_procrustes,
    procrustes_from_stats,
)
from latentalign.functional.procrustes import procrustes_residual as procrustes_distance


def orthogonal(d: int, seed: int = 0) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def planted(n=300, d=12, *, seed=0, noise=0.0, scale=1.0, shift=0.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.linspace(0.5, 2.0, d) + 3.0
    Q = orthogonal(d, seed + 1)
    Y = scale * X @ Q + shift + noise * rng.standard_normal((n, d))
    return X.astype(dtype), Y.astype(dtype), Q


def as_backend(backend, *arrays):
    return [torch.from_numpy(a) if backend == "torch" else a for a in arrays]


def to_numpy(a):
    return a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


# -- functional ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_planted_rotation_is_recovered(backend, dtype):
    X, Y, Q = planted(dtype=dtype)
    X, Y = as_backend(backend, X, Y)
    R, s = orthogonal_procrustes(X, Y)
    assert type(R) is type(X) and R.dtype == X.dtype and R.shape == (12, 12)
    assert s == 1.0
    np.testing.assert_allclose(to_numpy(R), Q, atol=1e-5 if dtype == np.float32 else 1e-10)


def test_planted_scale_and_translation_are_recovered():
    X, Y, Q = planted(scale=2.5, shift=np.arange(12) - 4.0)
    R, s = orthogonal_procrustes(X, Y, scale=True)
    np.testing.assert_allclose(R, Q, atol=1e-10)
    assert s == pytest.approx(2.5, rel=1e-12)
    aligner = Procrustes(scale=True).fit(X, Y)
    np.testing.assert_allclose(aligner.mean_y_.numpy(), Y.mean(0), atol=1e-10)
    np.testing.assert_allclose(aligner.transform(X), Y, atol=1e-9)


def test_without_centering_translation_is_not_modelled():
    X, Y, Q = planted(shift=0.0)
    R, _ = orthogonal_procrustes(X, Y, center=False)
    np.testing.assert_allclose(R, Q, atol=1e-10)
    _, Y_shifted, _ = planted(shift=5.0)
    R_shifted, _ = orthogonal_procrustes(X, Y_shifted, center=False)
    assert np.abs(R_shifted - Q).max() > 1e-2


@pytest.mark.parametrize("scale", [False, True])
def test_agrees_with_scipy_on_centred_inputs(scale):
    X, Y, _ = planted(noise=0.3, scale=1.7, shift=2.0)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    expected, nuclear = scipy.linalg.orthogonal_procrustes(Xc, Yc)
    R, s = orthogonal_procrustes(X, Y, scale=scale)
    np.testing.assert_allclose(R, expected, atol=1e-10)
    if scale:
        assert s == pytest.approx(nuclear / (Xc**2).sum(), rel=1e-10)


def test_agrees_with_scipy_without_centering_float32():
    X, Y, _ = planted(noise=0.3, dtype=np.float32)
    expected, _ = scipy.linalg.orthogonal_procrustes(X.astype(np.float64), Y.astype(np.float64))
    R, _ = orthogonal_procrustes(X, Y, center=False)
    assert R.dtype == np.float32
    np.testing.assert_allclose(R, expected, atol=1e-5)


def test_smaller_target_is_the_zero_padded_solution():
    X, Y, _ = planted(noise=0.5)
    Y = Y[:, :7]
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Q, _ = scipy.linalg.orthogonal_procrustes(Xc, np.hstack([Yc, np.zeros((len(Y), 5))]))
    R, _ = orthogonal_procrustes(X, Y)
    assert R.shape == (12, 7)
    np.testing.assert_allclose(R, Q[:, :7], atol=1e-10)
    np.testing.assert_allclose(R.T @ R, np.eye(7), atol=1e-12)


def test_smaller_source_is_the_zero_padded_solution():
    X, Y, _ = planted(noise=0.5)
    X = X[:, :5]
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Q, _ = scipy.linalg.orthogonal_procrustes(np.hstack([Xc, np.zeros((len(X), 7))]), Yc)
    R, _ = orthogonal_procrustes(X, Y)
    assert R.shape == (5, 12)
    np.testing.assert_allclose(R, Q[:5], atol=1e-10)
    np.testing.assert_allclose(R @ R.T, np.eye(5), atol=1e-12)


def test_planted_semi_orthogonal_map_into_a_larger_space():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 6)) * np.linspace(0.2, 3.0, 6) + 1.0
    C = orthogonal(10, 4)[:6]  # (6, 10), orthonormal rows
    R, _ = orthogonal_procrustes(X, X @ C + 2.0)
    np.testing.assert_allclose(R, C, atol=1e-10)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_planted_semi_orthogonal_map_into_a_smaller_space(backend):
    # X lies in the 6-dimensional span that the planted (10, 6) map B keeps: Y = X B is recovered exactly.
    rng = np.random.default_rng(5)
    B = orthogonal(10, 6)[:, :6]
    Z = rng.standard_normal((200, 6)) * np.linspace(0.5, 2.0, 6)
    X = (Z @ B.T + 0.5).astype(np.float32)
    Y = (X.astype(np.float64) @ B).astype(np.float32)
    X, Y = as_backend(backend, X, Y)
    R, _ = orthogonal_procrustes(X, Y)
    np.testing.assert_allclose(to_numpy(R), B, atol=1e-5)


def test_procrustes_distance_matches_the_residual():
    X, Y, _ = planted(noise=0.4, scale=2.0, shift=1.0)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    for scale in (False, True):
        R, s = orthogonal_procrustes(X, Y, scale=scale)
        direct = np.linalg.norm(s * Xc @ R - Yc)
        assert procrustes_distance(X, Y, scale=scale) == pytest.approx(direct, rel=1e-9)
    X0, Y0, _ = planted()
    assert procrustes_distance(X0, Y0) < 1e-6 * np.linalg.norm(Y0 - Y0.mean(0))


def test_procrustes_distance_without_centering_and_padded():
    X, Y, _ = planted(noise=0.4)
    R, _ = orthogonal_procrustes(X, Y, center=False)
    assert procrustes_distance(X, Y, center=False) == pytest.approx(np.linalg.norm(X @ R - Y), rel=1e-9)
    Ys = Y[:, :7]
    R7, _ = orthogonal_procrustes(X, Ys)
    Xc, Yc = X - X.mean(0), Ys - Ys.mean(0)
    padded = np.linalg.norm(Xc @ orthogonal_completion(R7) - np.hstack([Yc, np.zeros((len(X), 5))]))
    assert procrustes_distance(X, Ys) == pytest.approx(padded, rel=1e-9)


def orthogonal_completion(R: np.ndarray) -> np.ndarray:
    """A square orthogonal matrix whose first columns are R (any completion gives the same distance)."""
    extra = np.random.default_rng(0).standard_normal((R.shape[0], R.shape[0] - R.shape[1]))
    q, _ = np.linalg.qr(np.hstack([R, extra]))
    q[:, : R.shape[1]] = R
    return q


# -- streamed statistics ------------------------------------------------------------------------------


def test_stats_match_the_two_pass_definitions():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 7)) * 3 + 50.0
    Y = rng.standard_normal((1000, 5)) - 20.0
    tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
    stats = compute_stats(tX, tY, squares=True, gram=True, block_rows=97, flush_rows=300)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    assert stats.n == 1000
    np.testing.assert_allclose(stats.mean_x.numpy(), X.mean(0), rtol=1e-13)
    np.testing.assert_allclose(stats.cxy.numpy(), Xc.T @ Yc, atol=1e-9)
    np.testing.assert_allclose(stats.cxx.numpy(), Xc.T @ Xc, atol=1e-9)
    np.testing.assert_allclose(stats.ssx.numpy(), (Xc**2).sum(0), rtol=1e-12)
    np.testing.assert_allclose(stats.ssy.numpy(), (Yc**2).sum(0), rtol=1e-12)


def test_float32_stats_with_a_large_mean_stay_accurate():
    # The per-block shift removes the mean before the float32 GEMM: no cancellation from mean >> std.
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((40000, 16)) + 300.0).astype(np.float32)
    Y = (X[:, ::-1] * 0.5 + rng.standard_normal((40000, 16)) - 200.0).astype(np.float32)
    tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
    stats = compute_stats(tX, tY, squares=True, block_rows=512, flush_rows=4096)
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    ref = (X64 - X64.mean(0)).T @ (Y64 - Y64.mean(0))
    assert np.abs(stats.cxy.numpy() - ref).max() < 1e-5 * np.abs(ref).max()
    np.testing.assert_allclose(stats.ssx.numpy(), ((X64 - X64.mean(0)) ** 2).sum(0), rtol=1e-5)


def test_stats_merge_equals_stats_of_the_union():
    rng = np.random.default_rng(2)
    X = torch.from_numpy(rng.standard_normal((500, 6)) + 4.0)
    Y = torch.from_numpy(rng.standard_normal((500, 3)) * 2.0)
    whole = compute_stats(X, Y, squares=True, gram=True)
    bounds = [(0, 1), (1, 170), (170, 500)]
    parts = [compute_stats(X[a:b], Y[a:b], squares=True, gram=True) for a, b in bounds]
    merged = parts[0] + parts[1] + parts[2]
    for name in ("mean_x", "mean_y", "cxy", "ssx", "ssy", "cxx"):
        np.testing.assert_allclose(getattr(merged, name).numpy(), getattr(whole, name).numpy(), atol=1e-10)
    empty_free = parts[0].merge(parts[1].merge(parts[2]))
    np.testing.assert_allclose(empty_free.cxy.numpy(), whole.cxy.numpy(), atol=1e-10)
    # Optional parts survive only when both sides have them.
    assert not (whole + compute_stats(X, Y)).has_squares
    assert CrossStats.from_dict(merged.to_dict()).n == 500


def test_stats_merge_errors():
    a = compute_stats(torch.ones(3, 2, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64))
    b = compute_stats(torch.ones(3, 4, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64))
    message = r"Cannot merge statistics of \(2, 2\)-dimensional pairs with statistics of \(4, 2\)"
    with pytest.raises(ValueError, match=message):
        a.merge(b)
    with pytest.raises(TypeError, match="Can only merge CrossStats with CrossStats, got dict"):
        a.merge({})


def test_mixed_input_dtypes_use_float64_products():
    X, Y, Q = planted()
    R, _ = orthogonal_procrustes(X.astype(np.float32), Y)
    assert R.dtype == np.float32
    np.testing.assert_allclose(R, Q, atol=1e-5)


# -- estimator ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_estimator_dtypes_and_fitted_attributes(backend, dtype):
    X, Y, Q = planted(scale=0.5, shift=3.0, dtype=dtype)
    X, Y = as_backend(backend, X, Y)
    aligner = Procrustes(scale=True).fit(X, Y)
    assert aligner.rotation_.dtype == torch.float64 and aligner.rotation_.shape == (12, 12)
    for name in ("mean_x_", "mean_y_", "std_x_", "std_y_", "singular_values_"):
        assert getattr(aligner, name).dtype == torch.float64
    np.testing.assert_allclose(aligner.rotation_.numpy(), Q, atol=1e-5 if dtype == np.float32 else 1e-10)
    Z = aligner.transform(X)
    assert type(Z) is type(X) and Z.dtype == X.dtype
    np.testing.assert_allclose(to_numpy(Z), to_numpy(Y), atol=1e-4 if dtype == np.float32 else 1e-9)
    assert make_aligner("procrustes", scale=True).fit(X, Y).scale_ == pytest.approx(0.5, rel=1e-5)


def test_standardize_matches_scipy_on_standardised_inputs():
    X, Y, _ = planted(noise=0.5, scale=3.0, shift=1.0)
    Y = Y * np.linspace(1.0, 4.0, 12)
    Xs = (X - X.mean(0)) / X.std(0)
    Ys = (Y - Y.mean(0)) / Y.std(0)
    expected, nuclear = scipy.linalg.orthogonal_procrustes(Xs, Ys)
    aligner = Procrustes(standardize=True, scale=True).fit(X, Y)
    np.testing.assert_allclose(aligner.rotation_.numpy(), expected, atol=1e-10)
    np.testing.assert_allclose(aligner.std_x_.numpy(), X.std(0), rtol=1e-12)
    assert aligner.scale_ == pytest.approx(nuclear / (Xs**2).sum(), rel=1e-10)
    expected_Z = (aligner.scale_ * Xs @ expected) * Y.std(0) + Y.mean(0)
    np.testing.assert_allclose(aligner.transform(X), expected_Z, atol=1e-9)


def test_standardize_leaves_constant_columns_unscaled():
    X, Y, _ = planted(noise=0.1)
    X[:, 3] = 7.0
    aligner = Procrustes(standardize=True).fit(X, Y)
    assert aligner.std_x_[3] == 1.0
    assert np.isfinite(aligner.transform(X)).all()


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"scale": True},
        {"standardize": True},
        {"scale": True, "standardize": True},
        {"center": False, "standardize": True},
    ],
)
def test_partial_fit_over_chunks_equals_fit(params):
    X, Y, _ = planted(n=1001, noise=0.3, scale=2.0, shift=1.5)
    full = Procrustes(**params).fit(X, Y)
    streamed = Procrustes(**params)
    bounds = [0, 1, 2, 150, 151, 600, 1001]
    for a, b in zip(bounds[:-1], bounds[1:]):
        assert streamed.partial_fit(X[a:b], Y[a:b]) is streamed
    for name in ("rotation_", "mean_x_", "mean_y_", "std_x_", "std_y_"):
        np.testing.assert_allclose(getattr(streamed, name).numpy(), getattr(full, name).numpy(), atol=1e-10)
    assert streamed.scale_ == pytest.approx(full.scale_, rel=1e-10)
    np.testing.assert_allclose(streamed.transform(X), full.transform(X), atol=1e-10)


def test_partial_fit_solves_lazily_and_saves_resumable_state(tmp_path):
    X, Y, _ = planted(n=400, noise=0.2)
    streamed = Procrustes(scale=True).partial_fit(X[:200], Y[:200])
    assert "rotation_" not in vars(streamed)  # no O(d^3) solve per chunk
    first = streamed.rotation_.clone()  # solved on first access
    assert "rotation_" in vars(streamed)
    streamed.partial_fit(X[200:300], Y[200:300])
    assert "rotation_" not in vars(streamed)
    path = streamed.save(tmp_path / "half")  # save solves first
    loaded = Procrustes.load(path)
    loaded.partial_fit(X[300:], Y[300:])
    full = Procrustes(scale=True).fit(X, Y)
    np.testing.assert_allclose(loaded.transform(X), full.transform(X), atol=1e-10)
    assert not torch.allclose(first, full.rotation_)
    assert latentalign.load(path).stats_["n"] == 300


def test_fit_from_merged_shard_stats_equals_fit():
    X, Y, _ = planted(n=600, noise=0.3, scale=2.0)
    tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
    shards = [compute_stats(tX[i : i + 200], tY[i : i + 200], squares=True) for i in range(0, 600, 200)]
    merged = shards[0].merge(shards[1]).merge(shards[2])
    a = Procrustes(scale=True, standardize=True).fit_from_stats(merged)
    b = Procrustes(scale=True, standardize=True).fit(X, Y)
    np.testing.assert_allclose(a.transform(X), b.transform(X), atol=1e-10)
    assert b.get_stats().n == 600


def test_fit_after_partial_fit_starts_over():
    X, Y, _ = planted(n=300, noise=0.3)
    aligner = Procrustes().partial_fit(Y, X)
    aligner.fit(X, Y)
    np.testing.assert_allclose(aligner.transform(X), Procrustes().fit(X, Y).transform(X), atol=1e-12)


def test_inverse_round_trip_square_with_scale_and_standardize():
    X, Y, _ = planted(noise=0.3, scale=2.0, shift=1.0)
    aligner = Procrustes(scale=True, standardize=True).fit(X, Y)
    np.testing.assert_allclose(aligner.inverse_transform(aligner.transform(X)), X, atol=1e-10)
    Xt = torch.from_numpy(X.astype(np.float32))
    back = aligner.inverse_transform(aligner.transform(Xt))
    assert back.dtype == torch.float32
    np.testing.assert_allclose(back.numpy(), X, atol=1e-4)


def test_inverse_is_exact_into_a_larger_space_and_a_projection_into_a_smaller_one():
    X, Y, _ = planted(noise=0.5)
    up = Procrustes().fit(X[:, :5], Y)
    np.testing.assert_allclose(up.inverse_transform(up.transform(X[:, :5])), X[:, :5], atol=1e-10)
    down = Procrustes().fit(X, Y[:, :5])
    back = down.inverse_transform(down.transform(X))
    R = down.rotation_.numpy()
    mx = X.mean(0)
    np.testing.assert_allclose(back, (X - mx) @ R @ R.T + mx, atol=1e-10)
    np.testing.assert_allclose(down.inverse_transform(down.transform(back)), back, atol=1e-10)  # a projection


def test_score_is_near_one_for_the_planted_map():
    X, Y, _ = planted(noise=0.01)
    assert Procrustes().fit(X, Y).score(X, Y) > 0.999


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"center": "yes"}, r"center='yes' is not supported; choose one of \[True, False\]"),
        ({"scale": None}, r"scale=None is not supported; choose one of \[True, False\]"),
        ({"standardize": 2}, r"standardize=2 is not supported; choose one of \[True, False\]"),
        ({"pad": "reflect"}, r"pad='reflect' is not supported; choose one of \['zero'\]"),
    ],
)
def test_invalid_hyper_parameters(params, message):
    X, Y, _ = planted()
    with pytest.raises(ValueError, match=message):
        Procrustes(**params).fit(X, Y)
    with pytest.raises(ValueError, match=message):
        Procrustes(**params).partial_fit(X, Y)


def test_partial_fit_with_other_dimensions_is_rejected():
    X, Y, _ = planted()
    aligner = Procrustes().partial_fit(X, Y)
    with pytest.raises(ValueError, match="X has 11 features, but Procrustes was fitted with 12"):
        aligner.partial_fit(X[:, :11], Y)
    with pytest.raises(ValueError, match="Y has 10 features, but Procrustes was fitted with 12 target"):
        aligner.partial_fit(X, Y[:, :10])


def test_rejected_chunk_leaves_the_statistics_untouched():
    X, Y, _ = planted()
    aligner = Procrustes().partial_fit(X[:100], Y[:100])
    bad = X[100:].copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(first at row 5, column 1"):
        aligner.partial_fit(bad, Y[100:])
    assert aligner.get_stats().n == 100


@pytest.mark.parametrize("magnitude", [1e-30, 1e-20, 1e20, 1e30])
def test_float32_inputs_of_extreme_magnitude_recover_the_planted_rotation(magnitude):
    # float32 products of such values overflow or fall into the subnormal range; the fit redoes them in float64
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8))
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    Xs, Ys = (X * magnitude).astype(np.float32), (X @ Q * magnitude).astype(np.float32)
    aligner = Procrustes().fit(Xs, Ys)
    np.testing.assert_allclose(aligner.rotation_, Q, atol=1e-5)
    streamed = Procrustes().partial_fit(Xs[:150], Ys[:150]).partial_fit(Xs[150:], Ys[150:])
    np.testing.assert_allclose(streamed.rotation_, Q, atol=1e-5)


def test_products_overflowing_even_float64_are_reported():
    X = np.full((10, 3), 1e200)
    X[::2] *= -1
    with pytest.raises(ValueError, match="The products of X and Y overflowed even in float64"):
        orthogonal_procrustes(X, X)


def test_zero_cross_covariance_is_rejected():
    X, Y, _ = planted()
    Y[:] = 1.0
    with pytest.raises(ValueError, match="X and Y have zero cross-covariance"):
        Procrustes().fit(X, Y)


def test_too_few_rows_streamed_is_reported_at_solve_time():
    X, Y, _ = planted()
    aligner = Procrustes().partial_fit(X[:1], Y[:1])
    with pytest.raises(ValueError, match="Procrustes has seen 1 rows, but at least 2 are required"):
        aligner.transform(X)
    with pytest.raises(ValueError, match="X has 1 rows, but at least 2 are required"):
        Procrustes().fit(X[:1], Y[:1])


def test_switching_on_scale_after_streaming_without_squares_is_rejected():
    X, Y, _ = planted()
    aligner = Procrustes().partial_fit(X, Y)
    aligner.set_params(scale=True)
    with pytest.raises(ValueError, match="accumulated without the sums of squares that scale=True"):
        aligner.transform(X)


def test_zero_scale_cannot_be_inverted():
    X, Y, _ = planted()
    aligner = Procrustes().fit(X, Y)
    aligner.scale_ = 0.0
    with pytest.raises(ValueError, match="scale_ = 0 .* cannot be inverted"):
        aligner.inverse_transform(Y)


def test_stats_api_errors():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        Procrustes().get_stats()
    with pytest.raises(TypeError, match="stats must be a CrossStats, got dict"):
        Procrustes().fit_from_stats({})
    stats = compute_stats(torch.ones(4, 2, dtype=torch.float64), torch.ones(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="without the sums of squares"):
        procrustes_from_stats(stats, standardize=True)


def test_inputs_on_different_devices_are_rejected():
    X = torch.ones(5, 3)
    Y = torch.empty(5, 3, device="meta")
    with pytest.raises(ValueError, match="X is on cpu and Y is on meta; move both to the same device first"):
        orthogonal_procrustes(X, Y)


def test_unknown_attribute_still_raises_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'rotation_'"):
        _ = Procrustes().rotation_


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_stay_on_the_device():
    X, Y, Q = planted(dtype=np.float32)
    Xc, Yc = torch.from_numpy(X).cuda(), torch.from_numpy(Y).cuda()
    R, _ = orthogonal_procrustes(Xc, Yc)
    assert R.device.type == "cuda"
    np.testing.assert_allclose(R.cpu().numpy(), Q, atol=1e-5)
    Z = Procrustes().fit(Xc, Yc).transform(Xc)
    assert Z.device.type == "cuda"
