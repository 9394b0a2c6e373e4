"""The one place that checks user input.

Every check raises with a message that names the argument, says what was expected and what was
received, and suggests the fix. Nothing here copies the data: finiteness is checked chunk by chunk.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse
import torch

from latentalign._array import ArraySpec, as_tensor, check_same_backend
from latentalign.exceptions import IllConditionedWarning, NotFittedError

__all__ = [
    "check_array",
    "check_pair",
    "check_paired",
    "check_n_features",
    "check_is_fitted",
    "check_choice",
    "check_number",
    "check_same_backend",
    "warn_underdetermined",
    "external_stacklevel",
    "FINITE_CHECK_ROWS",
]

FINITE_CHECK_ROWS = 65536


def check_array(
    X: Any,
    name: str = "X",
    *,
    min_rows: int = 1,
    min_features: int = 1,
    ensure_finite: bool = True,
) -> tuple[torch.Tensor, ArraySpec]:
    """Validate a 2-D numeric array and return it as a tensor (no copy) with its spec.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        numpy array or torch tensor.
    name : str
        The argument's name, used in error messages.
    min_rows, min_features : int
        Smallest accepted number of rows and columns.
    ensure_finite : bool
        Reject NaN and infinite values.

    Returns
    -------
    tensor : torch.Tensor
    spec : ArraySpec

    Examples
    --------
    >>> import numpy as np
    >>> t, spec = check_array(np.ones((3, 2)), "X")
    >>> tuple(t.shape), spec.backend
    ((3, 2), 'numpy')
    """
    if X is None:
        raise TypeError(f"{name} is None; expected a 2-D array of shape (n_samples, n_features).")
    if scipy.sparse.issparse(X):
        raise TypeError(
            f"{name} is a sparse {type(X).__name__}; sparse data is not supported (embeddings are dense). "
            f"Convert it with {name}.toarray()."
        )
    kind = type(X).__name__
    try:
        if not isinstance(X, torch.Tensor):
            X = np.asarray(X)  # lists, DataFrames and other array-likes
        if X.is_complex() if isinstance(X, torch.Tensor) else X.dtype.kind == "c":
            raise ValueError(
                f"Complex data not supported: {name} has dtype {X.dtype}; expected real floating-point values."
            )
        t, spec = as_tensor(X)
    except TypeError as exc:
        raise TypeError(
            f"{name} must be a numeric numpy array or torch tensor, got {kind} ({exc}). "
            f"Convert it with np.asarray({name}, dtype=np.float32)."
        ) from None
    if t.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features), got shape {tuple(t.shape)}. "
            f"Reshape your data: {name}.reshape(1, -1) for a single sample or {name}.reshape(-1, 1) for a "
            "single feature."
        )
    if t.shape[0] < min_rows:
        raise ValueError(
            f"{name} has {t.shape[0]} rows, but at least {min_rows} are required (n_samples = {t.shape[0]})."
        )
    if t.shape[1] < min_features:
        raise ValueError(
            f"{name} has {t.shape[1]} feature(s) (shape={tuple(t.shape)}) while a minimum of {min_features} is "
            "required."
        )
    if ensure_finite:
        _check_finite(t, name)
    return t, spec


def _check_finite(t: torch.Tensor, name: str) -> None:
    for start in range(0, t.shape[0], FINITE_CHECK_ROWS):
        chunk = t[start : start + FINITE_CHECK_ROWS]
        # A sum is finite whenever every entry is (one fast pass); only if it is not (a non-finite entry,
        # or an overflow of huge values) does the element-wise check run to find the culprit.
        if bool(torch.isfinite(chunk.sum())):
            continue
        if not bool(torch.isfinite(chunk).all()):
            bad = (~torch.isfinite(chunk)).nonzero()[0]
            row, col = int(bad[0]) + start, int(bad[1])
            value = float(t[row, col])
            raise ValueError(
                f"{name} contains NaN or infinity (first at row {row}, column {col}: {value}). "
                f"Remove or impute them first, e.g. keep the rows {name}[np.isfinite({name}).all(axis=1)] (and the same rows of its paired array)."
            )


def check_paired(X: torch.Tensor, Y: torch.Tensor, names: Sequence[str] = ("X", "Y")) -> None:
    """Raise when two arrays that must be paired row by row have different numbers of rows."""
    if X.shape[0] != Y.shape[0]:
        a, b = names
        raise ValueError(
            f"{a} and {b} must be paired row by row (row i of {a} and row i of {b} describe the same item), "
            f"but {a} has {X.shape[0]} rows and {b} has {Y.shape[0]}. Select the same items, in the same "
            "order, from both (latentalign.store pairs stores by id)."
        )


def check_pair(
    X: Any,
    Y: Any,
    names: Sequence[str] = ("X", "Y"),
    *,
    paired: bool = True,
    same_features: bool = False,
    min_rows: int = 1,
    purpose: str | None = None,
    ensure_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, ArraySpec]:
    """Validate two arrays used together; return both as tensors in one compute dtype, and the first's spec.

    Both must be 2-D, finite, real, of one backend (numpy or torch) and on one device.

    Parameters
    ----------
    X, Y : array-like of shape (n_samples, n_features)
        numpy arrays or torch tensors (not mixed).
    names : pair of str
        The arguments' names, used in error messages.
    paired : bool
        Require the same number of rows (row ``i`` of each describes the same item).
    same_features : bool
        Require the same number of columns (both live in one space, e.g. queries and keys).
    min_rows : int
        Fewest rows each array must have.
    purpose : str, optional
        What needs ``min_rows`` rows, named in the error (e.g. ``"linear CKA"``).
    ensure_finite : bool
        Reject NaN and infinite values (callers that find them more cheaply later pass ``False``).

    Returns
    -------
    Xt, Yt : torch.Tensor
        The inputs as tensors (not copied when already float32/float64), cast to float64 when either is
        float64, else float32.
    spec : ArraySpec
        How ``X`` was passed, for :func:`latentalign._array.restore`.

    Examples
    --------
    >>> import numpy as np
    >>> Xt, Yt, spec = check_pair(np.ones((4, 3)), np.ones((4, 2), dtype=np.float32))
    >>> Xt.dtype, Yt.dtype, spec.backend
    (torch.float64, torch.float64, 'numpy')
    >>> check_pair(np.ones((4, 3)), np.ones((5, 3)))
    Traceback (most recent call last):
    ...
    ValueError: X and Y must be paired row by row (row i of X and row i of Y describe the same item), but X has 4 rows and Y has 5. Select the same items, in the same order, from both (latentalign.store pairs stores by id).
    """
    a, b = names
    if Y is None:
        raise ValueError(
            f"{b} is None, but it is required (this estimator requires y to be passed, but the target y is "
            f"None): pass the other model's embeddings of the same items as {a}."
        )
    check_same_backend(**{a: X, b: Y})
    least = 1 if purpose else min_rows
    Xt, spec = check_array(X, a, ensure_finite=ensure_finite, min_rows=least)
    Yt, _ = check_array(Y, b, ensure_finite=ensure_finite, min_rows=least)
    if Xt.device != Yt.device:
        raise ValueError(
            f"{a} is on {Xt.device} and {b} is on {Yt.device}; move both to the same device first "
            f"(e.g. {b}.to({a}.device))."
        )
    if paired:
        check_paired(Xt, Yt, names)
    if same_features and Xt.shape[1] != Yt.shape[1]:
        raise ValueError(
            f"{a} has {Xt.shape[1]} features but {b} has {Yt.shape[1]}; both must live in the same space. "
            f"Map {a} into {b}'s space first (e.g. aligner.transform({a}))."
        )
    for name, t in ((a, Xt), (b, Yt)):
        if t.shape[0] < min_rows:
            raise ValueError(
                f"{name} has {t.shape[0]} rows, but {purpose} needs at least {min_rows} "
                f"(n_samples = {t.shape[0]}). Pass more rows."
            )
    dtype = torch.float64 if torch.float64 in (Xt.dtype, Yt.dtype) else torch.float32
    return Xt.to(dtype), Yt.to(dtype), spec


def check_n_features(X: torch.Tensor, expected: int, owner: str, name: str = "X") -> None:
    """Raise when ``X`` has a different number of columns than the fitted estimator expects."""
    if X.shape[1] != expected:
        raise ValueError(
            f"{name} has {X.shape[1]} features, but {owner} is expecting {expected} features as input (it was "
            "fitted with that many). Pass embeddings from the same model (and layer) the estimator was fitted on."
        )


def check_is_fitted(estimator: Any, attributes: Iterable[str] | None = None) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` has its fitted attributes."""
    attrs = (
        list(attributes)
        if attributes is not None
        else [a for a in vars(estimator) if a.endswith("_") and not a.startswith("_")]
    )
    if not attrs or not all(getattr(estimator, a, None) is not None for a in attrs):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with paired data "
            "before using this method."
        )


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Raise unless ``value`` is one of ``choices``; return it."""
    options = list(choices)
    if value not in options:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {options}.")
    return value


def check_number(
    value: Any,
    name: str,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    allow_none: bool = False,
) -> Any:
    """Validate a scalar hyper-parameter; return it.

    Examples
    --------
    >>> check_number(3, "k", integer=True, low=1)
    3
    """
    if value is None and allow_none:
        return value
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {kind}, got {value!r} of type {type(value).__name__}.")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        bound = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {bound} {low}, got {value!r}.")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}.")
    return value


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def external_stacklevel() -> int:
    """The ``stacklevel`` for :func:`warnings.warn` that points at the first caller outside latentalign.

    Counted from the function that calls this one, so pass the result straight to ``warnings.warn``
    (or to a helper that counts from its caller). A fixed number breaks as soon as a method is wrapped
    by another (a subclass, a cross-validation loop); walking the stack does not.

    Examples
    --------
    >>> external_stacklevel()  # called from outside the package: the caller itself
    1
    """
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def warn_underdetermined(
    method: str,
    n_samples: int,
    n_features: int,
    needed: int,
    *,
    setting: str = "",
    consequence: str,
    fix: str,
    stacklevel: int = 2,
) -> bool:
    """Warn (:class:`~latentalign.exceptions.IllConditionedWarning`) when a fit has too few rows.

    The one wording of the "fewer anchors than dimensions" warning, shared by the fits it applies to.

    Parameters
    ----------
    method : str
        What was fitted, as the message starts (e.g. ``"Procrustes"``).
    n_samples, n_features : int
        The rows the fit saw and the dimension it maps.
    needed : int
        Fewest rows for which the fit is determined; the warning is raised below it.
    setting : str
        The settings that change ``needed``, appended to ``n_features`` (e.g. ``" plus an intercept"``).
    consequence, fix : str
        What goes wrong, and what to do instead (full sentences).
    stacklevel : int
        As for :func:`warnings.warn`, counted from the caller of this function.

    Returns
    -------
    bool
        Whether the warning was raised.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_underdetermined("Procrustes", 3, 5, 5, consequence="Part of the map is arbitrary.", fix="Add rows.")
    True
    >>> str(caught[0].message)
    'Procrustes with 3 samples for 5 features is under-determined (at least 5 samples are needed): Part of the map is arbitrary. Add rows.'
    """
    if n_samples >= needed:
        return False
    warnings.warn(
        f"{method} with {n_samples} samples for {n_features} features{setting} is under-determined (at least "
        f"{needed} samples are needed): {consequence} {fix}",
        IllConditionedWarning,
        stacklevel=stacklevel + 1,
    )
    return True
