"""Exceptions and warnings raised by latentalign.

Where scikit-learn has a class for the same situation, latentalign's subclasses it, so an
``except sklearn.exceptions.NotFittedError`` (or a warnings filter on scikit-learn's
``ConvergenceWarning``) also catches latentalign's. The others subclass the built-in exception that fits
(``ValueError``, ``ImportError``, ...), so ``except ValueError`` keeps working in user code.

Examples
--------
>>> import sklearn.exceptions
>>> issubclass(NotFittedError, sklearn.exceptions.NotFittedError)
True
>>> issubclass(ConvergenceWarning, sklearn.exceptions.ConvergenceWarning)
True
"""

from __future__ import annotations

import sklearn.exceptions

__all__ = [
    "NotFittedError",
    "ConvergenceWarning",
    "IllConditionedWarning",
    "PersistenceError",
    "MissingDependencyError",
    "DataUnavailableError",
]


class NotFittedError(sklearn.exceptions.NotFittedError):
    """An estimator was used before ``fit`` was called (also a ``ValueError`` and an ``AttributeError``)."""


class ConvergenceWarning(sklearn.exceptions.ConvergenceWarning):
    """An iterative method stopped before meeting its tolerance."""


class IllConditionedWarning(UserWarning):
    """A fit is under-determined or numerically ill-conditioned (e.g. fewer anchors than dimensions)."""


class PersistenceError(ValueError):
    """A saved file is missing, corrupted, or was written by an incompatible format version."""


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class DataUnavailableError(FileNotFoundError):
    """A dataset or model is neither cached locally nor reachable; the message says how to fetch it."""
