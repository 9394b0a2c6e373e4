"""The :class:`Aligner` estimator shell shared by every alignment method.

An aligner learns a map from a *source* space (rows of ``X``) to a *target* space (rows of ``Y``), or to a
shared space both are sent to. Rows of ``X`` and ``Y`` are paired: row ``i`` of each embeds the same item.
Subclasses implement ``fit`` (validated with :meth:`Aligner._validate_pair`) and the tensor-level
``_transform`` / ``_inverse_transform``; this class does the validation, the backend round trip
(numpy in -> numpy out, torch in -> torch out, same dtype and device) and the default score.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from latentalign._array import ArrayLike, ArraySpec, check_same_backend, restore
from latentalign._base import BaseEstimator
from latentalign._validation import check_array, check_is_fitted, check_n_features, check_paired

__all__ = ["Aligner", "cast_like"]


class Aligner(BaseEstimator):
    """Base class of all aligners (scikit-learn estimator shape).

    Fitted attributes common to all aligners: ``n_features_in_`` (source dimension) and
    ``n_features_out_`` (dimension of what :meth:`transform` returns).
    """

    #: Whether :meth:`partial_fit` streams sufficient statistics for this method.
    supports_partial_fit: ClassVar[bool] = False
    #: Whether :meth:`inverse_transform` is available.
    invertible: ClassVar[bool] = True

    # -- to implement -------------------------------------------------------------------------------
    def fit(self, X: ArrayLike, Y: ArrayLike) -> Aligner:  # pragma: no cover - abstract
        """Learn the map from paired rows of ``X`` (source) and ``Y`` (target); return ``self``."""
        raise NotImplementedError

    def _transform(self, X: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _inverse_transform(self, Z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no inverse_transform.")

    # -- shared behaviour ---------------------------------------------------------------------------
    def _validate_pair(
        self, X: Any, Y: Any, *, min_rows: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor, ArraySpec]:
        """Check a paired fit input; return both as tensors on the device and dtype of ``X``."""
        check_same_backend(X=X, Y=Y)
        Xt, spec = check_array(X, "X", min_rows=min_rows)
        Yt, _ = check_array(Y, "Y", min_rows=min_rows)
        check_paired(Xt, Yt)
        if Xt.device != Yt.device:
            raise ValueError(
                f"X is on {Xt.device} and Y is on {Yt.device}; move both to the same device first."
            )
        return Xt, Yt, spec

    def transform(self, X: ArrayLike) -> ArrayLike:
        """Map source embeddings into the target (or shared) space.

        Parameters
        ----------
        X : array of shape (n_samples, n_features_in_)

        Returns
        -------
        array of shape (n_samples, n_features_out_)
            Same kind (numpy/torch), dtype and device as ``X``.
        """
        check_is_fitted(self)
        Xt, spec = check_array(X, "X")
        check_n_features(Xt, self.n_features_in_, type(self).__name__, "X")
        return restore(self._transform(Xt.to(spec.compute_dtype)), spec)

    def inverse_transform(self, Z: ArrayLike) -> ArrayLike:
        """Map target-space embeddings back into the source space (see each method for exactness)."""
        if not self.invertible:
            raise NotImplementedError(
                f"{type(self).__name__} is not invertible; map the other way by fitting "
                f"{type(self).__name__}().fit(Y, X)."
            )
        check_is_fitted(self)
        Zt, spec = check_array(Z, "Z")
        check_n_features(Zt, self.n_features_out_, type(self).__name__ + " (output side)", "Z")
        return restore(self._inverse_transform(Zt.to(spec.compute_dtype)), spec)

    def fit_transform(self, X: ArrayLike, Y: ArrayLike) -> ArrayLike:
        """Fit, then transform ``X``."""
        return self.fit(X, Y).transform(X)

    def score(self, X: ArrayLike, Y: ArrayLike) -> float:
        """Coefficient of determination R^2 of ``transform(X)`` against ``Y`` (1.0 is a perfect map).

        R^2 = 1 - sum ||transform(x_i) - y_i||^2 / sum ||y_i - mean(Y)||^2, computed in float64.
        Higher is better; it can be negative for a map worse than predicting the mean.
        """
        check_same_backend(X=X, Y=Y)
        Yt, _ = check_array(Y, "Y")
        Xt, _ = check_array(X, "X")
        check_paired(Xt, Yt)
        pred, _ = check_array(self.transform(X), "transform(X)")
        if pred.shape[1] != Yt.shape[1]:
            raise ValueError(
                f"Y has {Yt.shape[1]} features but transform(X) returns {pred.shape[1]}; score compares "
                "vectors in the target space."
            )
        pred = pred.to(torch.float64)
        target = Yt.to(device=pred.device, dtype=torch.float64)
        residual = (pred - target).pow(2).sum()
        total = (target - target.mean(0)).pow(2).sum()
        if float(total) == 0.0:
            raise ValueError("Y has zero variance; R^2 is undefined. Score on more than one distinct row.")
        return float(1.0 - residual / total)


def cast_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Return fitted tensor ``t`` with the dtype and device of the input ``like``."""
    return t.to(device=like.device, dtype=like.dtype)
