"""Applying a fitted map as the commands do: A's rows into the space B's rows are compared in.

For most aligners that space is B's own (``transform`` of A, B unchanged); a relative projection maps
both sides into relative coordinates (``transform_target`` of B); a ``UniversalSpace`` translates A from
``src`` into ``dst``. ``evaluate`` and ``stitch`` both go through here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["map_source", "map_target", "map_label"]


def map_source(aligner: Any, X: Any, *, src: str | None = None, dst: str | None = None) -> np.ndarray:
    """A's rows ``X`` in the comparison space (``aligner=None``: unchanged).

    Examples
    --------
    >>> from latentalign import Procrustes
    >>> X = np.eye(3)
    >>> map_source(Procrustes(center=False).fit(X, X[:, ::-1]), X).round(6)[0]
    array([0., 0., 1.])
    """
    from latentalign.stitching import map_embeddings

    return np.asarray(map_embeddings(aligner, X, src=src, dst=dst))


def map_target(aligner: Any, Y: Any) -> np.ndarray:
    """B's rows ``Y`` in the comparison space: ``transform_target`` for a pairwise aligner, else unchanged.

    Examples
    --------
    >>> from latentalign import RelativeProjection
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.standard_normal((5, 8)), rng.standard_normal((5, 3))
    >>> map_target(RelativeProjection().fit(A, B), B).shape  # 5 anchors -> 5 relative coordinates
    (5, 5)
    """
    from latentalign.align import Aligner

    return np.asarray(aligner.transform_target(Y)) if isinstance(aligner, Aligner) else np.asarray(Y)


def map_label(aligner: Any) -> str:
    """How a run record names the map: its class, or ``"no map"``.

    Examples
    --------
    >>> map_label(None)
    'no map'
    """
    return "no map" if aligner is None else type(aligner).__name__
