"""Procrustes with fewer pairs than dimensions: the rotation completed closest to the identity.

With 50 pairs in 384 dimensions the pairs fix the rotation on a 49-dimensional span only. The default
completion keeps the other directions where they are; the thin SVD's choice (``complement="svd"``)
scrambles them, which costs held-out retrieval when both sides share coordinates.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from latentalign.align.procrustes import Procrustes
from latentalign.exceptions import IllConditionedWarning
from latentalign.functional.procrustes import complete_rotation, orthogonal_procrustes, polar_factor

D, N_PAIRS = 384, 50


def cloud(n: int = 1000, d: int = D, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) * np.linspace(2.0, 0.2, d) + 0.3).astype(np.float32)


def near_identity(d: int = D, angle: float = 0.02, seed: int = 1) -> np.ndarray:
    A = np.random.default_rng(seed).standard_normal((d, d)) * angle
    return torch.linalg.matrix_exp(torch.from_numpy(A - A.T)).numpy().astype(np.float32)


def heldout_recall(model: Procrustes, X: np.ndarray, Y: np.ndarray) -> float:
    Z = np.asarray(model.transform(X), dtype=np.float64)
    Zn = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    return float((np.argmax(Zn @ Yn.T, axis=1) == np.arange(len(Z))).mean())


def fit_quietly(X: np.ndarray, Y: np.ndarray, **params) -> Procrustes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)
        return Procrustes(**params).fit(X, Y)


@pytest.mark.parametrize("rotated", [False, True], ids=["same-space", "near-identity-rotation"])
def test_fifty_pairs_in_384_dims_keep_the_unconstrained_directions(rotated):
    X = cloud()
    Y = X @ near_identity() if rotated else X.copy()
    train, test = slice(0, N_PAIRS), slice(N_PAIRS, None)
    new = fit_quietly(X[train], Y[train])
    old = fit_quietly(X[train], Y[train], complement="svd")
    assert new.rank_ == old.rank_ == N_PAIRS - 1
    r_new, r_old = heldout_recall(new, X[test], Y[test]), heldout_recall(old, X[test], Y[test])
    # measured: identity completion 1.0 on both; the thin SVD's 0.58 (same space) and 0.63 (rotated)
    assert r_new >= 0.99
    assert r_old < 0.9
    if not rotated:
        np.testing.assert_allclose(new.rotation_.numpy(), np.eye(D), atol=1e-6)


def test_completion_is_an_optimal_rotation_closest_to_the_identity():
    rng = np.random.default_rng(3)
    X = torch.from_numpy(rng.standard_normal((6, 10)))
    Y = X @ torch.from_numpy(near_identity(10, angle=0.3, seed=4)).double() + 0.01 * torch.randn(6, 10)
    M = X.T @ Y  # rank 6 of 10
    R, S, rank = complete_rotation(M)
    R_svd, _ = polar_factor(M)
    assert rank == 6
    torch.testing.assert_close(R.T @ R, torch.eye(10, dtype=torch.float64))
    # the same optimum as the thin SVD's rotation, and closer to the identity than it
    torch.testing.assert_close(torch.trace(R.T @ M), S.sum())
    torch.testing.assert_close(torch.trace(R_svd.T @ M), S.sum())
    eye = torch.eye(10, dtype=torch.float64)
    assert torch.linalg.matrix_norm(R - eye) < torch.linalg.matrix_norm(R_svd - eye)
    # no optimal rotation is closer: perturb the complement by a small rotation, the distance grows
    U, _, Vh = torch.linalg.svd(M)
    Uc, Vc = U[:, rank:], Vh.T[:, rank:]
    for seed in range(5):
        G = torch.from_numpy(near_identity(4, angle=0.1, seed=seed)).double()
        other = U[:, :rank] @ Vh[:rank] + Uc @ (Uc.T @ R @ Vc) @ G @ Vc.T
        torch.testing.assert_close(torch.trace(other.T @ M), S.sum())
        assert torch.linalg.matrix_norm(other - eye) >= torch.linalg.matrix_norm(R - eye) - 1e-12


@pytest.mark.parametrize("shape", [(8, 5), (5, 8)])
def test_completion_across_dimensions_is_semi_orthogonal(shape):
    d_x, d_y = shape
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((3, d_x)), rng.standard_normal((3, d_y))
    R, _ = orthogonal_procrustes(X, Y)
    gram = R.T @ R if d_x >= d_y else R @ R.T
    np.testing.assert_allclose(gram, np.eye(min(shape)), atol=1e-10)
    # the pairs' part is the thin SVD's, so the fit on the pairs is unchanged
    R_svd, _ = orthogonal_procrustes(X, Y, complement="svd")
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    np.testing.assert_allclose(np.trace(R.T @ Xc.T @ Yc), np.trace(R_svd.T @ Xc.T @ Yc), rtol=1e-10)


def test_full_rank_fit_is_the_same_either_way():
    X = cloud(n=600, d=20)
    Y = X @ near_identity(20, angle=0.5, seed=2)
    a, b = Procrustes().fit(X, Y), Procrustes(complement="svd").fit(X, Y)
    assert a.rank_ == 20
    torch.testing.assert_close(a.rotation_, b.rotation_, rtol=0, atol=1e-12)


def test_streamed_statistics_give_the_same_completion():
    X = cloud(n=N_PAIRS)
    Y = X @ near_identity()
    whole = fit_quietly(X, Y)
    streamed = Procrustes()
    for start in range(0, N_PAIRS, 20):
        streamed.partial_fit(X[start : start + 20], Y[start : start + 20])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)
        rotation = streamed.rotation_
    torch.testing.assert_close(rotation, whole.rotation_, rtol=0, atol=1e-6)  # float32 products


def test_underdetermined_warning_names_the_completion():
    X = cloud(n=10, d=30)
    with pytest.warns(IllConditionedWarning, match="as close to the identity"):
        Procrustes().fit(X, X)
    with pytest.warns(IllConditionedWarning, match="arbitrary"):
        Procrustes(complement="svd").fit(X, X)


def test_unknown_complement_is_rejected():
    X = cloud(n=50, d=4)
    with pytest.raises(ValueError, match="complement"):
        Procrustes(complement="zero").fit(X, X)
    with pytest.raises(ValueError, match="complement"):
        orthogonal_procrustes(X, X, complement="zero")
