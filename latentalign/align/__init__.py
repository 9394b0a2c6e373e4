"""Aligners: estimators that map one latent space onto another (or onto a shared space).

Public classes are imported on first access, so ``import latentalign.align`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from latentalign.align.base import Aligner
from latentalign.align.registry import list_aligners, make_aligner

_LAZY = {
    "Procrustes": "latentalign.align.procrustes",
    "Affine": "latentalign.align.affine",
    "RelativeProjection": "latentalign.align.relative",
    "OTAligner": "latentalign.align.ot",
    "LatentFunctionalMap": "latentalign.align.functional_map",
    "UniversalSpace": "latentalign.align.universal",
    "SelfLearning": "latentalign.align.refine",
    "MLPAligner": "latentalign.align.mlp",
    "KernelRidgeAligner": "latentalign.align.kernel_ridge",
}

__all__ = ["Aligner", "make_aligner", "list_aligners", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'latentalign.align' has no attribute {name!r}")
