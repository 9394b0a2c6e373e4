"""Procrustes(whiten=True) and RelativeProjection(metric="change_of_basis"): planted linear maps, references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentalign import Procrustes, RelativeProjection
from latentalign.exceptions import IllConditionedWarning
from latentalign.functional.relative import relative_inverse, relative_projection


def planted_linear(n=300, d=5, seed=0, noise=0.0):
    """Y = X A + b with a random invertible, far from orthogonal, A."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.linspace(0.5, 3.0, d) + 1.0
    A = rng.standard_normal((d, d)) + np.diag(np.linspace(1.0, 4.0, d))
    Y = X @ A + 2.0 + noise * rng.standard_normal((n, d))
    return X, Y, A


def zca(Z):
    """Inverse square root and square root of the covariance of Z (reference, numpy eigh)."""
    Zc = Z - Z.mean(0)
    evals, evecs = np.linalg.eigh(Zc.T @ Zc / len(Z))
    return (evecs / np.sqrt(evals)) @ evecs.T, (evecs * np.sqrt(evals)) @ evecs.T


# -- Procrustes(whiten=True) ----------------------------------------------------------------------------
def test_whitened_procrustes_recovers_any_invertible_linear_map():
    X, Y, A = planted_linear()
    aligner = Procrustes(whiten=True).fit(X, Y)
    W, b = aligner._forward_map()
    np.testing.assert_allclose(W.numpy(), A, atol=1e-8)
    np.testing.assert_allclose(b.numpy(), np.full(5, 2.0), atol=1e-8)
    assert aligner.score(X, Y) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(aligner.inverse_transform(aligner.transform(X)), X, atol=1e-8)
    assert Procrustes().fit(X, Y).score(X, Y) < 0.95  # a rotation cannot shear


def test_whitened_procrustes_is_whiten_rotate_dewhiten_on_noisy_data():
    X, Y, _ = planted_linear(noise=2.0)
    wx, _ = zca(X)
    wy, sy = zca(Y)
    Xw, Yw = (X - X.mean(0)) @ wx, (Y - Y.mean(0)) @ wy
    U, _, Vt = np.linalg.svd(Xw.T @ Yw)
    expected = (X - X.mean(0)) @ wx @ U @ Vt @ sy + Y.mean(0)
    aligner = Procrustes(whiten=True).fit(X, Y)
    np.testing.assert_allclose(aligner.transform(X), expected, atol=1e-8)
    # the singular values between the whitened spaces are the canonical correlations (at most 1)
    assert float(aligner.singular_values_.max()) <= 1.0 + 1e-12


def test_whitened_streaming_matches_fit_and_save_load_round_trips(tmp_path):
    X, Y, _ = planted_linear(noise=0.5)
    whole = Procrustes(whiten=True).fit(X, Y)
    streamed = Procrustes(whiten=True)
    for start in range(0, 300, 70):
        streamed.partial_fit(X[start : start + 70], Y[start : start + 70])
    np.testing.assert_allclose(streamed.transform(X), whole.transform(X), atol=1e-8)
    loaded = Procrustes.load(whole.save(tmp_path / "whitened"))
    assert loaded.whiten and loaded.whiten_x_.shape == (5, 5)
    np.testing.assert_allclose(loaded.transform(X), whole.transform(X), atol=1e-12)
    module = whole.to_module(dtype=torch.float64)
    np.testing.assert_allclose(module(torch.from_numpy(X)).numpy(), whole.transform(X), atol=1e-10)


def test_unwhitened_procrustes_keeps_empty_whitening_state():
    X, Y, _ = planted_linear()
    aligner = Procrustes().fit(X, Y)
    assert aligner.whiten_x_.shape == (0, 0) and aligner.dewhiten_y_.shape == (0, 0)


def test_whiten_with_scale_is_rejected_with_the_fix():
    X, Y, _ = planted_linear(n=20)
    with pytest.raises(ValueError, match="whiten=True cannot be combined with scale=True or standardize=True"):
        Procrustes(whiten=True, scale=True).fit(X, Y)


@pytest.mark.filterwarnings("ignore:Procrustes with 4 samples for 6 features")
def test_whitening_fewer_pairs_than_dimensions_warns():
    X, Y, _ = planted_linear(n=4, d=6)
    with pytest.warns(IllConditionedWarning, match=r"whiten=True: the covariance of X or Y has numerical rank 3"):
        Procrustes(whiten=True).fit(X, Y)


# -- RelativeProjection(metric="change_of_basis") -------------------------------------------------------
def test_change_of_basis_is_invariant_to_any_invertible_linear_map():
    X, Y, _ = planted_linear(noise=0.0)
    rel = RelativeProjection(metric="change_of_basis").fit(X[:30], Y[:30])
    np.testing.assert_allclose(rel.transform(X), rel.transform_target(Y), atol=1e-8)
    assert rel.score(X, Y) == pytest.approx(1.0, abs=1e-10)
    # cosine similarities are kept by rotations only: a shear changes them
    assert RelativeProjection(metric="cosine").fit(X[:30], Y[:30]).score(X, Y) < 0.99


def test_change_of_basis_coordinates_rebuild_the_point():
    rng = np.random.default_rng(0)
    X, A = rng.standard_normal((10, 4)), rng.standard_normal((7, 4))
    C = relative_projection(X, A, metric="change_of_basis")
    np.testing.assert_allclose(C, X @ np.linalg.pinv(A), atol=1e-10)
    np.testing.assert_allclose(C @ A, X, atol=1e-10)
    np.testing.assert_allclose(relative_inverse(C, A, metric="change_of_basis"), X, atol=1e-10)


def test_change_of_basis_inverse_module_and_save_load(tmp_path):
    X, Y, _ = planted_linear(noise=0.1)
    rel = RelativeProjection(metric="change_of_basis").fit(X[:30], Y[:30])
    Z = rel.transform(X)
    np.testing.assert_allclose(rel.inverse_transform(rel.transform_target(Y)), Y, atol=1e-8)
    forward, backward = rel.to_module(dtype=torch.float64), rel.to_module(inverse=True, dtype=torch.float64)
    np.testing.assert_allclose(forward(torch.from_numpy(X)).numpy(), Z, atol=1e-10)
    np.testing.assert_allclose(backward(torch.from_numpy(Z)).numpy(), rel.inverse_transform(Z), atol=1e-10)
    loaded = RelativeProjection.load(rel.save(tmp_path / "basis"))
    np.testing.assert_allclose(loaded.transform(X), Z, atol=1e-12)


def test_change_of_basis_in_a_product_has_no_module():
    X, Y, _ = planted_linear(n=40)
    rel = RelativeProjection(metric=("cosine", "change_of_basis")).fit(X, Y)
    assert rel.transform(X).shape == (40, 80)
    with pytest.raises(NotImplementedError, match="to_module supports metric='change_of_basis' alone"):
        rel.to_module()
