"""The estimator base: scikit-learn's :class:`~sklearn.base.BaseEstimator`, with latentalign's conventions.

Parameters are keyword-only and stored unchanged by ``__init__``; learned state ends in ``_`` and is set
only by ``fit`` (scikit-learn's convention), so :func:`sklearn.base.clone`, ``get_params(deep=True)``,
``set_params`` (nested, e.g. in a :class:`~sklearn.pipeline.Pipeline`), grid search and cross-validation
work on every latentalign estimator.

:class:`TwoViewMixin` declares the two-view contract of aligners in ``__sklearn_tags__``: ``fit(X, Y)``
needs ``Y``, a 2-D array of the target model's embeddings paired row by row with ``X``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import sklearn.base
from sklearn.utils import Tags

__all__ = ["BaseEstimator", "TwoViewMixin"]

T = TypeVar("T", bound="BaseEstimator")


class BaseEstimator(sklearn.base.BaseEstimator):
    """scikit-learn estimator with latentalign's helpers (``clone``, ``is_fitted``, float dtypes kept).

    Examples
    --------
    >>> from sklearn.base import clone
    >>> from latentalign import Affine
    >>> a = Affine(alpha=0.5)
    >>> clone(a).get_params()["alpha"], a.set_params(alpha=2.0).alpha
    (0.5, 2.0)
    """

    def clone(self: T) -> T:
        """Return an unfitted copy with the same parameters (:func:`sklearn.base.clone`)."""
        return sklearn.base.clone(self)

    def _fitted_attributes(self) -> dict[str, Any]:
        """Learned state: public instance attributes whose name ends in ``_``."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def _prepare_save(self) -> None:
        """Hook run before the fitted state is saved (e.g. to finish a lazy solve)."""

    def __sklearn_is_fitted__(self) -> bool:
        return bool(self._fitted_attributes())

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` has been called."""
        return self.__sklearn_is_fitted__()

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class TwoViewMixin:
    """Tags of an estimator fitted on two paired views: ``fit(X, Y)`` with ``Y`` 2-D and required.

    ``Y`` holds the target model's embeddings of the same items as the rows of ``X``; it is never a 1-D
    label vector.
    """

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.target_tags.required = True
        tags.target_tags.one_d_labels = False
        tags.target_tags.two_d_labels = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        return tags


def feature_names(prefix: str, n: int) -> np.ndarray:
    """Output feature names ``prefix0 .. prefix{n-1}`` as scikit-learn's ``get_feature_names_out`` returns.

    Examples
    --------
    >>> feature_names("procrustes", 3).tolist()
    ['procrustes0', 'procrustes1', 'procrustes2']
    """
    return np.asarray([f"{prefix}{i}" for i in range(n)], dtype=object)
