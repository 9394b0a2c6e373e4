"""Stitching scores: how well does B's head work on A's embeddings once they are mapped into B's space?

:func:`evaluate_stitching` reports the head on three inputs so the gap is visible:

=============  ==============================================================================
key            input to head B
=============  ==============================================================================
``native``     B's own embeddings of the test items (the ceiling)
``absolute``   A's embeddings with no map at all (the floor; ``None`` when dimensions differ)
``stitched``   A's embeddings mapped by the aligner (the zero-shot result)
=============  ==============================================================================

Each entry is a dict with ``accuracy`` and ``macro_f1`` (the papers on relative representations report
macro F1). For a relative projection, B's head reads relative coordinates: ``native`` then feeds
``aligner.transform_target(Y)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from latentalign._array import as_tensor
from latentalign._validation import check_array, check_paired
from latentalign.align.base import Aligner
from latentalign.stitching import apply_head, map_embeddings

__all__ = ["evaluate_stitching", "classification_scores"]


def classification_scores(scores: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 of ``argmax(scores)`` against integer ``labels``."""
    from sklearn.metrics import f1_score

    predicted = scores.argmax(dim=-1).cpu().numpy()
    return {
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(f1_score(labels, predicted, average="macro")),
    }


def evaluate_stitching(
    head_b: Any,
    X_test: Any,
    Y_test: Any,
    labels: Any,
    aligner: Any,
    *,
    src: str | None = None,
    dst: str | None = None,
) -> dict[str, dict[str, float] | None]:
    """Score head B on B's embeddings, on A's raw embeddings, and on A's mapped embeddings.

    Parameters
    ----------
    head_b : torch.nn.Module, scikit-learn classifier or callable
        Trained on B's embeddings (or on ``aligner.transform_target`` of them for a relative projection).
    X_test : array of shape (n, d_a)
        Model A's embeddings of the test items.
    Y_test : array of shape (n, d_b)
        Model B's embeddings of the same items, row for row.
    labels : array of shape (n,)
        Integer class labels, indices into the head's outputs.
    aligner : fitted aligner, UniversalSpace, or None
    src, dst : str, optional
        Model names for a UniversalSpace.

    Returns
    -------
    dict
        ``{"native": {...}, "absolute": {...} or None, "stitched": {...}}``.
    """
    Xt, _ = check_array(X_test, "X_test")
    Yt, _ = check_array(Y_test, "Y_test")
    check_paired(Xt, Yt, ("X_test", "Y_test"))
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if y.ndim != 1 or y.shape[0] != Xt.shape[0]:
        raise ValueError(
            f"labels must be a 1-D array with one label per row of X_test ({Xt.shape[0]}), got shape {y.shape}."
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integer class indices, got dtype {y.dtype}. Encode them first.")

    # The head reads B's space as the map sees it: the shared space of a relative projection, else B's own.
    native_input = as_tensor(aligner.transform_target(Yt))[0] if isinstance(aligner, Aligner) else Yt
    result: dict[str, dict[str, float] | None] = {
        "native": classification_scores(apply_head(head_b, native_input), y),
        "absolute": None,
        "stitched": classification_scores(apply_head(head_b, map_embeddings(aligner, Xt, src=src, dst=dst)), y),
    }
    if Xt.shape[1] == native_input.shape[1]:
        result["absolute"] = classification_scores(apply_head(head_b, Xt), y)
    return result
