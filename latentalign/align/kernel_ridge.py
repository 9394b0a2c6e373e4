"""Kernel ridge regression aligner: an RBF kernel map from the source space to the target space.

The map is ``f(x) = sum_j k(x, s_j) c_j + b`` over support rows ``s_j`` with dual coefficients ``c_j``
(rows of a ``(m, d_y)`` matrix) and ``k(x, s) = exp(-gamma ||x - s||^2)``. Two solvers give it:

* exact (``m = n``, every training row): ``(K + alpha I) C = Y - b`` by a float64 Cholesky factorisation,
  the solve scikit-learn's :class:`~sklearn.kernel_ridge.KernelRidge` runs (``O(n^3)`` time, ``n^2`` memory:
  200 MB at ``n = 5,000``);
* Nystroem (``m = n_components`` landmark rows drawn at random): the features
  ``phi(x) = k(x, L) K_LL^{-1/2}`` and a ridge regression on them, as scikit-learn's
  :class:`~sklearn.kernel_approximation.Nystroem` followed by :class:`~sklearn.linear_model.Ridge` (with
  ``fit_intercept=False``) computes. The ridge weights ``W`` fold into dual coefficients
  ``C = K_LL^{-1/2} W`` on the landmarks, so both solvers predict with the same formula. With every row as a
  landmark the Nystroem solution equals the exact one.

The solve is written here (about twenty lines of torch) rather than delegated to scikit-learn so that it
runs on the input's device, keeps float64 throughout, and yields the support rows and dual coefficients
that :meth:`KernelRidgeAligner.to_module` needs as buffers; the tests compare it with scikit-learn's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch import nn

from latentalign._array import ArrayLike
from latentalign._validation import check_choice, check_number, check_pair
from latentalign.align.base import Aligner
from latentalign.functional.blocks import one_torch_thread

__all__ = ["KernelRidgeAligner", "KernelRidgeMap", "rbf_kernel", "scale_gamma", "MAX_EXACT_ROWS"]

_F64 = torch.float64
#: ``solver="auto"`` solves exactly up to this many rows and with Nystroem above.
MAX_EXACT_ROWS = 5000
# Rows of kernel evaluated at once at transform time (bounds the (rows, m) kernel block).
_CHUNK_ROWS = 4096
# Eigenvalues of K_LL below this fraction of the largest are treated as zero (as Nystroem's 1e-12 floor).
_EIG_RTOL = 1e-12


def rbf_kernel(X: torch.Tensor, S: torch.Tensor, gamma: float) -> torch.Tensor:
    """RBF kernel matrix ``exp(-gamma ||x_i - s_j||^2)`` of the rows of ``X`` against the rows of ``S``.

    Squared distances are computed as ``||x||^2 + ||s||^2 - 2 <x, s>`` (one matrix product, as scikit-learn
    does) after shifting both sides by the mean of ``S``, and clipped at 0.

    Parameters
    ----------
    X : torch.Tensor of shape (n, d)
    S : torch.Tensor of shape (m, d)
        Same dtype and device as ``X``.
    gamma : float
        Inverse squared length scale (> 0).

    Returns
    -------
    torch.Tensor of shape (n, m)

    Examples
    --------
    >>> import torch
    >>> from sklearn.metrics.pairwise import rbf_kernel as sk_rbf
    >>> X, S = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    >>> bool(torch.allclose(rbf_kernel(X, S, 0.5), torch.from_numpy(sk_rbf(X.numpy(), S.numpy(), gamma=0.5))))
    True
    """
    mid = S.mean(0)
    Xs, Ss = X - mid, S - mid
    d2 = torch.addmm(
        Xs.square().sum(1, keepdim=True) + Ss.square().sum(1)[None, :], Xs, Ss.T, beta=1.0, alpha=-2.0
    ).clamp_min_(0.0)
    return d2.mul_(-gamma).exp_()


def scale_gamma(X: torch.Tensor) -> float:
    """``gamma="scale"``: ``1 / (n_features * X.var())`` over all entries, as scikit-learn's SVC (1.0 if ``X`` is constant).

    Examples
    --------
    >>> import torch
    >>> scale_gamma(torch.tensor([[0.0, 2.0], [2.0, 0.0]]))
    0.5
    """
    var = float(X.to(_F64).var(unbiased=False))
    return 1.0 / (X.shape[1] * var) if var > 0 else 1.0


class KernelRidgeMap(nn.Module):
    """``exp(-gamma ||x - s_j||^2) @ dual_coef + intercept``: the module of :class:`KernelRidgeAligner`.

    Parameters
    ----------
    support : torch.Tensor of shape (m, d_x)
        Support rows (the training rows, or the Nystroem landmarks).
    dual_coef : torch.Tensor of shape (m, d_y)
    intercept : torch.Tensor of shape (d_y,)
    gamma : float
    trainable : bool, default False
        Hold ``support``, ``dual_coef`` and ``intercept`` as ``nn.Parameter`` objects (else buffers).

    Examples
    --------
    >>> import torch
    >>> m = KernelRidgeMap(torch.zeros(1, 2), torch.ones(1, 3), torch.zeros(3), gamma=1.0)
    >>> m(torch.zeros(1, 2))
    tensor([[1., 1., 1.]])
    """

    support: torch.Tensor
    dual_coef: torch.Tensor
    intercept: torch.Tensor

    def __init__(
        self,
        support: torch.Tensor,
        dual_coef: torch.Tensor,
        intercept: torch.Tensor,
        *,
        gamma: float,
        trainable: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("support", support), ("dual_coef", dual_coef), ("intercept", intercept)):
            value = value.detach().clone(memory_format=torch.contiguous_format)
            if trainable:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        self.gamma = float(gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch ``x`` of shape ``(n, d_x)`` to ``(n, d_y)``."""
        d2 = (
            x.square().sum(1, keepdim=True) + self.support.square().sum(1)[None, :] - 2.0 * (x @ self.support.T)
        ).clamp_min(0.0)
        return torch.exp(-self.gamma * d2) @ self.dual_coef + self.intercept

    def config(self) -> dict[str, Any]:
        """JSON description (see :func:`latentalign.align.modules.module_config`)."""
        m, d_x = self.support.shape
        return {
            "n_support": int(m),
            "in_features": int(d_x),
            "out_features": int(self.dual_coef.shape[1]),
            "gamma": self.gamma,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], trainable: bool) -> KernelRidgeMap:
        """An empty module of the described shape (fill it with ``load_state_dict``).

        Examples
        --------
        >>> import torch
        >>> m = KernelRidgeMap(torch.randn(4, 3), torch.randn(4, 2), torch.randn(2), gamma=0.5)
        >>> copy = KernelRidgeMap.from_config(m.config(), trainable=False)
        >>> _ = copy.load_state_dict(m.state_dict())
        >>> x = torch.randn(5, 3)
        >>> bool(torch.equal(copy(x), m(x)))
        True
        """
        m, d_x, d_y = int(config["n_support"]), int(config["in_features"]), int(config["out_features"])
        return cls(
            torch.zeros(m, d_x),
            torch.zeros(m, d_y),
            torch.zeros(d_y),
            gamma=float(config["gamma"]),
            trainable=trainable,
        )

    def extra_repr(self) -> str:
        m, d_x = self.support.shape
        return f"n_support={int(m)}, in_features={int(d_x)}, out_features={int(self.dual_coef.shape[1])}, gamma={self.gamma:.4g}"


class KernelRidgeAligner(Aligner):
    """Nonlinear map ``Y ~ f(X)`` by kernel ridge regression with an RBF kernel.

    Fitted on paired rows (``X`` source, ``Y`` target); ``transform`` predicts target embeddings. The map
    is smooth and interpolates between training rows; far from them it returns to ``intercept_`` (the target
    mean with ``center=True``), so it does not extrapolate as a linear map does. See the module docstring
    for the two solvers.

    Parameters
    ----------
    alpha : float, default 1.0
        Ridge penalty (> 0), as scikit-learn's ``KernelRidge(alpha=...)``.
    gamma : "scale" or float, default "scale"
        RBF inverse squared length scale; ``"scale"`` uses ``1 / (n_features * X.var())`` of the training
        ``X`` (scikit-learn's SVC convention), stored in ``gamma_``.
    center : bool, default True
        Regress ``Y - mean(Y)`` and add the mean back (``intercept_``); ``False`` regresses ``Y`` itself,
        exactly as scikit-learn's ``KernelRidge``, which predicts 0 far from the training rows.
    solver : {"auto", "exact", "nystroem"}, default "auto"
        ``"auto"``: exact up to :data:`MAX_EXACT_ROWS` (5,000) rows, Nystroem above.
    n_components : int, default 1000
        Landmark rows of the Nystroem solver (all rows when there are fewer).
    random_state : int, numpy Generator/RandomState or None, default None
        Seeds the draw of the Nystroem landmarks (the exact solver draws nothing).

    Attributes
    ----------
    support_ : torch.Tensor of shape ``(m, n_features_in_)``, float64
        The training rows (exact) or the landmarks (Nystroem).
    dual_coef_ : torch.Tensor of shape ``(m, n_features_out_)``, float64
    intercept_ : torch.Tensor of shape ``(n_features_out_,)``, float64
    gamma_ : float
    solver_ : {"exact", "nystroem"}
    n_features_in_, n_features_out_ : int

    Notes
    -----
    There is no inverse map: :meth:`inverse_transform` raises ``NotImplementedError``; fit
    ``KernelRidgeAligner().fit(Y, X)`` for the reverse direction. :meth:`score` is the R^2 of
    :class:`~latentalign.align.base.Aligner`.

    Examples
    --------
    A smooth nonlinear map that no affine map fits:

    >>> import numpy as np
    >>> from latentalign import Affine
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((400, 3))
    >>> Y = np.tanh(2.0 * X) @ rng.standard_normal((3, 4))
    >>> kr = KernelRidgeAligner(alpha=1e-3).fit(X[:300], Y[:300])
    >>> bool(kr.score(X[300:], Y[300:]) > 0.99 > Affine().fit(X[:300], Y[:300]).score(X[300:], Y[300:]))
    True
    """

    invertible: ClassVar[bool] = False

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        gamma: float | str = "scale",
        center: bool = True,
        solver: str = "auto",
        n_components: int = 1000,
        random_state: Any = None,
    ) -> None:
        self.alpha = alpha
        self.gamma = gamma
        self.center = center
        self.solver = solver
        self.n_components = n_components
        self.random_state = random_state

    def _check_params(self) -> None:
        check_number(self.alpha, "alpha", low=0.0, low_inclusive=False)
        if isinstance(self.gamma, str):
            check_choice(self.gamma, "gamma", ["scale"])
        else:
            check_number(self.gamma, "gamma", low=0.0, low_inclusive=False)
        check_choice(self.center, "center", [True, False])
        check_choice(self.solver, "solver", ["auto", "exact", "nystroem"])
        check_number(self.n_components, "n_components", integer=True, low=1)

    def fit(self, X: ArrayLike, Y: ArrayLike) -> KernelRidgeAligner:
        """Fit the kernel ridge map on paired rows of ``X`` (source) and ``Y`` (target); return ``self``.

        Parameters
        ----------
        X : array of shape (n_samples, d_x)
        Y : array of shape (n_samples, d_y)
            Paired rows, numpy arrays or torch tensors (not mixed); at least 2.
        """
        self._check_params()
        Xt, Yt, _ = check_pair(X, Y, min_rows=2, purpose=type(self).__name__)
        self._remember_feature_names(X)
        X64, Y64 = Xt.to(_F64), Yt.to(_F64)
        n = X64.shape[0]
        gamma = scale_gamma(X64) if isinstance(self.gamma, str) else float(self.gamma)
        intercept = Y64.mean(0) if self.center else torch.zeros_like(Y64[0])
        target = Y64 - intercept
        solver = self.solver
        if solver == "auto":
            solver = "exact" if n <= MAX_EXACT_ROWS else "nystroem"
        alpha = float(self.alpha)
        if solver == "exact":
            support, dual = X64.clone(), _exact_dual(X64, target, gamma, alpha)
        else:
            rng = check_random_state(self.random_state)
            m = min(int(self.n_components), n)
            rows = np.sort(rng.permutation(n)[:m]) if m < n else np.arange(n)
            support = X64[torch.as_tensor(rows, device=X64.device)].clone()
            dual = _nystroem_dual(X64, target, support, gamma, alpha)
        self.support_ = support
        self.dual_coef_ = dual
        self.intercept_ = intercept
        self.gamma_ = gamma
        self.solver_ = solver
        self.n_features_in_ = int(X64.shape[1])
        self.n_features_out_ = int(Y64.shape[1])
        return self

    def _transform(self, X: torch.Tensor) -> torch.Tensor:
        # float64 whatever the input: the dual coefficients of a small alpha are large and cancel
        support = self.support_.to(device=X.device, dtype=_F64)
        dual = self.dual_coef_.to(device=X.device, dtype=_F64)
        intercept = self.intercept_.to(device=X.device, dtype=_F64)
        out = torch.empty((X.shape[0], dual.shape[1]), dtype=X.dtype, device=X.device)
        for start in range(0, X.shape[0], _CHUNK_ROWS):
            block = X[start : start + _CHUNK_ROWS].to(_F64)
            out[start : start + _CHUNK_ROWS] = rbf_kernel(block, support, self.gamma_) @ dual + intercept
        return out

    def transform(self, X: ArrayLike) -> ArrayLike:
        """Predicted target embeddings of source rows ``X``.

        Parameters
        ----------
        X : array of shape ``(n_samples, n_features_in_)``

        Returns
        -------
        array of shape ``(n_samples, n_features_out_)``
            Same kind (numpy/torch), dtype and device as ``X`` (computed in float64).
        """
        return super().transform(X)

    def _module(self, *, trainable: bool, inverse: bool) -> nn.Module:
        return KernelRidgeMap(self.support_, self.dual_coef_, self.intercept_, gamma=self.gamma_, trainable=trainable)


def _exact_dual(X: torch.Tensor, target: torch.Tensor, gamma: float, alpha: float) -> torch.Tensor:
    K = rbf_kernel(X, X, gamma)
    K.diagonal().add_(alpha)
    with one_torch_thread():
        L, info = torch.linalg.cholesky_ex(K)
        if int(info) == 0:
            return torch.cholesky_solve(target, L)
        # K + alpha I is positive definite in exact arithmetic; rounding breaks that only for a tiny alpha
        return torch.linalg.lstsq(K, target, driver="gelsd" if K.device.type == "cpu" else None).solution


def _nystroem_dual(
    X: torch.Tensor, target: torch.Tensor, landmarks: torch.Tensor, gamma: float, alpha: float
) -> torch.Tensor:
    K_mm = rbf_kernel(landmarks, landmarks, gamma)
    with one_torch_thread():
        evals, evecs = torch.linalg.eigh(K_mm)
    evals = evals.clamp_min(float(evals.max()) * _EIG_RTOL)
    normalization = (evecs / evals.sqrt()) @ evecs.T  # K_mm^{-1/2}
    gram = torch.zeros((landmarks.shape[0],) * 2, dtype=_F64, device=X.device)
    cross = torch.zeros((landmarks.shape[0], target.shape[1]), dtype=_F64, device=X.device)
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        phi = rbf_kernel(X[start : start + _CHUNK_ROWS], landmarks, gamma) @ normalization
        gram += phi.T @ phi
        cross += phi.T @ target[start : start + _CHUNK_ROWS]
    gram.diagonal().add_(alpha)
    with one_torch_thread():
        weights = torch.linalg.solve(gram, cross)
    return normalization @ weights
