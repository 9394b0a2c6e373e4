"""latentalign: make the latent spaces of different pretrained models talk to each other.

Importing the package has no side effects: no CUDA initialisation, no environment changes, no downloads.
Heavy submodules (encoders, datasets, evaluation, stitching) load on first attribute access: the
aligners, the :class:`~latentalign.stitching.Stitcher`, the evaluation measures (``retrieval_scores``,
``linear_cka``, ``mutual_knn``, ...) and persistence are all reachable as ``latentalign.<name>``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from latentalign._version import __version__

# A library logs and leaves the configuration to the application (the command line configures it).
logging.getLogger("latentalign").addHandler(logging.NullHandler())

_LAZY = {
    "Aligner": "latentalign.align",
    "Procrustes": "latentalign.align",
    "Affine": "latentalign.align",
    "RelativeProjection": "latentalign.align",
    "OTAligner": "latentalign.align",
    "UniversalSpace": "latentalign.align",
    "SelfLearning": "latentalign.align",
    "UnsupervisedAligner": "latentalign.align.unsupervised",
    "make_aligner": "latentalign.align",
    "list_aligners": "latentalign.align",
    "load": "latentalign.persistence",
    "save": "latentalign.persistence",
    "Stitcher": "latentalign.stitching",
    "retrieval_scores": "latentalign.functional.retrieval",
    "csls_knn": "latentalign.functional.retrieval",
    "linear_cka": "latentalign.functional.similarity",
    "unbiased_cka": "latentalign.functional.similarity",
    "mutual_knn": "latentalign.functional.similarity",
    "cknna": "latentalign.functional.similarity",
    "similarity_scores": "latentalign.functional.similarity",
    "alignability_report": "latentalign.evaluation",
    "NotFittedError": "latentalign.exceptions",
    "ConvergenceWarning": "latentalign.exceptions",
    "IllConditionedWarning": "latentalign.exceptions",
    "PersistenceError": "latentalign.exceptions",
    "MissingDependencyError": "latentalign.exceptions",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'latentalign' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
