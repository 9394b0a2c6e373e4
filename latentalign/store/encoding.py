"""The encoding loop: :func:`embed` runs an encoder shard by shard into a store, reusing or resuming it."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentalign._paths import embeddings_dir
from latentalign._validation import check_number
from latentalign.store.files import write_lock
from latentalign.store.format import (
    DEFAULT_SHARD_SIZE,
    content_key,
    ids_digest,
    inputs_digest,
    new_manifest,
    normalize_ids,
    slug,
)
from latentalign.store.reader import EmbeddingStore
from latentalign.store.writer import StoreWriter, finished_store, open_for_writing

__all__ = ["embed", "encode_into"]


def embed(
    encoder: Any,
    inputs: Any,
    ids: Sequence[Hashable],
    *,
    dataset: str | None = None,
    store_dir: str | Path | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = 64,
    normalize: bool = False,
    settings: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> EmbeddingStore:
    """Encode ``inputs`` into a store keyed by ``ids``; reuse or resume a previous run with the same key.

    Parameters
    ----------
    encoder : Encoder
        Anything with ``name``, ``dim``, ``metadata`` and ``encode`` (see :mod:`latentalign.encoders`).
    inputs : sequence
        What ``encoder.encode`` takes (texts, images, arrays, words); needs ``len`` and slicing.
    ids : sequence of str or int
        One unique id per input. The cache key hashes the ids and the inputs (see
        :func:`~latentalign.store.format.inputs_digest`), so other inputs under the same ids are encoded
        again, never served from the old store.
    dataset : str, optional
        Dataset name, part of the cache key and of the directory name.
    store_dir : str or pathlib.Path, optional
        Where to write. Default: ``embeddings_dir() / "<encoder>__<dataset>__<key[:16]>"``.
    shard_size : int
        Rows per shard (the unit of resumption).
    batch_size : int
        Inputs per forward pass. Not part of the cache key (it can change results only by padding-level
        float noise).
    normalize : bool
        L2-normalise rows (part of the key).
    settings : dict, optional
        Extra JSON-serialisable settings that change the result (part of the key).
    overwrite : bool
        Discard what ``store_dir`` holds and recompute.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    EmbeddingStore

    Raises
    ------
    ValueError
        ``store_dir`` holds a store with another key (other encoder, data or settings), unless ``overwrite``.
    PersistenceError
        A finished shard is truncated or corrupt (re-run with ``overwrite=True``).
    """
    shard_size = check_number(shard_size, "shard_size", integer=True, low=1)
    batch_size = check_number(batch_size, "batch_size", integer=True, low=1)
    for attr in ("encode", "dim", "metadata", "name"):
        if not hasattr(encoder, attr):
            raise TypeError(
                f"encoder must follow the Encoder protocol (missing {attr!r}); got {type(encoder).__name__}."
            )
    if not hasattr(inputs, "__len__") or not hasattr(inputs, "__getitem__"):
        raise TypeError(
            f"inputs must be a sequence with len() and slicing (list, array, tensor), got {type(inputs).__name__}; "
            "wrap an iterator in list(...)."
        )
    id_list, id_kind = normalize_ids(ids)
    if len(id_list) != len(inputs):
        raise ValueError(f"got {len(inputs)} inputs but {len(id_list)} ids; pass exactly one id per input.")
    settings = {"normalize": bool(normalize), **(settings or {})}
    encoder_meta = encoder.metadata
    ids_sha = ids_digest(id_list, id_kind)
    key = content_key(encoder_meta, dataset, len(id_list), ids_sha, inputs_digest(inputs), settings)
    if store_dir is None:
        directory = embeddings_dir() / f"{slug(str(encoder.name))}__{slug(dataset or 'data')}__{key[:16]}"
    else:
        directory = Path(store_dir)
    finished = finished_store(directory, key, overwrite=overwrite)
    if finished is not None:
        return finished
    directory.mkdir(parents=True, exist_ok=True)

    with write_lock(directory):
        manifest, finished = open_for_writing(directory, key, overwrite=overwrite)
        if finished is not None:
            return finished
        if manifest is None:
            manifest = new_manifest(
                key=key,
                dim=encoder.dim,
                n_total=len(id_list),
                id_kind=id_kind,
                encoder_meta=encoder_meta,
                dataset=dataset,
                ids_sha=ids_sha,
                settings=settings,
                shard_size=shard_size,
            )
        writer = StoreWriter(directory, manifest)
        writer.write_manifest()
        encode_into(
            encoder,
            inputs,
            id_list,
            writer,
            shard_size=shard_size,
            batch_size=batch_size,
            normalize=normalize,
            progress=progress,
        )
        writer.finish()
    return EmbeddingStore(directory)


def encode_into(
    encoder: Any,
    inputs: Any,
    ids: list[Any],
    writer: StoreWriter,
    *,
    shard_size: int,
    batch_size: int,
    normalize: bool,
    progress: bool,
) -> None:
    """Encode the rows the writer has not committed yet, one shard of ``shard_size`` rows at a time.

    Each shard is encoded in batches of ``batch_size`` inputs; the shard boundaries depend only on
    ``shard_size`` and the number of committed rows, which is what makes a resumed run write the same
    shards as an uninterrupted one.
    """
    from tqdm.auto import tqdm

    n = len(ids)
    start = writer.rows_done
    with tqdm(total=n, initial=start, disable=not progress, desc=f"embed {encoder.name}", unit="item") as bar:
        while start < n:
            stop = min(start + shard_size, n)
            parts = []
            for b in range(start, stop, batch_size):
                e = min(b + batch_size, stop)
                parts.append(encoder.encode(inputs[b:e], batch_size=batch_size, normalize=normalize, progress=False))
                bar.update(e - b)
            X = np.concatenate(parts) if len(parts) > 1 else parts[0]
            if X.shape != (stop - start, writer.manifest["dim"]):
                raise ValueError(
                    f"the encoder returned shape {X.shape} for {stop - start} inputs; expected "
                    f"({stop - start}, {writer.manifest['dim']})."
                )
            writer.append(X, ids[start:stop])
            start = stop
