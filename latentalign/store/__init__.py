"""Sharded, resumable, content-keyed embedding store; rows are keyed by id, never by position.

Layout of one store directory::

    manifest.json                       what is in the store (the commit point, rewritten atomically)
    embeddings/emb_00000.npy            float32 (rows, dim), one file per shard
    metadata/metadata_00000.parquet     column ``id``: the ids of those rows, same shard number

The two folders follow the ``parquet_npy`` layout of embedding-reader (and clip-retrieval's
``*_emb/*.npy`` + ``metadata/*.parquet``): files pair up by sorted name and hold the same rows, so
``EmbeddingReader(embeddings_folder=".../embeddings", metadata_folder=".../metadata",
file_format="parquet_npy", meta_columns=["id"])`` reads a finished store directly. Temporary files
are hidden (``.name.tmp``) and never match ``*.npy`` / ``*.parquet``.

Writing (:func:`embed`) is shard by shard: each shard's ``.npy`` and ``.parquet`` are written to
temporary files, fsynced and renamed into place, then ``manifest.json`` is rewritten (temp + rename)
with the shard's row count, byte size and sha256. A job killed at any point resumes from the last
shard the manifest lists: rows are never duplicated or lost. A store is keyed by the encoder's
``metadata``, the dataset name, length-prefixed hashes of the ids and of the inputs, and the settings; with ``store_dir=None`` that key
picks the directory under :func:`latentalign._paths.embeddings_dir`, so calling :func:`embed` twice
with the same arguments reads the first result back instead of running the model again.

``overwrite=True`` deletes only what a store wrote: the files its ``manifest.json`` lists and the
manifest. It refuses (:class:`~latentalign.exceptions.PersistenceError`, nothing deleted) a manifest that
is not latentalign's, or shard-named files the manifest does not list; other files are left in place.
Values are stored as float32; :func:`write_embeddings` rejects values that are not finite after that
cast and warns (:class:`PrecisionLossWarning`) when nonzero values flush to 0.

Reading memory-maps the shards (``np.load(mmap_mode="r")``); :meth:`EmbeddingStore.iter_batches`
streams in bounded memory; :func:`pair_stores` aligns two stores by id.

Modules: :mod:`~latentalign.store.format` (layout, ids, the content key, the manifest),
:mod:`~latentalign.store.files` (checksums, atomic writes, the writer lock),
:mod:`~latentalign.store.reader`, :mod:`~latentalign.store.writer`, :mod:`~latentalign.store.encoding`
(the encoding loop), :mod:`~latentalign.store.pairing` and :mod:`~latentalign.store.layers` (one store per
hidden layer over a shared id set). :mod:`latentalign.dist` writes the same
format with the same writer.
"""

from __future__ import annotations

from latentalign.store.encoding import embed
from latentalign.store.format import FORMAT, FORMAT_VERSION, cache_key
from latentalign.store.layers import LayeredStore, write_layer_embeddings
from latentalign.store.pairing import align_by_id, pair_stores
from latentalign.store.reader import EmbeddingStore
from latentalign.store.writer import PrecisionLossWarning, write_embeddings

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "EmbeddingStore",
    "LayeredStore",
    "PrecisionLossWarning",
    "align_by_id",
    "cache_key",
    "embed",
    "pair_stores",
    "write_embeddings",
    "write_layer_embeddings",
]
