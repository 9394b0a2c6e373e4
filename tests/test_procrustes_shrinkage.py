"""Procrustes shrunk towards the identity: ``polar(M + lam * mean(S) * E)``, and ``shrinkage="cv"``.

With few noisy pairs between spaces that share coordinates, the pairs' own span is fitted to noise;
pulling the whole rotation towards the identity generalises better. Between spaces that do not share
coordinates the identity is a bad prior, and cross-validation must refuse it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes as scipy_procrustes
from sklearn.base import clone

from latentalign import load
from latentalign.align.procrustes import SHRINKAGE_GRID, Procrustes
from latentalign.exceptions import IllConditionedWarning
from latentalign.functional.moments import compute_stats

D = 64


def cloud(n: int, d: int = D, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * np.linspace(2.0, 0.5, d)


def fit_quietly(X: np.ndarray, Y: np.ndarray, **params) -> Procrustes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)
        return Procrustes(**params).fit(X, Y)


def heldout_recall(model: Procrustes, X: np.ndarray, Y: np.ndarray) -> float:
    Z = np.asarray(model.transform(X), dtype=np.float64)
    Zn = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    return float((np.argmax(Zn @ Yn.T, axis=1) == np.arange(len(Z))).mean())


def noisy_copy(X: np.ndarray, noise: float, seed: int = 1) -> np.ndarray:
    return X + noise * np.random.default_rng(seed).standard_normal(X.shape)


@pytest.mark.parametrize("lam", [0.5, 3.0, 40.0])
def test_rotation_is_the_polar_factor_of_the_shrunk_cross_covariance(lam):
    X, Y = cloud(30, seed=0), cloud(30, seed=2)
    A, B = X - X.mean(0), Y - Y.mean(0)
    mean_singular = np.linalg.svd(A.T @ B, compute_uv=False).mean()
    # A^T B + c I = [A; sqrt(c) I]^T [B; sqrt(c) I]: scipy's Procrustes on the stacked rows is the reference
    c = np.sqrt(lam * mean_singular)
    reference, _ = scipy_procrustes(np.vstack([A, c * np.eye(D)]), np.vstack([B, c * np.eye(D)]))
    model = fit_quietly(X, Y, shrinkage=lam)
    np.testing.assert_allclose(model.rotation_.numpy(), reference, atol=1e-10)
    assert model.shrinkage_ == lam


def test_zero_shrinkage_is_the_plain_fit_and_a_huge_one_the_identity():
    X, Y = cloud(20, seed=0), cloud(20, seed=2)
    plain, zero = fit_quietly(X, Y), fit_quietly(X, Y, shrinkage=0.0)
    assert torch.equal(plain.rotation_, zero.rotation_)
    huge = fit_quietly(X, Y, shrinkage=1e9)
    np.testing.assert_allclose(huge.rotation_.numpy(), np.eye(D), atol=1e-6)


def test_different_dimensions_shrink_towards_the_zero_padded_identity_with_the_best_scale():
    X = cloud(40, d=16, seed=0)
    Y = np.hstack([3.0 * noisy_copy(X, 0.5), cloud(40, d=8, seed=3)])
    model = fit_quietly(X, Y, shrinkage=2.0, scale=True)
    R = model.rotation_.numpy()
    assert R.shape == (16, 24)
    np.testing.assert_allclose(R @ R.T, np.eye(16), atol=1e-10)
    A, B = X - X.mean(0), Y - Y.mean(0)
    # the scale that minimises ||s A R - B|| for this R
    np.testing.assert_allclose(model.scale_, np.trace(R.T @ A.T @ B) / np.sum(A * A), rtol=1e-10)


def near_identity(angle: float = 0.02, seed: int = 1) -> np.ndarray:
    A = np.random.default_rng(seed).standard_normal((D, D)) * angle
    return torch.linalg.matrix_exp(torch.from_numpy(A - A.T)).numpy()


def test_cv_generalises_from_few_noisy_pairs_of_a_shared_space():
    X = cloud(600, seed=0)
    Y = noisy_copy(X @ near_identity(), 1.5)
    train, test = slice(0, 40), slice(40, None)
    plain = fit_quietly(X[train], Y[train])
    cv = fit_quietly(X[train], Y[train], shrinkage="cv")
    assert cv.shrinkage_ > 0
    assert cv.cv_scores_.shape == (len(SHRINKAGE_GRID),)
    assert SHRINKAGE_GRID[int(cv.cv_scores_.argmax())] == cv.shrinkage_
    r_plain, r_cv = heldout_recall(plain, X[test], Y[test]), heldout_recall(cv, X[test], Y[test])
    # measured: 0.57 unshrunk (identity completion), 0.99 with the chosen shrinkage (10)
    assert r_plain < 0.7
    assert r_cv > 0.95


@pytest.mark.parametrize(
    "params", [{}, {"scale": True}, {"standardize": True}, {"complement": "svd"}], ids=["plain", "scale", "std", "svd"]
)
@pytest.mark.parametrize("n, d", [(23, D), (12, 200)], ids=["dense", "reduced"])
def test_cv_scores_are_the_heldout_cosines_of_one_fit_per_shrinkage_and_fold(params, n, d):
    # the reference refits every grid value on every fold from scratch (row i in fold i % 5); with 12 pairs
    # in 200 dimensions the folds are solved on the pairs' subspaces
    X = cloud(n, d=d, seed=0)
    Y = noisy_copy(X, 1.0)
    cv = fit_quietly(X, Y, shrinkage="cv", **params)
    fold = np.arange(n) % 5
    expected = []
    for lam in SHRINKAGE_GRID:
        total = 0.0
        for f in range(5):
            model = fit_quietly(X[fold != f], Y[fold != f], shrinkage=lam, **params)
            Z = np.asarray(model.transform(X[fold == f]), dtype=np.float64)
            Yf = Y[fold == f]
            total += float((np.sum(Z * Yf, 1) / np.linalg.norm(Z, axis=1) / np.linalg.norm(Yf, axis=1)).sum())
        expected.append(total / n)
    np.testing.assert_allclose(cv.cv_scores_.numpy(), expected, rtol=0, atol=1e-10)


def test_cv_refuses_the_identity_between_spaces_that_do_not_share_coordinates():
    X = cloud(600, seed=0)
    Q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((D, D)))
    Y = X @ Q
    train = slice(0, 120)  # more pairs than dimensions: the plain fit is exact
    cv = fit_quietly(X[train], Y[train], shrinkage="cv")
    assert cv.shrinkage_ == 0.0
    np.testing.assert_allclose(cv.rotation_.numpy(), Q, atol=1e-8)


def test_float_shrinkage_streams_like_fit():
    X, Y = cloud(90, seed=0), noisy_copy(cloud(90, seed=0), 0.5)
    whole = fit_quietly(X, Y, shrinkage=3.0)
    streamed = Procrustes(shrinkage=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)
        for start in range(0, 90, 30):
            streamed.partial_fit(X[start : start + 30], Y[start : start + 30])
        np.testing.assert_allclose(streamed.rotation_.numpy(), whole.rotation_.numpy(), atol=1e-10)


def test_cv_needs_the_rows():
    X, Y = cloud(20), cloud(20, seed=2)
    with pytest.raises(ValueError, match="shrinkage='cv'.*partial_fit"):
        Procrustes(shrinkage="cv").partial_fit(X, Y)
    with pytest.raises(ValueError, match="shrinkage='cv'.*fit_from_stats"):
        Procrustes(shrinkage="cv").fit_from_stats(compute_stats(torch.from_numpy(X), torch.from_numpy(Y)))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"shrinkage": "auto"}, "shrinkage must be a number >= 0 or 'cv', got 'auto'"),
        ({"shrinkage": -1.0}, "shrinkage"),
        ({"shrinkage": 1.0, "whiten": True}, "whiten=True cannot be combined with shrinkage"),
    ],
)
def test_bad_shrinkage_is_named(params, message):
    X = cloud(20)
    with pytest.raises(ValueError, match=message):
        Procrustes(**params).fit(X, X)


def test_cv_estimator_clones_saves_and_loads(tmp_path):
    X = cloud(60, seed=0)
    model = fit_quietly(X, noisy_copy(X, 0.3), shrinkage="cv")
    copy = clone(model)
    assert copy.get_params()["shrinkage"] == "cv"
    assert not hasattr(copy, "shrinkage_")
    model.save(tmp_path / "shrunk")
    loaded = load(tmp_path / "shrunk")
    assert loaded.shrinkage_ == model.shrinkage_
    assert torch.equal(loaded.cv_scores_, model.cv_scores_)
    np.testing.assert_allclose(loaded.transform(X), model.transform(X))
