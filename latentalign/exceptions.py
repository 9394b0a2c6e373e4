"""Exceptions and warnings raised by latentalign.

The classes subclass the built-in exception that scikit-learn uses for the same
situation, so ``except ValueError`` keeps working in user code.
"""

from __future__ import annotations

__all__ = [
    "NotFittedError",
    "ConvergenceWarning",
    "IllConditionedWarning",
    "PersistenceError",
    "MissingDependencyError",
    "DataUnavailableError",
]


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit`` was called."""


class ConvergenceWarning(UserWarning):
    """An iterative method stopped before meeting its tolerance."""


class IllConditionedWarning(UserWarning):
    """A fit is under-determined or numerically ill-conditioned (e.g. fewer anchors than dimensions)."""


class PersistenceError(ValueError):
    """A saved file is missing, corrupted, or was written by an incompatible format version."""


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class DataUnavailableError(FileNotFoundError):
    """A dataset or model is neither cached locally nor reachable; the message says how to fetch it."""
