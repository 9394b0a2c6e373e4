"""Affine aligner: least squares / ridge ``Y ~ X W + b`` from streamed normal equations."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch

from latentalign._validation import check_choice, check_number
from latentalign.align.procrustes import StreamingAligner
from latentalign.exceptions import IllConditionedWarning
from latentalign.functional.affine import (
    least_squares_from_stats,
    warn_pseudo_inverse,
    warn_underdetermined,
)
from latentalign.functional.moments import CrossStats

__all__ = ["Affine", "MAX_INVERSE_COND"]

_F64 = torch.float64
#: Largest condition number of ``coef_`` for which ``inverse_transform`` uses the exact inverse.
MAX_INVERSE_COND = 1e6


class Affine(StreamingAligner):
    """Affine map ``Y ~ X W + b`` by least squares (ridge when ``alpha > 0``).

    Solved from the normal equations ``(X_c^T X_c + alpha I) W = X_c^T Y_c`` accumulated in float64 over
    chunks of rows (Cholesky, with an ``eigh`` pseudo-inverse fallback when singular); see
    :mod:`latentalign.functional.affine`. The intercept is not penalised (as in scikit-learn's Ridge).

    Parameters
    ----------
    alpha : float, default 0.0
        Ridge penalty ``alpha ||W||_F^2`` (>= 0).
    fit_intercept : bool, default True
        Fit the intercept ``b``; otherwise ``b = 0``.
    products : {"float64", "input"}, default "float64"
        Dtype of the streamed products ``X_c^T [X_c | Y_c]``. ``"float64"`` widens each block first: safe
        for any conditioning, at the float64 GEMM rate (about half the float32 rate on CPUs).
        ``"input"`` multiplies in the input dtype (float32 data at the float32 GEMM rate, still
        accumulated into float64 every few blocks and shifted by a reference mean); the normal equations
        square the condition number of ``X``, so use it only for well-conditioned data (``cond(X)``
        below about 1e3 in float32; the solve falls back to a pseudo-inverse, with a warning, when the
        float32 Gram matrix is no longer positive definite).

    Attributes
    ----------
    coef_ : torch.Tensor of shape (d_x, d_y), float64
        ``W`` (note: the transpose of scikit-learn's ``coef_``).
    intercept_ : torch.Tensor of shape (d_y,), float64
    solver_ : {"cholesky", "eigh"}
        How the normal equations were solved ("eigh": singular system, minimum-norm solution).
    stats_ : dict
        The streamed sufficient statistics (see :meth:`get_stats`).
    n_features_in_, n_features_out_ : int

    Warns
    -----
    IllConditionedWarning
        At fit time when ``alpha == 0`` and ``n_samples <= n_features`` (+1 with an intercept): plain least
        squares then interpolates the anchors (the collapse reported in the Latent Functional Map paper);
        or when the normal equations are singular. At ``inverse_transform`` when ``coef_`` is not square
        or has a condition number above :data:`MAX_INVERSE_COND`: the pseudo-inverse is used.

    Notes
    -----
    ``partial_fit`` solves lazily (see :class:`~latentalign.align.procrustes.StreamingAligner`); the
    under-determination warning is then raised when the solve runs.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 4))
    >>> A = rng.standard_normal((4, 4))
    >>> aligner = Affine().fit(X, X @ A + 1.0)
    >>> bool(np.allclose(aligner.coef_.numpy(), A)), bool(np.allclose(aligner.intercept_.numpy(), 1.0))
    (True, True)
    >>> bool(np.allclose(aligner.inverse_transform(aligner.transform(X)), X))
    True
    """

    _solution_attrs: ClassVar[tuple[str, ...]] = ("coef_", "intercept_", "solver_")

    def __init__(self, *, alpha: float = 0.0, fit_intercept: bool = True, products: str = "float64") -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.products = products

    def _check_params(self) -> None:
        check_number(self.alpha, "alpha", low=0.0)
        check_choice(self.fit_intercept, "fit_intercept", [True, False])
        check_choice(self.products, "products", ["float64", "input"])

    def _stats_options(self) -> dict[str, Any]:
        return {"gram": True, "product_dtype": _F64 if self.products == "float64" else None}

    def _min_rows(self) -> int:
        return 2 if self.fit_intercept else 1

    def _solve(self, stats: CrossStats) -> dict[str, Any]:
        alpha = float(self.alpha)
        warned = warn_underdetermined(stats.n, stats.dim_x, alpha, fit_intercept=bool(self.fit_intercept), stacklevel=5)
        sol = least_squares_from_stats(stats, alpha=alpha, fit_intercept=bool(self.fit_intercept))
        if sol["method"] != "cholesky" and not warned:
            warn_pseudo_inverse(stacklevel=5)
        return {"coef_": sol["coef"], "intercept_": sol["intercept"], "solver_": sol["method"]}

    def _forward_map(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.coef_.to(_F64), self.intercept_.to(_F64)

    def _backward_map(self) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self.__dict__.get("_inverse_cache")
        if cache is None or cache[0] is not self.coef_:
            cache = (self.coef_, *self._compute_inverse())
            self._inverse_cache = cache
        _, W_inv, message = cache
        if message:
            warnings.warn(message, IllConditionedWarning, stacklevel=4)
        return W_inv, -(self.intercept_.to(_F64) @ W_inv)

    def _compute_inverse(self) -> tuple[torch.Tensor, str | None]:
        W = self.coef_.to(_F64)
        d_x, d_y = W.shape
        S = torch.linalg.svdvals(W)
        smax = float(S.max()) if S.numel() else 0.0
        cond = smax / float(S.min()) if float(S.min()) > 0 else float("inf")
        if d_x == d_y and cond <= MAX_INVERSE_COND:
            return torch.linalg.inv(W), None
        pinv = torch.linalg.pinv(W, rtol=1.0 / MAX_INVERSE_COND)
        if d_x != d_y:
            reason = f"coef_ is not square ({d_x} x {d_y})"
        else:
            reason = f"coef_ is ill-conditioned (condition number {cond:.2e} > {MAX_INVERSE_COND:.0e})"
        message = (
            f"{reason}, so inverse_transform uses the pseudo-inverse (singular values below "
            f"{1.0 / MAX_INVERSE_COND:.0e} x the largest dropped): it returns the least-squares preimage, "
            "not an exact inverse. Fit Affine().fit(Y, X) for a dedicated reverse map."
        )
        return pinv, message
