"""The SVD fallback: when torch's divide-and-conquer driver fails, LAPACK's gesvd finishes the job.

The failure it guards against (MKL's gesdd on one thread, on one rank-deficient cross-covariance of real
embeddings) cannot be produced on demand from synthetic data, so these tests make torch's SVD fail and
check that the fallback returns the same decomposition and that Procrustes fits through it.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import latentalign.functional.linalg as linalg_module
from latentalign.align import Procrustes
from latentalign.functional.linalg import svd
from latentalign.functional.procrustes import complete_rotation


def _failing_torch_svd(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    calls: list[tuple[int, ...]] = []

    def fail(M: torch.Tensor, *args: object, **kwargs: object) -> None:
        calls.append(tuple(M.shape))
        raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge (error code: 1).")

    monkeypatch.setattr(linalg_module.torch.linalg, "svd", fail)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("full_matrices", [False, True])
@pytest.mark.parametrize("shape", [(40, 12), (12, 40)])
def test_fallback_returns_the_same_decomposition(monkeypatch, dtype, full_matrices, shape):
    rng = np.random.default_rng(0)
    # rank-deficient, like the cross-covariance of fewer pairs than dimensions
    M = torch.from_numpy(rng.normal(size=(shape[0], 5)) @ rng.normal(size=(5, shape[1]))).to(dtype)
    U_ref, S_ref, Vh_ref = torch.linalg.svd(M, full_matrices=full_matrices)
    calls = _failing_torch_svd(monkeypatch)
    U, S, Vh = svd(M, full_matrices=full_matrices)
    assert calls == [shape]  # the first driver was tried, and failed
    assert (U.dtype, S.dtype, Vh.dtype) == (dtype, dtype, dtype)
    assert (U.shape, S.shape, Vh.shape) == (U_ref.shape, S_ref.shape, Vh_ref.shape)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(S, S_ref, atol=tol, rtol=tol)
    k = min(shape)
    torch.testing.assert_close((U[:, :k] * S) @ Vh[:k], M, atol=tol, rtol=tol)
    eye_u, eye_v = torch.eye(U.shape[1], dtype=dtype), torch.eye(Vh.shape[0], dtype=dtype)
    torch.testing.assert_close(U.T @ U, eye_u, atol=tol, rtol=tol)
    torch.testing.assert_close(Vh @ Vh.T, eye_v, atol=tol, rtol=tol)


def test_procrustes_fits_through_the_fallback(monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 16))
    Q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    expected = Procrustes().fit(X, X @ Q).transform(X)
    R_ref, S_ref, rank_ref = complete_rotation(torch.from_numpy(X[:6].T @ X[:6]))
    calls = _failing_torch_svd(monkeypatch)
    np.testing.assert_allclose(Procrustes().fit(X, X @ Q).transform(X), expected, atol=1e-8)
    R, S, rank = complete_rotation(torch.from_numpy(X[:6].T @ X[:6]))
    assert calls, "the patched driver was not reached"
    assert rank == rank_ref == 6
    torch.testing.assert_close(R, R_ref, atol=1e-8, rtol=1e-8)


def test_both_drivers_failing_is_named(monkeypatch):
    _failing_torch_svd(monkeypatch)

    def fail(*args: object, **kwargs: object) -> None:
        raise scipy.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(linalg_module.scipy.linalg, "svd", fail)
    with pytest.raises(torch.linalg.LinAlgError, match=r"\(7, 3\) torch.float64 matrix failed with both"):
        svd(torch.ones(7, 3, dtype=torch.float64))
