"""Registry of aligners: ``make_aligner(name, **params)`` and ``list_aligners()``.

Entries name the module and class so that listing aligners imports nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import Any

from latentalign.align.base import Aligner

__all__ = ["make_aligner", "list_aligners", "get_aligner_class", "ALIGNERS"]

ALIGNERS: dict[str, str] = {
    "procrustes": "latentalign.align.procrustes:Procrustes",
    "affine": "latentalign.align.affine:Affine",
    "relative": "latentalign.align.relative:RelativeProjection",
    "ot": "latentalign.align.ot:OTAligner",
    "lfm": "latentalign.align.functional_map:LatentFunctionalMap",
    "unsupervised": "latentalign.align.unsupervised:UnsupervisedAligner",
    "mlp": "latentalign.align.mlp:MLPAligner",
    "kernel_ridge": "latentalign.align.kernel_ridge:KernelRidgeAligner",
}


def list_aligners() -> list[str]:
    """Names accepted by :func:`make_aligner`.

    Examples
    --------
    >>> "procrustes" in list_aligners()
    True
    """
    return sorted(ALIGNERS)


def get_aligner_class(name: str) -> type[Aligner]:
    """Return the class registered under ``name``; unknown names list the available ones."""
    try:
        target = ALIGNERS[name]
    except KeyError:
        raise ValueError(f"Unknown aligner {name!r}; available aligners are {list_aligners()}.") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_aligner(name: str, **params: Any) -> Aligner:
    """Build the aligner registered under ``name`` with keyword parameters ``params``."""
    klass = get_aligner_class(name)
    try:
        return klass(**params)
    except TypeError as exc:
        raise TypeError(
            f"Invalid parameters for {name!r} ({exc}); valid parameters are {sorted(klass._get_param_names())}."
        ) from None
