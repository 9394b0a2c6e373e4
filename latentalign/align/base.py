"""The :class:`Aligner` estimator shell shared by every alignment method.

An aligner learns a map from a *source* space (rows of ``X``) to a *target* space (rows of ``Y``), or to a
shared space both are sent to. Rows of ``X`` and ``Y`` are paired: row ``i`` of each embeds the same item.
Subclasses implement ``fit`` (validated with :meth:`Aligner._validate_pair`) and the tensor-level
``_transform`` / ``_inverse_transform``; this class does the validation, the backend round trip
(numpy in -> numpy out, torch in -> torch out, same dtype and device) and the default score.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import TransformerMixin
from sklearn.utils import Tags
from sklearn.utils.validation import validate_data

from latentalign._array import ArrayLike, ArraySpec, restore
from latentalign._validation import check_array, check_is_fitted, check_n_features, check_pair
from latentalign.base import BaseEstimator, TwoViewMixin, feature_names
from latentalign.persistence import Persistable

__all__ = ["Aligner", "PreprocessedMapAligner", "cast_like", "check_unpaired"]


class Aligner(Persistable, TwoViewMixin, TransformerMixin, BaseEstimator):
    """Base class of all aligners: a scikit-learn transformer fitted on two paired views.

    ``fit(X, Y)`` learns a map from the source space (rows of ``X``) to the target space (rows of ``Y``,
    paired row by row with ``X``); ``transform`` applies it. Works in a
    :class:`~sklearn.pipeline.Pipeline` (as the last step, after a scaler), with
    :func:`~sklearn.base.clone`, :class:`~sklearn.model_selection.GridSearchCV` and
    :func:`~sklearn.model_selection.cross_validate` (scored by :meth:`score`).

    Fitted attributes common to all aligners: ``n_features_in_`` (source dimension),
    ``n_features_out_`` (dimension of what :meth:`transform` returns) and, when fitted on a DataFrame,
    ``feature_names_in_``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from latentalign import Affine
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((100, 5)) * [1.0, 2.0, 3.0, 4.0, 5.0]
    >>> W = rng.standard_normal((5, 3))
    >>> pipe = make_pipeline(StandardScaler(), Affine()).fit(X, X @ W + 1.0)
    >>> round(pipe.score(X, X @ W + 1.0), 6)  # the scaler's per-column scale is undone by the affine map
    1.0
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

    def _module(self, *, trainable: bool, inverse: bool) -> torch.nn.Module:  # pragma: no cover - abstract
        """The fitted map as a module, in float64 or the fitted dtype (cast by :meth:`to_module`)."""
        raise NotImplementedError(f"{type(self).__name__} has no torch module.")

    # -- shared behaviour ---------------------------------------------------------------------------
    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _validate_pair(self, X: Any, Y: Any, *, min_rows: int = 1) -> tuple[torch.Tensor, torch.Tensor, ArraySpec]:
        """Check a paired fit input; return both as tensors (common dtype, one device) and ``X``'s spec.

        Also records ``feature_names_in_`` when ``X`` is a DataFrame (scikit-learn's convention).
        """
        Xt, Yt, spec = check_pair(X, Y, min_rows=min_rows)
        self._remember_feature_names(X)
        return Xt, Yt, spec

    def _remember_feature_names(self, X: Any) -> None:
        """Set (or clear) ``feature_names_in_`` from the columns of a DataFrame ``X``."""
        validate_data(self, X, reset=True, skip_check_array=True)

    def _check_feature_names(self, X: Any) -> None:
        if hasattr(X, "columns") or hasattr(self, "feature_names_in_"):
            validate_data(self, X, reset=False, skip_check_array=True)

    def transform_target(self, Y: ArrayLike) -> ArrayLike:
        """Return target-space embeddings ``Y`` in the space :meth:`transform` maps into.

        For most aligners :meth:`transform` lands in ``Y``'s own space, so this is the identity (``Y``
        itself is returned, after validation). Aligners that map both sides into a shared space (e.g.
        relative representations) override it. Train a target-side head on ``transform_target(Y)`` to
        stitch with any aligner.

        Examples
        --------
        >>> import numpy as np
        >>> from latentalign import Procrustes
        >>> Y = np.eye(3)
        >>> Procrustes().fit(Y, Y).transform_target(Y) is Y
        True
        """
        check_is_fitted(self)
        check_array(Y, "Y")
        return Y

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns: the class name in lower case, numbered (``procrustes0``, ...)."""
        check_is_fitted(self)
        return feature_names(type(self).__name__.lower(), int(self.n_features_out_))

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
        self._check_feature_names(X)
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

    def to_module(
        self,
        *,
        trainable: bool = False,
        inverse: bool = False,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.nn.Module:
        """The fitted map as a ``torch.nn.Module`` whose ``forward`` equals :meth:`transform` on tensors.

        The map is held in buffers, or in ``nn.Parameter`` objects with ``trainable=True``: gradients
        reach the input (and the map when trainable), ``.to()`` moves it, ``state_dict`` holds it, and
        ``forward`` traces with ``torch.export`` and ``torch.compile(fullgraph=True)``. It is built once
        (``forward`` does no validation); see :mod:`latentalign.align.modules` for the module classes.

        Parameters
        ----------
        trainable : bool, default False
            Hold the map's tensors as parameters, so fine-tuning can update them.
        inverse : bool, default False
            The module of :meth:`inverse_transform` instead (``NotImplementedError`` where the aligner
            has no inverse module).
        dtype : torch.dtype, optional
            Dtype of the module (default ``torch.get_default_dtype()``, as for ``nn.Linear``); the map is
            computed in float64 and cast once.
        device : torch.device or str, optional
            Device of the module (default: where the fitted state is).

        Returns
        -------
        torch.nn.Module
            Takes and returns tensors of its dtype and device.

        Raises
        ------
        NotFittedError
            When the aligner is not fitted.

        Examples
        --------
        >>> import torch
        >>> from latentalign import Procrustes
        >>> X = torch.randn(50, 4, dtype=torch.float64)
        >>> Q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
        >>> aligner = Procrustes().fit(X, X @ Q)
        >>> module = aligner.to_module(dtype=torch.float64)
        >>> bool(torch.allclose(module(X), aligner.transform(X)))
        True
        """
        from latentalign.align.modules import finalize_module

        check_is_fitted(self)
        if inverse and not self.invertible:
            raise NotImplementedError(
                f"{type(self).__name__} is not invertible, so it has no inverse module; fit "
                f"{type(self).__name__}().fit(Y, X) and call to_module() on it."
            )
        module = self._module(trainable=bool(trainable), inverse=bool(inverse))
        return finalize_module(module, dtype=dtype, device=device)

    def score(self, X: ArrayLike, Y: ArrayLike) -> float:
        """Coefficient of determination R^2 of ``transform(X)`` against ``Y`` (1.0 is a perfect map).

        R^2 = 1 - sum ||transform(x_i) - y_i||^2 / sum ||y_i - mean(Y)||^2, computed in float64.
        Higher is better; it can be negative for a map worse than predicting the mean.
        """
        predicted = self.transform(X)
        _, Yt, _ = check_pair(X, Y)
        pred, _ = check_array(predicted, "transform(X)")
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


class PreprocessedMapAligner(Aligner):
    """An aligner whose fit leaves a map between two preprocessed spaces.

    Subclasses set ``preprocess_x_`` and ``preprocess_y_`` (fitted
    :class:`~latentalign.preprocessing.Chain` steps of each side) and ``map_`` (a fitted aligner between
    the preprocessed spaces, e.g. :class:`~latentalign.align.procrustes.Procrustes`); ``transform`` is
    ``Y``'s steps undone after the map after ``X``'s steps, and the inverse and the torch module follow.
    """

    def _transform(self, X: torch.Tensor) -> torch.Tensor:
        return self.preprocess_y_._backward(self.map_._transform(self.preprocess_x_._forward(X)))

    def _inverse_transform(self, Z: torch.Tensor) -> torch.Tensor:
        return self.preprocess_x_._backward(self.map_._inverse_transform(self.preprocess_y_._forward(Z)))

    def _module(self, *, trainable: bool, inverse: bool) -> torch.nn.Module:
        from latentalign.align.modules import preprocessor_module, sandwich

        before, after = (
            (self.preprocess_y_, self.preprocess_x_) if inverse else (self.preprocess_x_, self.preprocess_y_)
        )
        core = self.map_.to_module(trainable=trainable, inverse=inverse, dtype=torch.float64)
        return sandwich(preprocessor_module(before), core, preprocessor_module(after, inverse=True))


def cast_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Return fitted tensor ``t`` with the dtype and device of the input ``like``."""
    return t.to(device=like.device, dtype=like.dtype)


def check_unpaired(X: ArrayLike, Y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two sets of rows that need not be paired (counts and widths may differ).

    Both must be of one backend and on one device, with at least 2 finite rows each; returns them as
    tensors in their common compute dtype.
    """
    Xt, Yt, _ = check_pair(X, Y, paired=False, min_rows=2)
    return Xt, Yt
