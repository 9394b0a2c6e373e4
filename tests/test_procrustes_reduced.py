"""Few pairs in many dimensions: the rotation solved exactly on the subspaces the pairs reach.

With ``n`` pairs in ``d > 3 n`` dimensions the cross-covariance has rank ``n - 1``; the completion
closest to the identity and the shrunk rotation are then solved on ``2 (n - 1)`` (square) to
``3 (n - 1)`` dimensions instead of ``d``. These tests pin the reduced solutions to dense references
written from the definitions (full SVDs, numpy's and scipy's polar factors), across square and
rectangular shapes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes as scipy_procrustes

from latentalign.align.procrustes import Procrustes
from latentalign.exceptions import IllConditionedWarning
from latentalign.functional.procrustes import complete_rotation, pair_subspaces, shrunk_rotation

SHAPES = [(300, 300), (300, 200), (200, 300)]


def centred_cross_covariance(n: int, d_x: int, d_y: int, *, shared: bool, seed: int = 0) -> torch.Tensor:
    """``X^T Y`` of ``n`` centred pairs; ``shared``: ``Y`` is a noisy copy of ``X``'s first coordinates."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_x, generator=gen, dtype=torch.float64)
    if shared:
        Y = torch.cat([X, torch.randn(n, max(d_y - d_x, 0), generator=gen, dtype=torch.float64)], 1)[:, :d_y]
        Y = Y + 0.1 * torch.randn(n, d_y, generator=gen, dtype=torch.float64)
    else:
        Y = torch.randn(n, d_y, generator=gen, dtype=torch.float64)
    return (X - X.mean(0)).T @ (Y - Y.mean(0))


def dense_completion(M: torch.Tensor, rank: int) -> torch.Tensor:
    """The optimal rotation closest to ``eye(d_x, d_y)``, from full SVDs (the definition, no reduction)."""
    d_x, d_y = M.shape
    k = min(d_x, d_y)
    U, _, Vh = np.linalg.svd(M.numpy(), full_matrices=True)
    V = Vh.T
    Uc, Vc = U[:, rank:], V[:, rank:]
    P, _, Qh = np.linalg.svd(Uc[:k].T @ Vc[:k], full_matrices=False)
    return torch.from_numpy(U[:, :rank] @ V[:, :rank].T + Uc @ (P @ Qh) @ Vc.T)


def dense_shrunk_rotation(M: torch.Tensor, lam: float) -> torch.Tensor:
    """``polar(M + lam mean(S) E)`` from numpy's full SVDs (the definition, no reduction)."""
    A = M.numpy()
    dense = A + lam * float(np.linalg.svd(A, compute_uv=False).mean()) * np.eye(*A.shape)
    U, _, Vh = np.linalg.svd(dense, full_matrices=False)
    return torch.from_numpy(U @ Vh)


@pytest.mark.parametrize("shared", [False, True], ids=["unrelated", "shared-coordinates"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_reduced_completion_is_the_dense_one(shape, shared):
    n = 12
    M = centred_cross_covariance(n, *shape, shared=shared)
    assert pair_subspaces(M, n - 1) is not None  # the reduced route is the one under test
    R, S, rank = complete_rotation(M, max_rank=n - 1)
    assert rank == n - 1
    torch.testing.assert_close(R, dense_completion(M, n - 1), atol=1e-10, rtol=0)
    torch.testing.assert_close(S, torch.linalg.svdvals(M), atol=1e-9 * float(S[0]), rtol=0)


@pytest.mark.parametrize("lam", [0.1, 3.0])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_reduced_shrinkage_is_the_dense_polar_factor(shape, lam):
    n = 12
    M = centred_cross_covariance(n, *shape, shared=True)
    R, S = shrunk_rotation(M, lam, max_rank=n - 1)
    torch.testing.assert_close(R, dense_shrunk_rotation(M, lam), atol=1e-10, rtol=0)
    assert S.shape == (min(shape),)


def test_few_pairs_fit_through_the_estimator_agrees_with_scipy_on_the_shrunk_problem():
    # A^T B + c I = [A; sqrt(c) I]^T [B; sqrt(c) I]: scipy's Procrustes on the stacked rows
    rng = np.random.default_rng(0)
    d, n, lam = 400, 20, 2.0
    X = rng.standard_normal((n, d))
    Y = X + 0.3 * rng.standard_normal((n, d))
    A, B = X - X.mean(0), Y - Y.mean(0)
    c = np.sqrt(lam * np.linalg.svd(A.T @ B, compute_uv=False).mean())
    reference, _ = scipy_procrustes(np.vstack([A, c * np.eye(d)]), np.vstack([B, c * np.eye(d)]))
    with pytest.warns(IllConditionedWarning):  # under-determined: 20 pairs in 400 dimensions
        model = Procrustes(shrinkage=lam).fit(X, Y)
    np.testing.assert_allclose(model.rotation_.numpy(), reference, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_pair_subspaces_hold_the_matrix_and_meet_the_identity_as_an_identity(shape):
    M = centred_cross_covariance(10, *shape, shared=False)
    found = pair_subspaces(M, 9)
    assert found is not None
    Qx, Qy, B = found
    eye = torch.eye(*shape, dtype=torch.float64)
    torch.testing.assert_close(Qx.T @ Qx, torch.eye(Qx.shape[1], dtype=torch.float64))
    torch.testing.assert_close(Qy.T @ Qy, torch.eye(Qy.shape[1], dtype=torch.float64))
    torch.testing.assert_close(Qx @ B @ Qy.T, M)
    torch.testing.assert_close(Qx.T @ eye @ Qy, torch.eye(*B.shape, dtype=torch.float64))
    assert B.shape == subspace_sizes(*shape, 9)


def subspace_sizes(d_x: int, d_y: int, rank: int) -> tuple[int, int]:
    """2 r dimensions on the smaller side; on the larger one, up to r more that the identity does not reach."""
    small = min(d_x, d_y, 2 * rank)
    large = min(max(d_x, d_y), small + min(rank, abs(d_x - d_y)))
    return (large, small) if d_x >= d_y else (small, large)


@pytest.mark.parametrize(("shape", "n"), [((300, 300), 60), ((300, 200), 35), ((200, 300), 35)], ids=str)
def test_pairs_up_to_about_a_third_of_the_dimensions_are_solved_on_the_subspaces(shape, n):
    # 60 pairs in 300 dimensions reach 118 of them (square) and 35 reach 102 (rectangular): the same rotations
    M = centred_cross_covariance(n, *shape, shared=True)
    found = pair_subspaces(M, n - 1)
    assert found is not None
    assert found[2].shape == subspace_sizes(*shape, n - 1)
    R, _, rank = complete_rotation(M, max_rank=n - 1)
    assert rank == n - 1
    torch.testing.assert_close(R, dense_completion(M, n - 1), atol=1e-10, rtol=0)
    R_shrunk, _ = shrunk_rotation(M, 1.0, max_rank=n - 1)
    torch.testing.assert_close(R_shrunk, dense_shrunk_rotation(M, 1.0), atol=1e-10, rtol=0)


def test_pair_subspaces_are_skipped_when_the_pairs_reach_most_directions():
    M = centred_cross_covariance(60, 100, 100, shared=False)
    assert pair_subspaces(M, 59) is None
    assert pair_subspaces(M, None) is None
