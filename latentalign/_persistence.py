"""``latentalign.load(path)``: load any saved estimator without knowing its class."""

from __future__ import annotations

import os

from latentalign._base import BaseEstimator

__all__ = ["load"]


def load(path: str | os.PathLike[str]) -> BaseEstimator:
    """Load an aligner or preprocessing step saved with ``.save(path)`` (safetensors + JSON, no pickle)."""
    return BaseEstimator.load(path)
