"""Pairing rows of two stores (or two arrays) by id, never by position."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentalign.store.format import normalize_ids
from latentalign.store.reader import EmbeddingStore

__all__ = ["align_by_id", "pair_stores"]


def _describe(ids: list[Any]) -> str:
    return f"{ids[:10]}{' ...' if len(ids) > 10 else ''}"


def align_by_id(
    ids_a: Sequence[Hashable], X_a: Any, ids_b: Sequence[Hashable], X_b: Any, *, on_missing: str = "error"
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Pair the rows of two arrays by id (never by position).

    Returns ``(ids, A, B)`` where row ``i`` of ``A`` and of ``B`` both belong to ``ids[i]``, in the
    order of ``ids_a``. ``on_missing="error"`` raises when the id sets differ (listing the ids missing
    from each side); ``"intersect"`` keeps the common ids.

    Examples
    --------
    >>> import numpy as np
    >>> ids, A, B = align_by_id(["x", "y"], np.array([[1.0], [2.0]]), ["y", "x"], np.array([[20.0], [10.0]]))
    >>> ids, A.ravel().tolist(), B.ravel().tolist()
    (['x', 'y'], [1.0, 2.0], [10.0, 20.0])
    """
    if on_missing not in ("error", "intersect"):
        raise ValueError(f"on_missing must be 'error' or 'intersect', got {on_missing!r}.")
    ia, _ = normalize_ids(ids_a, "ids_a")
    ib, _ = normalize_ids(ids_b, "ids_b")
    A, B = np.asarray(X_a), np.asarray(X_b)
    if A.shape[0] != len(ia) or B.shape[0] != len(ib):
        raise ValueError(
            f"X_a has {A.shape[0]} rows for {len(ia)} ids and X_b has {B.shape[0]} rows for {len(ib)} ids; "
            "pass one id per row."
        )
    pos_b = {k: i for i, k in enumerate(ib)}
    set_a = set(ia)
    only_a = [k for k in ia if k not in pos_b]
    only_b = [k for k in ib if k not in set_a]
    if (only_a or only_b) and on_missing == "error":
        raise ValueError(
            f"the two sides have different ids: {len(only_a)} only in the first (e.g. {_describe(only_a)}), "
            f"{len(only_b)} only in the second (e.g. {_describe(only_b)}). Embed the same items on both sides, "
            "or pass on_missing='intersect' to keep the common ids."
        )
    common = [k for k in ia if k in pos_b]
    if not common:
        raise ValueError("the two sides have no id in common; nothing can be paired.")
    pos_a = {k: i for i, k in enumerate(ia)}
    ra = np.fromiter((pos_a[k] for k in common), dtype=np.int64, count=len(common))
    rb = np.fromiter((pos_b[k] for k in common), dtype=np.int64, count=len(common))
    return common, A[ra], B[rb]


def pair_stores(
    a: EmbeddingStore | str | Path, b: EmbeddingStore | str | Path, *, on_missing: str = "error"
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Load two stores and pair their rows by id: ``(ids, X_a, X_b)`` in the order of ``a``.

    ``on_missing="error"`` raises (listing the ids missing on each side) when the id sets differ;
    ``"intersect"`` keeps the common ids.
    """
    if on_missing not in ("error", "intersect"):
        raise ValueError(f"on_missing must be 'error' or 'intersect', got {on_missing!r}.")
    sa = a if isinstance(a, EmbeddingStore) else EmbeddingStore(a)
    sb = b if isinstance(b, EmbeddingStore) else EmbeddingStore(b)
    if sa.manifest["id_type"] != sb.manifest["id_type"]:
        raise TypeError(
            f"the stores key their rows by different id types ({sa.manifest['id_type']} vs "
            f"{sb.manifest['id_type']}); ids of one item must be equal on both sides."
        )
    ids_a, ids_b = sa.ids, sb.ids
    set_b = set(ids_b)
    set_a = set(ids_a)
    only_a = [k for k in ids_a if k not in set_b]
    only_b = [k for k in ids_b if k not in set_a]
    if (only_a or only_b) and on_missing == "error":
        raise ValueError(
            f"the stores have different ids: {len(only_a)} only in {str(sa.path)!r} (e.g. {_describe(only_a)}), "
            f"{len(only_b)} only in {str(sb.path)!r} (e.g. {_describe(only_b)}). Embed the same items in both, "
            "or pass on_missing='intersect' to keep the common ids."
        )
    common = [k for k in ids_a if k in set_b]
    if not common:
        raise ValueError(f"the stores {str(sa.path)!r} and {str(sb.path)!r} have no id in common.")
    return common, sa.get(common), sb.get(common)
