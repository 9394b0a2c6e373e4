"""Affine (least squares / ridge): planted maps, scikit-learn Ridge/LinearRegression on the same inputs,
scipy's gelsd at n = 1e5 in float32 (where torch.linalg.lstsq's default CPU driver drops directions), warnings
and errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.linear_model import LinearRegression, Ridge

from latentalign.align import make_aligner
from latentalign.align.affine import Affine
from latentalign.exceptions import IllConditionedWarning
from latentalign.functional.affine import least_squares, least_squares_from_stats
from latentalign.functional.moments import compute_stats


def planted(n=400, d_x=10, d_y=6, *, seed=0, noise=0.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_x)) * np.linspace(0.3, 3.0, d_x) + 2.0
    A = rng.standard_normal((d_x, d_y))
    b = rng.standard_normal(d_y) * 5
    Y = X @ A + b + noise * rng.standard_normal((n, d_y))
    return X.astype(dtype), Y.astype(dtype), A, b


def as_backend(backend, *arrays):
    return [torch.from_numpy(a) if backend == "torch" else a for a in arrays]


def to_numpy(a):
    return a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_planted_affine_map_is_recovered(backend, dtype):
    X, Y, A, b = planted(dtype=dtype)
    X, Y = as_backend(backend, X, Y)
    W, c = least_squares(X, Y)
    assert type(W) is type(X) and W.dtype == X.dtype and W.shape == (10, 6) and c.shape == (6,)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(to_numpy(W), A, atol=tol)
    np.testing.assert_allclose(to_numpy(c), b, atol=tol * 10)
    aligner = Affine().fit(X, Y)
    assert aligner.coef_.dtype == torch.float64 and aligner.solver_ == "cholesky"
    Z = aligner.transform(X)
    assert type(Z) is type(X) and Z.dtype == X.dtype
    np.testing.assert_allclose(to_numpy(Z), to_numpy(Y), atol=1e-3 if dtype == np.float32 else 1e-9)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0, 100.0])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_agrees_with_sklearn_ridge(alpha, fit_intercept):
    X, Y, _, _ = planted(noise=0.5)
    ref = Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd").fit(X, Y)
    aligner = Affine(alpha=alpha, fit_intercept=fit_intercept).fit(X, Y)
    np.testing.assert_allclose(aligner.coef_.numpy(), ref.coef_.T, atol=1e-9)
    np.testing.assert_allclose(aligner.intercept_.numpy(), np.broadcast_to(ref.intercept_, (6,)), atol=1e-9)
    W, c = least_squares(X, Y, alpha=alpha, fit_intercept=fit_intercept)
    np.testing.assert_allclose(W, ref.coef_.T, atol=1e-9)


def test_agrees_with_sklearn_linear_regression_in_float32():
    X, Y, _, _ = planted(n=2000, noise=0.5, dtype=np.float32)
    ref = LinearRegression().fit(X.astype(np.float64), Y.astype(np.float64))
    aligner = make_aligner("affine").fit(X, Y)
    np.testing.assert_allclose(aligner.coef_.numpy(), ref.coef_.T, atol=1e-6)
    np.testing.assert_allclose(aligner.intercept_.numpy(), ref.intercept_, atol=1e-5)


def test_products_in_the_input_dtype_agree_with_float64_on_well_conditioned_data():
    X, Y, _, _ = planted(n=5000, noise=0.5, dtype=np.float32)
    X = X + 3.0  # a mean far from zero: the reference-mean shift keeps float32 products accurate
    ref = LinearRegression().fit(X.astype(np.float64), Y.astype(np.float64))
    fast = Affine(products="input").fit(X, Y)
    np.testing.assert_allclose(fast.coef_.numpy(), ref.coef_.T, atol=1e-4)
    np.testing.assert_allclose(fast.intercept_.numpy(), ref.intercept_, atol=1e-3)
    torch_fast = Affine(products="input").fit(torch.from_numpy(X), torch.from_numpy(Y))
    np.testing.assert_allclose(torch_fast.coef_.numpy(), fast.coef_.numpy(), atol=1e-12)
    assert not np.array_equal(fast.coef_.numpy(), Affine().fit(X, Y).coef_.numpy())  # other products ran


def test_partial_fit_over_chunks_equals_fit():
    X, Y, _, _ = planted(n=1001, noise=0.5)
    for params in ({}, {"alpha": 3.0}, {"fit_intercept": False}):
        full = Affine(**params).fit(X, Y)
        streamed = Affine(**params)
        for a, b in [(0, 1), (1, 300), (300, 301), (301, 1001)]:
            streamed.partial_fit(X[a:b], Y[a:b])
        assert "coef_" not in vars(streamed)
        np.testing.assert_allclose(streamed.coef_.numpy(), full.coef_.numpy(), atol=1e-10)
        np.testing.assert_allclose(streamed.intercept_.numpy(), full.intercept_.numpy(), atol=1e-10)


def test_save_load_then_partial_fit_continues(tmp_path):
    X, Y, _, _ = planted(n=500, noise=0.5)
    path = Affine(alpha=0.5).partial_fit(X[:250], Y[:250]).save(tmp_path / "affine")
    loaded = Affine.load(path).partial_fit(X[250:], Y[250:])
    np.testing.assert_allclose(loaded.transform(X), Affine(alpha=0.5).fit(X, Y).transform(X), atol=1e-10)


def test_inverse_round_trip_when_square():
    X, Y, _, _ = planted(d_y=10, noise=0.1)
    aligner = Affine().fit(X, Y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = aligner.inverse_transform(aligner.transform(X))
    np.testing.assert_allclose(back, X, atol=1e-9)
    back32 = aligner.inverse_transform(aligner.transform(torch.from_numpy(X.astype(np.float32))))
    assert back32.dtype == torch.float32
    np.testing.assert_allclose(back32.numpy(), X, atol=1e-3)


def test_non_square_inverse_warns_and_uses_the_pseudo_inverse():
    X, Y, _, _ = planted(d_x=4, d_y=9, noise=0.0)
    aligner = Affine().fit(X, Y)
    message = r"coef_ is not square \(4 x 9\), so inverse_transform uses the pseudo-inverse"
    with pytest.warns(IllConditionedWarning, match=message):
        back = aligner.inverse_transform(aligner.transform(X))
    np.testing.assert_allclose(back, X, atol=1e-8)  # full column rank into a larger space: exact preimage


def test_ill_conditioned_square_inverse_warns():
    X, Y, _, _ = planted(d_x=5, d_y=5)
    aligner = Affine().fit(X, Y)
    U, S, Vh = torch.linalg.svd(aligner.coef_)
    S[-1] = S[0] * 1e-9
    aligner.coef_ = U @ torch.diag(S) @ Vh
    message = r"coef_ is ill-conditioned \(condition number 1\.00e\+09 > 1e\+06\)"
    with pytest.warns(IllConditionedWarning, match=message):
        aligner.inverse_transform(Y)


@pytest.mark.parametrize("n", [5, 10, 11])
def test_too_few_anchors_warns(n):
    X, Y, _, _ = planted(n=200)
    match = rf"Least squares with {n} samples for 10 features plus an intercept and alpha=0 is under-det"
    with pytest.warns(IllConditionedWarning, match=match):
        Affine().fit(X[:n], Y[:n])
    with pytest.warns(IllConditionedWarning, match="Use alpha > 0 \\(ridge\\) or more anchors"):
        least_squares(X[:n], Y[:n])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Affine(alpha=0.1).fit(X[:n], Y[:n])  # ridge is well-posed: no warning
        Affine().fit(X[:12], Y[:12])


def test_too_few_anchors_warning_is_raised_by_the_lazy_solve_after_partial_fit():
    X, Y, _, _ = planted(n=200)
    aligner = Affine(fit_intercept=False).partial_fit(X[:4], Y[:4]).partial_fit(X[4:8], Y[4:8])
    message = "Least squares with 8 samples for 10 features and alpha=0"
    with pytest.warns(IllConditionedWarning, match=message):
        aligner.transform(X)


def test_collinear_features_give_the_minimum_norm_solution_with_a_warning():
    X, Y, _, _ = planted(noise=0.5)
    X = np.hstack([X, X[:, :2]])  # duplicated columns: X^T X is singular
    with pytest.warns(IllConditionedWarning, match="singular or ill-conditioned .* minimum-norm"):
        aligner = Affine().fit(X, Y)
    assert aligner.solver_ == "eigh"
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    expected = np.linalg.lstsq(Xc, Yc, rcond=None)[0]
    np.testing.assert_allclose(aligner.coef_.numpy(), expected, atol=1e-8)
    with pytest.warns(IllConditionedWarning, match="minimum-norm"):
        least_squares(X, Y)


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"alpha": -1.0}, ValueError, r"alpha must be >= 0.0, got -1.0"),
        ({"alpha": "big"}, TypeError, r"alpha must be a number, got 'big' of type str"),
        ({"alpha": float("nan")}, ValueError, r"alpha must be finite, got nan"),
        ({"fit_intercept": "no"}, ValueError, r"fit_intercept='no' is not supported; choose one of \[True"),
        ({"products": "float16"}, ValueError, r"products='float16' is not supported; choose one of \['float64'"),
    ],
)
def test_invalid_hyper_parameters(params, error, message):
    X, Y, _, _ = planted()
    with pytest.raises(error, match=message):
        Affine(**params).fit(X, Y)
    with pytest.raises(error, match=message):
        Affine(**params).partial_fit(X, Y)


def test_functional_rejects_negative_alpha():
    X, Y, _, _ = planted()
    with pytest.raises(ValueError, match="alpha must be >= 0.0"):
        least_squares(X, Y, alpha=-0.5)


def test_stats_without_gram_are_rejected():
    stats = compute_stats(torch.ones(4, 2, dtype=torch.float64), torch.ones(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="hold no Gram matrix X\\^T X, which least squares needs"):
        least_squares_from_stats(stats)


def test_partial_fit_with_other_dimensions_is_rejected():
    X, Y, _, _ = planted()
    aligner = Affine().partial_fit(X, Y)
    with pytest.raises(ValueError, match="X has 9 features, but Affine was fitted with 10"):
        aligner.partial_fit(X[:, :9], Y)


def ill_conditioned_float32(n, d, seed=0):
    """Anisotropic float32 embeddings with a large mean: singular values spread over 4 decades."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    X = (rng.standard_normal((n, d)) * np.logspace(0, -4, d)) @ basis + 3.0
    W = rng.standard_normal((d, d)) / np.sqrt(d)
    Y = X @ W + 0.01 * rng.standard_normal((n, d)) - 1.0
    return X.astype(np.float32), Y.astype(np.float32)


def relative_residual(X, Y, W, b):
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    return np.linalg.norm(Y64 - X64 @ W - b) / np.linalg.norm(Y64 - Y64.mean(0))


@pytest.mark.slow
def test_residual_matches_scipy_gelsd_at_1e5_rows_in_float32():
    # torch.linalg.lstsq's default CPU driver truncates rank at ~1.2e-7 x n and drops directions at this size; the
    # float64 normal equations must reach gelsd's residual (computed in float64 on the float32 data).
    X, Y = ill_conditioned_float32(100_000, 64)
    aligner = Affine().fit(X, Y)
    ours = relative_residual(X, Y, aligner.coef_.numpy(), aligner.intercept_.numpy())
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    mx, my = X64.mean(0), Y64.mean(0)
    W64 = scipy.linalg.lstsq(X64 - mx, Y64 - my, lapack_driver="gelsd")[0]
    best = relative_residual(X, Y, W64, my - mx @ W64)
    mx32, my32 = X.mean(0), Y.mean(0)
    W32 = scipy.linalg.lstsq(X - mx32, Y - my32, lapack_driver="gelsd")[0].astype(np.float64)
    float32_gelsd = relative_residual(X, Y, W32, my32 - mx32 @ W32)
    assert ours <= best * (1 + 1e-7)
    assert ours <= float32_gelsd * (1 + 1e-7)
