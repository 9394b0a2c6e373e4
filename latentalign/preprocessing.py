"""Invertible preprocessing steps, fitted on one space and saved with the aligner that uses them.

Each step has ``fit(X)``, ``transform(X)`` and ``inverse_transform(Z)`` and works on numpy arrays and
torch tensors alike. :class:`L2Normalize` is invertible only up to each row's norm, which it does not keep:
its inverse rescales unit rows to the mean training norm (documented, not silent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sklearn.base import TransformerMixin

from latentalign._array import ArrayLike, restore
from latentalign._validation import check_array, check_choice, check_is_fitted, check_n_features, check_number
from latentalign.base import BaseEstimator, feature_names
from latentalign.persistence import Persistable

__all__ = [
    "Preprocessor",
    "Center",
    "StandardScale",
    "L2Normalize",
    "ZeroPad",
    "Chain",
    "make_preprocessor",
    "list_preprocessors",
]

_EPS = 1e-12


class Preprocessor(Persistable, TransformerMixin, BaseEstimator):
    """Base class: subclasses implement ``_fit``, ``_forward`` and ``_backward`` on float tensors.

    A scikit-learn transformer (``fit(X, y=None)``, ``transform``, ``inverse_transform``,
    ``fit_transform``, ``get_feature_names_out``).
    """

    def fit(self, X: ArrayLike, y: Any = None) -> Preprocessor:
        """Learn the statistics of ``X`` (``y`` is ignored); return ``self``."""
        t, _ = check_array(X, "X")
        self.n_features_in_ = int(t.shape[1])
        self._fit(t.to(torch.float64) if t.dtype != torch.float64 else t)
        return self

    def transform(self, X: ArrayLike) -> ArrayLike:
        """Apply the step to ``X`` (same kind, dtype and device back)."""
        check_is_fitted(self)
        t, spec = check_array(X, "X")
        check_n_features(t, self.n_features_in_, type(self).__name__)
        return restore(self._forward(t.to(spec.compute_dtype)), spec)

    def inverse_transform(self, Z: ArrayLike) -> ArrayLike:
        """Undo the step (see the class docstring for steps that are invertible only in part)."""
        check_is_fitted(self)
        t, spec = check_array(Z, "Z")
        check_n_features(t, self.n_features_out_, type(self).__name__ + " (output side)", "Z")
        return restore(self._backward(t.to(spec.compute_dtype)), spec)

    def get_feature_names_out(self, input_features: Any = None) -> Any:
        """Names of the output columns: the class name in lower case, numbered."""
        check_is_fitted(self)
        return feature_names(type(self).__name__.lower(), int(self.n_features_out_))

    @property
    def n_features_out_(self) -> int:
        """Dimension of the transformed space."""
        return self.n_features_in_

    def _fit(self, X: torch.Tensor) -> None:
        pass

    def _forward(self, X: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, Z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.to(device=x.device, dtype=x.dtype)


class Center(Preprocessor):
    """Subtract the per-feature mean learned in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 2.0], [3.0, 6.0]])
    >>> Center().fit_transform(X).mean(axis=0).tolist()
    [0.0, 0.0]
    """

    def _fit(self, X: torch.Tensor) -> None:
        self.mean_ = X.mean(0)

    def _forward(self, X: torch.Tensor) -> torch.Tensor:
        return X - _like(self.mean_, X)

    def _backward(self, Z: torch.Tensor) -> torch.Tensor:
        return Z + _like(self.mean_, Z)


class StandardScale(Preprocessor):
    """Center and divide each feature by its standard deviation (constant features are left unscaled)."""

    def _fit(self, X: torch.Tensor) -> None:
        self.mean_ = X.mean(0)
        std = X.std(0, unbiased=False)
        self.scale_ = torch.where(std > _EPS, std, torch.ones_like(std))

    def _forward(self, X: torch.Tensor) -> torch.Tensor:
        return (X - _like(self.mean_, X)) / _like(self.scale_, X)

    def _backward(self, Z: torch.Tensor) -> torch.Tensor:
        return Z * _like(self.scale_, Z) + _like(self.mean_, Z)


class L2Normalize(Preprocessor):
    """Scale every row to unit Euclidean norm.

    The inverse cannot recover each row's original norm; it rescales to the mean norm seen in ``fit``
    (``mean_norm_``), which is exact for embeddings that were already normalised.
    """

    def _fit(self, X: torch.Tensor) -> None:
        self.mean_norm_ = float(X.norm(dim=1).mean())

    def _forward(self, X: torch.Tensor) -> torch.Tensor:
        return X / X.norm(dim=1, keepdim=True).clamp_min(_EPS)

    def _backward(self, Z: torch.Tensor) -> torch.Tensor:
        return Z / Z.norm(dim=1, keepdim=True).clamp_min(_EPS) * self.mean_norm_


class ZeroPad(Preprocessor):
    """Append zero columns up to ``dim`` features (to compare spaces of different dimension).

    Parameters
    ----------
    dim : int
        Output dimension; must be >= the number of features seen in ``fit``.
    """

    def __init__(self, *, dim: int) -> None:
        self.dim = dim

    def _fit(self, X: torch.Tensor) -> None:
        check_number(self.dim, "dim", integer=True, low=1)
        if self.dim < X.shape[1]:
            raise ValueError(
                f"ZeroPad(dim={self.dim}) cannot pad X with {X.shape[1]} features to fewer; use dim >= {X.shape[1]}."
            )
        self.pad_ = int(self.dim - X.shape[1])

    @property
    def n_features_out_(self) -> int:
        return int(self.dim)

    def _forward(self, X: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(X, (0, self.pad_))

    def _backward(self, Z: torch.Tensor) -> torch.Tensor:
        return Z[:, : self.n_features_in_]


class Chain(Preprocessor):
    """Apply several steps in order; the inverse undoes them in reverse order.

    Parameters
    ----------
    steps : sequence of Preprocessor
    """

    def __init__(self, *, steps: Sequence[Preprocessor] = ()) -> None:
        self.steps = steps

    def fit(self, X: ArrayLike, y: Any = None) -> Chain:
        """Fit every step in order, each on the output of the previous one; return ``self``."""
        t, _ = check_array(X, "X")
        self.n_features_in_ = int(t.shape[1])
        fitted = []
        current: ArrayLike = t
        for step in self.steps:
            step = step.clone()
            current = step.fit(current).transform(current)
            fitted.append(step)
        self.steps_ = fitted
        return self

    @property
    def n_features_out_(self) -> int:
        return self.steps_[-1].n_features_out_ if self.steps_ else self.n_features_in_

    def _forward(self, X: torch.Tensor) -> torch.Tensor:
        for step in self.steps_:
            X = step._forward(X)
        return X

    def _backward(self, Z: torch.Tensor) -> torch.Tensor:
        for step in reversed(self.steps_):
            Z = step._backward(Z)
        return Z


_NAMED = {"center": Center, "standardize": StandardScale, "l2": L2Normalize}


def list_preprocessors() -> list[str]:
    """Names accepted by :func:`make_preprocessor`."""
    return sorted(_NAMED)


def make_preprocessor(spec: str | Sequence[str] | Preprocessor | None, **params: Any) -> Chain:
    """Build a :class:`Chain` from names such as ``"center"`` or ``["center", "l2"]``.

    Examples
    --------
    >>> make_preprocessor(["center", "l2"]).steps
    [Center(), L2Normalize()]
    """
    if spec is None:
        return Chain(steps=[])
    if isinstance(spec, Preprocessor):
        return Chain(steps=[spec])
    names = [spec] if isinstance(spec, str) else list(spec)
    steps = []
    for name in names:
        check_choice(name, "preprocessing step", list_preprocessors())
        steps.append(_NAMED[name](**params))
    return Chain(steps=steps)
