"""KernelRidgeAligner: agreement with scikit-learn, planted nonlinear and linear maps, Nystroem, module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.kernel_ridge import KernelRidge

from latentalign import Affine
from latentalign.align import kernel_ridge as kr_module
from latentalign.align.kernel_ridge import KernelRidgeAligner, KernelRidgeMap, scale_gamma


def curved(n=500, d=3, seed=0, noise=0.01):
    """Y = tanh(X A) B + noise: a smooth map that no affine map captures."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = np.tanh(X @ (1.5 * rng.standard_normal((d, d)))) @ rng.standard_normal((d, 4))
    return X, Y + noise * rng.standard_normal(Y.shape)


def linear(n=500, d=3, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = X @ rng.standard_normal((d, 4)) + 2.0
    return X, Y + noise * rng.standard_normal(Y.shape)


@pytest.mark.parametrize("gamma", ["scale", 0.7])
def test_agrees_with_scikit_learn_kernel_ridge(gamma):
    X, Y = curved(n=200)
    ours = KernelRidgeAligner(alpha=0.05, gamma=gamma, center=False).fit(X, Y)
    expected_gamma = 1.0 / (X.shape[1] * X.var()) if gamma == "scale" else gamma
    assert ours.gamma_ == pytest.approx(expected_gamma, rel=1e-12)
    theirs = KernelRidge(alpha=0.05, kernel="rbf", gamma=expected_gamma).fit(X, Y)
    queries = X[:50] + 0.3
    np.testing.assert_allclose(ours.transform(queries), theirs.predict(queries), atol=1e-5)
    np.testing.assert_allclose(ours.dual_coef_.numpy(), theirs.dual_coef_, atol=1e-5)


def test_centred_fit_is_scikit_learn_on_the_centred_target():
    X, Y = curved(n=200)
    ours = KernelRidgeAligner(alpha=0.05).fit(X, Y)
    theirs = KernelRidge(alpha=0.05, kernel="rbf", gamma=ours.gamma_).fit(X, Y - Y.mean(0))
    np.testing.assert_allclose(ours.transform(X[:50]), theirs.predict(X[:50]) + Y.mean(0), atol=1e-5)
    # far from every training row the prediction returns to the target mean, not to 0
    np.testing.assert_allclose(ours.transform(np.full((1, 3), 50.0))[0], Y.mean(0), atol=1e-8)


def test_planted_curved_map_beats_affine_and_linear_map_matches_it():
    X, Y = curved()
    kr = KernelRidgeAligner(alpha=1e-3).fit(X[:400], Y[:400])
    affine = Affine().fit(X[:400], Y[:400])
    assert kr.score(X[400:], Y[400:]) > 0.99
    assert kr.score(X[400:], Y[400:]) > affine.score(X[400:], Y[400:]) + 0.1
    X, Y = linear()
    kr = KernelRidgeAligner(alpha=1e-3).fit(X[:400], Y[:400])
    affine = Affine().fit(X[:400], Y[:400])
    assert kr.score(X[400:], Y[400:]) == pytest.approx(affine.score(X[400:], Y[400:]), abs=0.01)


def test_nystroem_with_every_row_is_the_exact_solution_and_close_with_fewer():
    X, Y = curved(n=300)
    exact = KernelRidgeAligner(alpha=0.01, solver="exact").fit(X, Y)
    full = KernelRidgeAligner(alpha=0.01, solver="nystroem", n_components=300).fit(X, Y)
    assert exact.solver_ == "exact" and full.solver_ == "nystroem"
    np.testing.assert_allclose(full.transform(X), exact.transform(X), atol=1e-6)
    half = KernelRidgeAligner(alpha=0.01, solver="nystroem", n_components=150, random_state=0).fit(X[:250], Y[:250])
    assert half.support_.shape == (150, 3)
    assert half.score(X[250:], Y[250:]) > exact.fit(X[:250], Y[:250]).score(X[250:], Y[250:]) - 0.02
    again = KernelRidgeAligner(alpha=0.01, solver="nystroem", n_components=150, random_state=0).fit(X[:250], Y[:250])
    assert torch.equal(again.support_, half.support_)


def test_auto_switches_to_nystroem_above_the_exact_limit(monkeypatch):
    X, Y = curved(n=120)
    assert KernelRidgeAligner(n_components=30).fit(X, Y).solver_ == "exact"
    monkeypatch.setattr(kr_module, "MAX_EXACT_ROWS", 100)
    aligner = KernelRidgeAligner(n_components=30, random_state=0).fit(X, Y)
    assert aligner.solver_ == "nystroem" and aligner.support_.shape[0] == 30


def test_module_holds_support_rows_and_dual_coefficients():
    X, Y = curved(n=100)
    aligner = KernelRidgeAligner(alpha=0.1).fit(X, Y)
    module = aligner.to_module(dtype=torch.float64)
    assert isinstance(module, KernelRidgeMap)
    assert set(module.state_dict()) == {"support", "dual_coef", "intercept"}
    Xt = torch.from_numpy(X)
    np.testing.assert_allclose(module(Xt).numpy(), aligner.transform(X), atol=1e-8)
    trainable = aligner.to_module(trainable=True, dtype=torch.float64)
    trainable(Xt).sum().backward()
    assert trainable.dual_coef.grad is not None


def test_float32_input_is_predicted_in_float64_and_returned_in_float32():
    X, Y = curved(n=100)
    aligner = KernelRidgeAligner(alpha=1e-4).fit(X, Y)
    out = aligner.transform(X.astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, aligner.transform(X), rtol=1e-5, atol=1e-4)


def test_scale_gamma_of_a_constant_input_is_one():
    assert scale_gamma(torch.ones(4, 2)) == 1.0


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"gamma": "auto"}, ValueError, r"gamma='auto' is not supported; choose one of \['scale'\]"),
        ({"gamma": -1.0}, ValueError, "gamma must be > 0.0, got -1.0"),
        ({"alpha": 0.0}, ValueError, "alpha must be > 0.0, got 0.0"),
        ({"solver": "cg"}, ValueError, "solver='cg' is not supported"),
        ({"n_components": 0}, ValueError, "n_components must be >= 1"),
    ],
)
def test_invalid_parameters_name_the_fix(params, error, match):
    X, Y = curved(n=20)
    with pytest.raises(error, match=match):
        KernelRidgeAligner(**params).fit(X, Y)


def test_has_no_inverse_and_says_how_to_map_back():
    X, Y = curved(n=20)
    aligner = KernelRidgeAligner().fit(X, Y)
    with pytest.raises(NotImplementedError, match=r"KernelRidgeAligner\(\)\.fit\(Y, X\)"):
        aligner.inverse_transform(Y)
    with pytest.raises(NotImplementedError, match="no inverse module"):
        aligner.to_module(inverse=True)
