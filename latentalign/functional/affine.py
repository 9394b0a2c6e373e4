"""Least squares / ridge: the affine map ``Y ~ X W + b`` by the normal equations.

``W`` solves ``(X_c^T X_c + alpha I) W = X_c^T Y_c`` with ``X_c``, ``Y_c`` the centred data, and
``b = mean(Y) - mean(X) W`` (the intercept is not penalised, as in scikit-learn's Ridge). With
``fit_intercept=False`` the uncentred products are used and ``b = 0``.

Cost: one pass over the data for ``X^T [X | Y]`` (see :mod:`latentalign.functional.moments`) and a
``d_x x d_x`` Cholesky solve. Both run in float64: the normal equations square the condition number of
``X``, and with float32 products ``X^T X`` already stops being positive definite at ``cond(X) ~ 1e5``
(measured), so each centred block is widened to float64 before its GEMM. When Cholesky fails or reports a
condition number beyond ``1e12``, the solve falls back to an eigendecomposition pseudo-inverse (eigenvalues
below ``d_x * eps * max eigenvalue`` dropped, like ``lstsq``'s rank cut-off on the normal equations).

Note: ``torch.linalg.lstsq``'s default CPU driver cuts the rank at about ``1.2e-7 * n`` and silently
drops directions at large ``n``; it is not used here.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from latentalign._array import ArrayLike, restore
from latentalign._validation import check_number
from latentalign._validation import warn_underdetermined as warn_too_few_rows
from latentalign.exceptions import IllConditionedWarning
from latentalign.functional.moments import CrossStats
from latentalign.functional.procrustes import paired_stats

__all__ = [
    "least_squares",
    "least_squares_from_stats",
    "solve_spd",
    "warn_underdetermined",
    "warn_pseudo_inverse",
]

_F64 = torch.float64
#: Condition number of the normal matrix above which the Cholesky solution is replaced by the pseudo-inverse.
MAX_CHOLESKY_COND = 1e12


def warn_underdetermined(
    n_samples: int, n_features: int, alpha: float, *, fit_intercept: bool = True, stacklevel: int = 3
) -> bool:
    """Warn (:class:`IllConditionedWarning`) when plain least squares has too few rows; return whether it did.

    Too few: ``n_samples <= n_features`` (``n_samples <= n_features + 1`` with an intercept, which uses one
    more degree of freedom), with ``alpha == 0``.
    """
    return alpha == 0 and warn_too_few_rows(
        "Least squares",
        n_samples,
        n_features,
        n_features + 1 + int(bool(fit_intercept)),
        setting=f"{' plus an intercept' if fit_intercept else ''} and alpha=0",
        consequence="the map interpolates the anchors and generalises poorly.",
        fix="Use alpha > 0 (ridge) or more anchors than dimensions.",
        stacklevel=stacklevel,
    )


def warn_pseudo_inverse(stacklevel: int = 3) -> None:
    """Warn that the normal equations were singular and the minimum-norm solution was used."""
    warnings.warn(
        f"X^T X + alpha I is singular or ill-conditioned (condition number > {MAX_CHOLESKY_COND:.0e}): "
        "returned the minimum-norm (pseudo-inverse) solution. X has (nearly) collinear features; use "
        "alpha > 0 for a regularised map.",
        IllConditionedWarning,
        stacklevel=stacklevel,
    )


def solve_spd(A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Solve ``A W = B`` for symmetric positive semi-definite ``A`` in float64.

    Cholesky when it succeeds with a condition number (estimated from the factor's diagonal) up to
    :data:`MAX_CHOLESKY_COND`; otherwise the minimum-norm solution from ``eigh`` with eigenvalues below
    ``d * eps * max eigenvalue`` treated as zero.

    Returns
    -------
    W : torch.Tensor, float64
    method : {"cholesky", "eigh"}
    """
    A = A.to(_F64)
    B = B.to(_F64)
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        diag = torch.diagonal(L)
        cond = float((diag.max() / diag.min()) ** 2) if bool(diag.min() > 0) else float("inf")
        if cond <= MAX_CHOLESKY_COND:
            return torch.cholesky_solve(B, L), "cholesky"
    evals, evecs = torch.linalg.eigh(A)
    cutoff = A.shape[0] * torch.finfo(_F64).eps * float(evals.abs().max())
    keep = evals > cutoff
    inv = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
    return evecs @ (inv[:, None] * (evecs.T @ B)), "eigh"


def least_squares_from_stats(stats: CrossStats, *, alpha: float = 0.0, fit_intercept: bool = True) -> dict[str, Any]:
    """Solve ridge / least squares from sufficient statistics (needs ``stats.cxx``).

    Returns
    -------
    dict
        ``coef`` (d_x, d_y) and ``intercept`` (d_y,), float64, and ``method`` ("cholesky" or "eigh").
    """
    if not stats.has_gram:
        raise ValueError(
            "These statistics hold no Gram matrix X^T X, which least squares needs; compute them with gram=True."
        )
    n = stats.n
    A = stats.gram()
    B = stats.cxy
    if not fit_intercept:
        A = A + n * torch.outer(stats.mean_x, stats.mean_x)
        B = B + n * torch.outer(stats.mean_x, stats.mean_y)
    if alpha:
        A = A + alpha * torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    W, method = solve_spd(A, B)
    if fit_intercept:
        b = stats.mean_y - stats.mean_x @ W
    else:
        b = torch.zeros_like(stats.mean_y)
    return {"coef": W, "intercept": b, "method": method}


def least_squares(
    X: ArrayLike, Y: ArrayLike, *, alpha: float = 0.0, fit_intercept: bool = True
) -> tuple[ArrayLike, ArrayLike]:
    """Affine least-squares (ridge when ``alpha > 0``) map from ``X`` to ``Y``: ``Y ~ X W + b``.

    Parameters
    ----------
    X : array of shape (n, d_x)
    Y : array of shape (n, d_y)
        Paired rows; numpy arrays or torch tensors (not mixed).
    alpha : float
        Ridge penalty ``alpha ||W||_F^2`` (>= 0), not applied to the intercept.
    fit_intercept : bool
        Fit ``b``; otherwise ``b = 0`` and the data are not centred.

    Returns
    -------
    W : array of shape (d_x, d_y)
    b : array of shape (d_y,)
        Same kind, dtype and device as ``X``.

    Warns
    -----
    IllConditionedWarning
        When ``alpha == 0`` and there are no more rows than features (plus one with an intercept), or
        when ``X^T X + alpha I`` is singular and the minimum-norm solution is returned.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((100, 3))
    >>> A = rng.standard_normal((3, 2))
    >>> W, b = least_squares(X, X @ A + 1.0)
    >>> bool(np.allclose(W, A)), bool(np.allclose(b, 1.0))
    (True, True)
    """
    check_number(alpha, "alpha", low=0.0)
    stats, spec, _ = paired_stats(X, Y, gram=True, product_dtype=_F64, min_rows=2 if fit_intercept else 1)
    warned = warn_underdetermined(stats.n, stats.dim_x, alpha, fit_intercept=fit_intercept)
    sol = least_squares_from_stats(stats, alpha=alpha, fit_intercept=fit_intercept)
    if sol["method"] != "cholesky" and not warned:
        warn_pseudo_inverse()
    return restore(sol["coef"], spec), restore(sol["intercept"], spec)
