"""Fit Procrustes / Affine over two embedding stores with per-shard statistics computed in Ray tasks.

The driver reads only the ids of both stores and plans, for each shard of ``store_x``, which rows of
``store_y`` hold the same ids. One Ray task per shard (or per ``shards_per_task`` shards) memory-maps its
rows from the store files (so both stores must be on a filesystem the workers can read), computes the
:class:`~latentalign.functional.moments.CrossStats` the aligner needs (``compute_stats`` over that shard)
and returns them (``O(d^2)`` numbers). The driver merges them in shard order with
:meth:`CrossStats.merge` (exact up to float64 rounding) and solves once (``fit_from_stats``): the result
is the single-process ``fit`` on ``pair_stores(store_x, store_y)`` up to rounding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latentalign._validation import check_choice, check_number
from latentalign.dist._ray import require_ray
from latentalign.exceptions import PersistenceError
from latentalign.functional.moments import CrossStats
from latentalign.store import EmbeddingStore

__all__ = ["fit_distributed", "paired_stats_distributed", "partial_fit_distributed"]


# ---------------------------------------------------------------------------------------------- worker side
def _load_rows(path: str, rows: int, dim: int, dtype: str, take: np.ndarray | None) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PersistenceError(
            f"the shard file {path!r} cannot be read on this worker ({exc}); the store must be on a filesystem "
            "every worker can read, and intact."
        ) from exc
    if arr.shape != (rows, dim) or arr.dtype != np.dtype(dtype):
        raise PersistenceError(
            f"the shard file {path!r} has shape {arr.shape} and dtype {arr.dtype}, but the manifest records "
            f"({rows}, {dim}) {dtype}; it is corrupt. Recompute the store."
        )
    return np.array(arr) if take is None else arr[take]


def _shard_stats(parts: list[dict[str, Any]], options: dict[str, Any]) -> CrossStats | None:
    """Runs as a Ray task: the statistics of the paired rows of some shards of ``store_x``, merged in order."""
    from latentalign.functional.procrustes import paired_stats

    total: CrossStats | None = None
    for part in parts:
        X = _load_rows(*part["x"])
        Y = np.empty((X.shape[0], part["dim_y"]), dtype=part["dtype_y"])
        for (y_path, y_rows, y_dim, y_dtype), dest, local in part["y"]:
            Y[dest] = _load_rows(y_path, y_rows, y_dim, y_dtype, take=local)
        stats, _, _ = paired_stats(X, Y, **options)
        total = stats if total is None else total.merge(stats)
    return total


# ---------------------------------------------------------------------------------------------- driver side
def _open(store: EmbeddingStore | str | Path, name: str) -> EmbeddingStore:
    if isinstance(store, EmbeddingStore):
        return store
    if isinstance(store, (str, Path)):
        return EmbeddingStore(Path(store).expanduser().absolute())
    raise TypeError(f"{name} must be an EmbeddingStore or a store directory, got {type(store).__name__}.")


def _plan(sx: EmbeddingStore, sy: EmbeddingStore, on_missing: str) -> list[dict[str, Any]]:
    """Per shard of ``sx``: which of its rows are paired, and where the matching rows of ``sy`` are."""
    if sx.manifest["id_type"] != sy.manifest["id_type"]:
        raise TypeError(
            f"the stores key their rows by different id types ({sx.manifest['id_type']} vs "
            f"{sy.manifest['id_type']}); ids of one item must be equal on both sides."
        )
    ids_x, ids_y = sx.ids, sy.ids
    pos_y = {k: i for i, k in enumerate(ids_y)}
    if on_missing == "error":
        set_x = set(ids_x)
        only_x = [k for k in ids_x if k not in pos_y]
        only_y = [k for k in ids_y if k not in set_x]
        if only_x or only_y:
            raise ValueError(
                f"the stores have different ids: {len(only_x)} only in {str(sx.path)!r} (e.g. {only_x[:5]}), "
                f"{len(only_y)} only in {str(sy.path)!r} (e.g. {only_y[:5]}). Embed the same items in both, or "
                "pass on_missing='intersect' to keep the common ids."
            )
    rows_y = np.fromiter((pos_y.get(k, -1) for k in ids_x), dtype=np.int64, count=len(ids_x))
    off_x = np.cumsum([0] + [s["rows"] for s in sx.manifest["shards"]])
    off_y = np.cumsum([0] + [s["rows"] for s in sy.manifest["shards"]])
    root_x, root_y = Path(sx.path).absolute(), Path(sy.path).absolute()  # workers have another cwd
    files_y = [str(root_y / e["embeddings"]) for e in sy.manifest["shards"]]
    plan = []
    for i, entry in enumerate(sx.manifest["shards"]):
        ry = rows_y[off_x[i] : off_x[i + 1]]
        keep = np.flatnonzero(ry >= 0)
        if keep.size == 0:
            continue
        ry = ry[keep]
        take_x = None if keep.size == entry["rows"] else keep
        y_parts = []
        shard_of = np.searchsorted(off_y, ry, side="right") - 1
        for s in np.unique(shard_of):
            dest = np.flatnonzero(shard_of == s)
            local = ry[dest] - off_y[s]
            order = np.argsort(local, kind="stable")  # sorted reads from the memory map
            dest, local = dest[order], local[order]
            rows_s = int(sy.manifest["shards"][s]["rows"])
            whole = local.size == rows_s and bool((local == np.arange(rows_s)).all())
            y_file = (files_y[s], rows_s, sy.dim, sy.manifest["dtype"])
            y_parts.append((y_file, dest, None if whole else local))
        plan.append(
            {
                "x": (str(root_x / entry["embeddings"]), int(entry["rows"]), sx.dim, sx.manifest["dtype"], take_x),
                "y": y_parts,
                "dim_y": sy.dim,
                "dtype_y": sy.manifest["dtype"],
            }
        )
    if not plan:
        raise ValueError(f"the stores {str(sx.path)!r} and {str(sy.path)!r} have no id in common.")
    return plan


def paired_stats_distributed(
    store_x: EmbeddingStore | str | Path,
    store_y: EmbeddingStore | str | Path,
    *,
    squares: bool = False,
    gram: bool = False,
    gram_y: bool = False,
    product_dtype: Any = None,
    on_missing: str = "error",
    shards_per_task: int = 1,
    num_cpus: float = 1,
) -> CrossStats:
    """:class:`CrossStats` of the rows of two stores paired by id, computed shard by shard in Ray tasks.

    Parameters
    ----------
    store_x, store_y : EmbeddingStore or path
        Source and target stores (on a filesystem the Ray workers can read).
    squares, gram, gram_y, product_dtype
        As in :func:`latentalign.functional.moments.compute_stats`.
    on_missing : {"error", "intersect"}
        What to do when the id sets differ (as in :func:`latentalign.store.pair_stores`).
    shards_per_task : int
        Shards of ``store_x`` handled by one task (raise it when shards are small).
    num_cpus : float
        CPUs per task.

    Returns
    -------
    CrossStats
        Merged in shard order, so the result does not depend on which task finished first.
    """
    check_choice(on_missing, "on_missing", ["error", "intersect"])
    shards_per_task = check_number(shards_per_task, "shards_per_task", integer=True, low=1)
    sx, sy = _open(store_x, "store_x"), _open(store_y, "store_y")
    plan = _plan(sx, sy, on_missing)
    ray = require_ray()
    options = {"squares": bool(squares), "gram": bool(gram), "gram_y": bool(gram_y), "product_dtype": product_dtype}
    task = ray.remote(_shard_stats).options(num_cpus=num_cpus)
    refs = [task.remote(plan[i : i + shards_per_task], options) for i in range(0, len(plan), shards_per_task)]
    total: CrossStats | None = None
    for stats in ray.get(refs):
        if stats is not None:
            total = stats if total is None else total.merge(stats)
    if total is None:  # pragma: no cover - the plan is never empty
        raise RuntimeError("internal error: no statistics were computed.")
    return total


def _streaming(aligner: Any) -> Any:
    from latentalign.align.procrustes import StreamingAligner

    if not isinstance(aligner, StreamingAligner):
        raise TypeError(
            f"the distributed fit needs an aligner solved from sufficient statistics (Procrustes, Affine), got "
            f"{type(aligner).__name__}. For other aligners load the pairs with pair_stores(...) and call fit."
        )
    aligner._check_params()
    return aligner


def fit_distributed(
    aligner: Any,
    store_x: EmbeddingStore | str | Path,
    store_y: EmbeddingStore | str | Path,
    *,
    on_missing: str = "error",
    shards_per_task: int = 1,
    num_cpus: float = 1,
) -> Any:
    """Fit ``aligner`` (Procrustes or Affine) on two stores paired by id, the data pass running on Ray.

    Same result as ``aligner.fit(*pair_stores(store_x, store_y)[1:])`` up to float64 rounding of the merges;
    returns ``aligner``. See :func:`paired_stats_distributed` for the parameters.

    Examples
    --------
    >>> from latentalign.align import Procrustes  # doctest: +SKIP
    >>> aligner = fit_distributed(Procrustes(), "stores/minilm", "stores/mpnet")  # doctest: +SKIP
    """
    aligner = _streaming(aligner)
    stats = paired_stats_distributed(
        store_x,
        store_y,
        on_missing=on_missing,
        shards_per_task=shards_per_task,
        num_cpus=num_cpus,
        **aligner._stats_options(),
    )
    return aligner.fit_from_stats(stats)


def partial_fit_distributed(
    aligner: Any,
    store_x: EmbeddingStore | str | Path,
    store_y: EmbeddingStore | str | Path,
    *,
    on_missing: str = "error",
    shards_per_task: int = 1,
    num_cpus: float = 1,
) -> Any:
    """Add the paired rows of two stores to ``aligner``'s statistics (like ``partial_fit``); return it.

    An unfitted aligner is fitted; a fitted one (``fit``, ``partial_fit`` or a loaded one that kept its
    ``stats_``) continues from the rows it saw. The rows of the stores must be new rows.
    """
    aligner = _streaming(aligner)
    stats = paired_stats_distributed(
        store_x,
        store_y,
        on_missing=on_missing,
        shards_per_task=shards_per_task,
        num_cpus=num_cpus,
        **aligner._stats_options(),
    )
    if "stats_" in vars(aligner):
        stats = aligner.get_stats().merge(stats)
    return aligner.fit_from_stats(stats)
