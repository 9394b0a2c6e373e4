"""Zero-shot stitching: model A's encoder, a fitted map, and model B's decoder or classifier head.

Nothing is trained here: the aligner was fitted on paired anchors, the head was trained on B's own
embeddings. :class:`Stitcher` composes them into one ``torch.nn.Module`` in eval mode, without gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from latentalign._array import as_tensor

__all__ = ["Stitcher", "apply_head", "map_embeddings"]


def map_embeddings(aligner: Any, Z: torch.Tensor, *, src: str | None = None, dst: str | None = None) -> torch.Tensor:
    """Send A's embeddings ``Z`` into the space B's head reads.

    ``aligner`` is either a fitted pairwise aligner (``transform``; for a relative projection the head must
    have been trained on ``aligner.transform_target(Y)``), a fitted universal space (``translate`` with
    ``src`` and ``dst`` model names), or ``None`` for no map at all (the absolute baseline).
    """
    if aligner is None:
        return Z
    if hasattr(aligner, "translate"):
        if src is None or dst is None:
            raise ValueError(
                "A UniversalSpace needs the source and destination model names: Stitcher(..., src='a', dst='b')."
            )
        return aligner.translate(Z, src=src, dst=dst)
    if not hasattr(aligner, "transform"):
        raise TypeError(
            f"aligner must be a fitted latentalign aligner, a UniversalSpace or None, got {type(aligner).__name__}."
        )
    return aligner.transform(Z)


def apply_head(head: Any, Z: torch.Tensor) -> torch.Tensor:
    """Run a head on embeddings: a torch module, a scikit-learn classifier, or any callable.

    scikit-learn classifiers return ``decision_function`` scores (or ``predict_proba`` when that is all
    they have), so ``argmax`` over the last axis gives the predicted class index for both kinds.
    """
    if isinstance(head, nn.Module):
        param = next(head.parameters(), None)
        if param is not None:
            Z = Z.to(device=param.device, dtype=param.dtype)
        return head(Z)
    for method in ("decision_function", "predict_proba"):
        if hasattr(head, method):
            scores = np.asarray(getattr(head, method)(Z.detach().cpu().numpy()))
            if scores.ndim == 1:  # binary decision_function: one score per row
                scores = np.stack([-scores, scores], axis=1)
            return torch.from_numpy(scores)
    if callable(head):
        return head(Z)
    raise TypeError(
        f"head_b must be a torch.nn.Module, a scikit-learn classifier or a callable, got {type(head).__name__}."
    )


class Stitcher(nn.Module):
    """Compose ``encoder_a`` -> ``aligner`` -> ``head_b`` into one zero-shot model.

    Parameters
    ----------
    encoder_a : torch.nn.Module, latentalign Encoder, callable, or None
        Model A's encoder. A module is called on tensors; an object with ``encode`` is called on raw inputs;
        ``None`` means ``forward`` receives A's embeddings directly.
    aligner : fitted aligner, UniversalSpace, or None
        The map from A's space to the space ``head_b`` reads (see :func:`map_embeddings`).
    head_b : torch.nn.Module, scikit-learn classifier, or callable
        Model B's decoder or classifier head, trained on B's own (possibly relative) embeddings.
    src, dst : str, optional
        Model names, required when ``aligner`` is a UniversalSpace.

    Examples
    --------
    >>> import torch
    >>> from latentalign import Procrustes
    >>> X = torch.randn(50, 4, dtype=torch.float64)
    >>> Q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    >>> head = torch.nn.Linear(4, 3).double()
    >>> stitched = Stitcher(None, Procrustes().fit(X, X @ Q), head)
    >>> bool(torch.allclose(stitched(X), head(X @ Q), atol=1e-6))
    True
    """

    def __init__(
        self,
        encoder_a: Any,
        aligner: Any,
        head_b: Any,
        *,
        src: str | None = None,
        dst: str | None = None,
    ) -> None:
        super().__init__()
        if encoder_a is not None and not (callable(encoder_a) or hasattr(encoder_a, "encode")):
            raise TypeError(
                f"encoder_a must be a torch module, an Encoder with .encode, a callable or None, "
                f"got {type(encoder_a).__name__}."
            )
        self.encoder_a = encoder_a
        self.aligner = aligner
        self.head_b = head_b
        self.src, self.dst = src, dst
        self.eval()

    def embed(self, inputs: Any) -> torch.Tensor:
        """Model A's embeddings of ``inputs`` as a tensor."""
        if self.encoder_a is None:
            Z = inputs
        elif hasattr(self.encoder_a, "encode"):
            Z = self.encoder_a.encode(inputs, progress=False)
        else:
            Z = self.encoder_a(inputs)
        t, _ = as_tensor(Z)
        return t

    @torch.inference_mode()
    def forward(self, inputs: Any) -> torch.Tensor:
        """Head B's output on model A's embeddings of ``inputs``, mapped into B's space."""
        Z = map_embeddings(self.aligner, self.embed(inputs), src=self.src, dst=self.dst)
        return apply_head(self.head_b, Z)

    @torch.inference_mode()
    def predict(self, inputs: Any) -> np.ndarray:
        """Predicted class indices (``argmax`` of the head's scores)."""
        return self.forward(inputs).argmax(dim=-1).cpu().numpy()

