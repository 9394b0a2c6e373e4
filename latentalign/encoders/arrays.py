"""Precomputed embeddings looked up by id."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from latentalign.encoders._weights import array_fingerprint
from latentalign.encoders.base import BaseEncoder, check_modality

__all__ = ["ArrayEncoder"]


def _describe_missing(missing: list[Any], total: int) -> str:
    shown = ", ".join(repr(m) for m in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    return f"{len(missing)} of {total} ids are unknown: {shown}{more}"


class ArrayEncoder(BaseEncoder):
    """An "encoder" over embeddings computed elsewhere: ``encode(ids)`` returns their rows.

    Parameters
    ----------
    embeddings : array-like of shape (n, dim) or mapping id -> vector
        The precomputed vectors.
    ids : sequence of hashable, optional
        Row ids (required with an array; unique).
    name : str
        Short name.
    modality : {"array", "image", "text", "word"}
        What the ids stand for (informational).
    model_id : str, optional
        Identifier recorded in metadata (defaults to a fingerprint of the data).

    Examples
    --------
    >>> import numpy as np
    >>> enc = ArrayEncoder(np.eye(3, dtype=np.float32), ids=["a", "b", "c"])
    >>> enc.encode(["c", "a"], progress=False).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """

    def __init__(
        self,
        embeddings: Any,
        ids: Sequence[Hashable] | None = None,
        *,
        name: str = "arrays",
        modality: str = "array",
        model_id: str | None = None,
    ) -> None:
        if isinstance(embeddings, Mapping):
            if ids is not None:
                raise ValueError("pass ids only with an array of embeddings, not with a mapping.")
            ids = list(embeddings.keys())
            embeddings = (
                np.stack([np.asarray(embeddings[k], dtype=np.float32) for k in ids]) if ids else np.empty((0, 0))
            )
        X = np.asarray(embeddings)
        if X.ndim != 2:
            raise ValueError(f"embeddings must be 2-D (n, dim), got shape {X.shape}.")
        if ids is None:
            raise ValueError("ids are required with an array of embeddings: pass ids=[...] with one id per row.")
        ids = list(ids)
        if len(ids) != X.shape[0]:
            raise ValueError(f"embeddings have {X.shape[0]} rows but {len(ids)} ids were given; pass one id per row.")
        index: dict[Hashable, int] = {}
        dups: list[Any] = []
        for i, key in enumerate(ids):
            if key in index:
                dups.append(key)
            index[key] = i
        if dups:
            raise ValueError(f"ids must be unique; {len(dups)} duplicates, e.g. {dups[:5]}.")
        if not np.isfinite(X).all():
            raise ValueError("embeddings contain NaN or infinite values; clean them before wrapping.")
        self._X = X.astype(np.float32, copy=False)
        self._ids = ids
        self._index = index
        self.dim = int(X.shape[1])
        self.modality = check_modality(modality)
        self.name = name
        self.model_id = model_id
        self._fingerprint: str | None = None

    @property
    def ids(self) -> list[Hashable]:
        """The known ids, in row order."""
        return list(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def _metadata(self) -> dict[str, Any]:
        if self._fingerprint is None:
            self._fingerprint = array_fingerprint(self._X, np.asarray([str(k) for k in self._ids]))
        return {"model_id": self.model_id or f"arrays:{self._fingerprint}", "data_fingerprint": self._fingerprint}

    def _check_inputs(self, inputs: Any) -> Any:
        keys = list(inputs.tolist() if isinstance(inputs, np.ndarray) else inputs)
        missing = [key for key in keys if key not in self._index]
        if missing:
            raise KeyError(_describe_missing(missing, len(keys)) + "; pass only ids the ArrayEncoder holds.")
        return keys

    def _encode_batch(self, batch: Any) -> np.ndarray:
        return self._X[[self._index[key] for key in batch]]
