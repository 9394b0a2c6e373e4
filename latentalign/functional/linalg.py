"""A singular value decomposition that does not stop where LAPACK's fast driver gives up.

``torch.linalg.svd`` runs LAPACK's divide-and-conquer driver (``gesdd``) on CPU. On some rank-deficient
matrices it fails with ``torch.linalg.LinAlgError`` ("failed to converge"): seen with MKL on one thread,
on a 1,280 x 384 float64 cross-covariance of rank 381 (singular values down to 1e-23) that the same call
decomposed on two threads. The QR-iteration driver (``gesvd``), slower but more robust, decomposes it.
torch selects drivers on CUDA only, so the fallback goes through SciPy's LAPACK on CPU; on a GPU it asks
torch for the ``gesvd`` driver. The fallback costs nothing unless the first attempt fails.
"""

from __future__ import annotations

import logging

import scipy.linalg
import torch

__all__ = ["svd"]

logger = logging.getLogger(__name__)


def svd(M: torch.Tensor, *, full_matrices: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``U, S, Vh`` of ``M`` as ``torch.linalg.svd`` returns them, retried with ``gesvd`` if that fails.

    Parameters
    ----------
    M : torch.Tensor of shape (p, q)
        A finite floating-point matrix.
    full_matrices : bool, default False
        Square ``U`` and ``Vh`` (bases of both whole spaces) instead of the thin factors.

    Returns
    -------
    U : torch.Tensor of shape (p, p) or (p, k)
    S : torch.Tensor of shape (k,), ``k = min(p, q)``, descending
    Vh : torch.Tensor of shape (q, q) or (k, q)
        On ``M``'s device and in its dtype.

    Raises
    ------
    torch.linalg.LinAlgError
        If both drivers fail; the message names the matrix's shape and dtype.

    Examples
    --------
    >>> import torch
    >>> M = torch.tensor([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    >>> U, S, Vh = svd(M)
    >>> S.tolist(), torch.allclose(U @ torch.diag(S) @ Vh, M)
    ([4.0, 3.0], True)
    """
    try:
        return torch.linalg.svd(M, full_matrices=full_matrices)
    except torch.linalg.LinAlgError as first:
        logger.info("gesdd SVD of a %s %s matrix failed (%s); retrying with gesvd", tuple(M.shape), M.dtype, first)
        try:
            if M.device.type == "cuda":
                return torch.linalg.svd(M, full_matrices=full_matrices, driver="gesvd")
            U, S, Vh = scipy.linalg.svd(
                M.detach().numpy(), full_matrices=full_matrices, lapack_driver="gesvd", check_finite=False
            )
        except (torch.linalg.LinAlgError, scipy.linalg.LinAlgError) as second:
            raise torch.linalg.LinAlgError(
                f"SVD of a {tuple(M.shape)} {M.dtype} matrix failed with both LAPACK drivers (gesdd: {first}; "
                f"gesvd: {second}). Check the matrix for extreme magnitudes, or fit on float64 data."
            ) from second
        return tuple(torch.from_numpy(a).to(device=M.device, dtype=M.dtype) for a in (U, S, Vh))  # type: ignore[return-value]
