"""Distributed embedding on Ray Data, writing the store format of :mod:`latentalign.store`.

How the work is split
---------------------
The actors of a Ray Data actor pool (``map_batches(..., compute=ActorPoolStrategy(size=num_actors))``)
each build the encoder once, from a picklable :class:`EncoderSpec` (a registry name or a factory, plus
keyword arguments), and turn one block into one shard:

* a sequence ``inputs`` (list, numpy array, tensor) is cut on the driver into shards of ``shard_size``
  rows at the boundaries :func:`latentalign.store.embed` uses; each shard's ids and inputs go into the
  object store and the Dataset holds one row (one block) per shard, so the shard files hold the same
  rows, in the same order, as the single-process store;
* a ``ray.data.Dataset`` with an id column and an input column is streamed: each ``map_batches`` batch of
  up to ``shard_size`` rows becomes a shard.

Who writes what (concurrent writers)
------------------------------------
Workers write only their own shard's two files, under unique hidden temporary names (fsynced) in
``embeddings/`` and ``metadata/``, and return a small record (row count, ids digest, sizes, sha256).
Only the driver, which holds the store's writer lock for the whole job, renames a shard to its final
name (``emb_NNNNN.npy``, ``metadata_NNNNN.parquet``) and rewrites ``manifest.json`` (temp + rename), so
there is exactly one writer of the manifest. For a sequence the driver commits shards in input order (a
shard finished early waits for the ones before it): the manifest always lists a prefix of the rows, which
is what :func:`latentalign.store.embed` resumes from, so the two functions resume each other's stores and
produce the same store. A killed job leaves only hidden ``.tmp`` files, removed by the next run.
An exception raised by the encoder on a worker comes back as a record and is re-raised on the driver as
itself (the ``ValueError`` that ``embed`` would raise, not Ray's ``UserCodeException``), with the worker's
traceback and the number of committed rows attached as notes.

A Dataset's rows are committed in the order they arrive; its store is keyed by the *set* of ids (the
sorted ids enter the key, with the marker ``row_order="dataset"``) and resumes by id: rows whose id is
already committed are skipped by the workers. Such a store is readable like any other
(:class:`~latentalign.store.EmbeddingStore`, :func:`~latentalign.store.pair_stores`), but
:func:`~latentalign.store.embed` never mistakes it for its own (different key).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from latentalign._validation import check_number
from latentalign.dist._ray import require_ray, require_ray_data
from latentalign.exceptions import PersistenceError
from latentalign.store.files import write_lock
from latentalign.store.format import (
    DEFAULT_SHARD_SIZE,
    canonical_json,
    content_key,
    ids_digest,
    inputs_digest,
    new_manifest,
    normalize_ids,
)
from latentalign.store.reader import EmbeddingStore
from latentalign.store.writer import (
    StagedShard,
    StoreWriter,
    finished_store,
    open_for_writing,
    stage_shard,
)

__all__ = ["EncoderSpec", "embed_distributed"]

_PROTOCOL = ("encode", "dim", "metadata", "name")


# ---------------------------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class EncoderSpec:
    """A picklable recipe that builds an encoder where it runs (once per actor).

    Parameters
    ----------
    target : str or callable
        A name :func:`latentalign.encoders.load_encoder` accepts (``"minilm"``, ``"st:<model>"``, ...), or
        a callable returning an encoder: a class (``TorchModuleEncoder``), a function or a
        ``functools.partial``. It is pickled (cloudpickle) and shipped to every actor, so keep it small:
        a name or a factory that loads weights from a path every worker can read.
    kwargs : dict
        Keyword arguments for ``load_encoder(target, **kwargs)`` or ``target(**kwargs)``.

    Examples
    --------
    >>> spec = EncoderSpec("glove-50")
    >>> spec.target, spec.kwargs
    ('glove-50', {})
    """

    target: str | Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        """Build the encoder and check it follows the Encoder protocol."""
        if isinstance(self.target, str):
            from latentalign.encoders import load_encoder

            encoder = load_encoder(self.target, **self.kwargs)
        else:
            encoder = self.target(**self.kwargs)
        missing = [a for a in _PROTOCOL if not hasattr(encoder, a)]
        if missing:
            raise TypeError(
                f"the encoder factory {self.target!r} returned {type(encoder).__name__}, which does not follow "
                f"the Encoder protocol (missing {missing}); it must return an encoder (see latentalign.encoders)."
            )
        return encoder

    @classmethod
    def coerce(cls, encoder: Any, encoder_kwargs: dict[str, Any] | None = None) -> EncoderSpec:
        """Turn what :func:`embed_distributed` accepts (spec, name or factory) into a spec."""
        if encoder_kwargs is not None and not isinstance(encoder_kwargs, dict):
            raise TypeError(f"encoder_kwargs must be a dict, got {type(encoder_kwargs).__name__}.")
        kwargs = dict(encoder_kwargs or {})
        if isinstance(encoder, EncoderSpec):
            return cls(encoder.target, {**encoder.kwargs, **kwargs})
        if isinstance(encoder, str):
            if not encoder:
                raise ValueError("encoder must be a non-empty registry name, got ''.")
            return cls(encoder, kwargs)
        if all(hasattr(encoder, a) for a in _PROTOCOL):
            raise TypeError(
                f"encoder must be a registry name, an EncoderSpec or a zero-argument factory returning an "
                f"encoder (each actor builds its own copy once), got a built {type(encoder).__name__}. Pass a "
                "factory instead, e.g. functools.partial(TorchModuleEncoder, module, dim=...) or "
                "EncoderSpec('minilm')."
            )
        if callable(encoder):
            return cls(encoder, kwargs)
        raise TypeError(
            f"encoder must be a registry name (str), an EncoderSpec or a callable returning an encoder, got "
            f"{type(encoder).__name__}."
        )


def _describe(spec: EncoderSpec) -> dict[str, Any]:
    """Runs as a Ray task: build the encoder once and report what keys the store."""
    encoder = spec.build()
    return {"name": str(encoder.name), "dim": int(encoder.dim), "metadata": encoder.metadata}


# ---------------------------------------------------------------------------------------------- worker side
_RECORD_KEYS = ("start", "rows", "ids_sha256", "ids_json", "emb_tmp", "meta_tmp", "bytes", "sha256",
                "meta_bytes", "meta_sha256", "host", "error")
_INT_KEYS = ("start", "rows", "bytes", "meta_bytes")


class _ShardEncoder:
    """Ray Data actor: builds the encoder once, then turns each batch (one block) into staged shard files."""

    def __init__(
        self,
        spec: EncoderSpec,
        *,
        store_dir: str,
        expected_metadata: str,
        id_kind: str,
        dim: int,
        batch_size: int,
        normalize: bool,
        payloads: list[Any] | None = None,
        done: list[Any] | None = None,
        id_column: str = "id",
        input_column: str = "item",
    ) -> None:
        import ray

        self.encoder = spec.build()
        got = canonical_json(self.encoder.metadata)
        if got != expected_metadata:
            raise RuntimeError(
                f"the encoder built on host {socket.gethostname()!r} has other metadata than the one that keys "
                f"the store:\n  expected {expected_metadata}\n  got      {got}\nInstall the same package "
                "versions (and model files) on every node of the cluster, and make the factory deterministic "
                "(a module built with random weights needs a fixed seed, e.g. torch.manual_seed inside it)."
            )
        self.dir = Path(store_dir)
        self.id_kind = id_kind
        self.dim = int(dim)
        self.batch_size = int(batch_size)
        self.normalize = bool(normalize)
        self.payloads = payloads
        self.id_column = id_column
        self.input_column = input_column
        done_ids: Any = frozenset()
        if done:
            done_ids = ray.get(done[0]) if isinstance(done[0], ray.ObjectRef) else done[0]
        self.done = frozenset(done_ids)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray

        records: list[dict[str, Any]] = []
        try:
            if self.payloads is not None:  # one descriptor row per shard of a sequence
                for task in np.asarray(batch["task"]).tolist():
                    start, ids, items = ray.get(self.payloads[int(task)])
                    records.append(self._write_shard(ids, items, start=int(start)))
            else:
                records.extend(self._rows(batch))
        except Exception as exc:  # sent back as a record: Ray Data would replace it by UserCodeException
            records = [_error_record(exc)]
        return {k: np.array([r[k] for r in records], dtype=np.int64 if k in _INT_KEYS else object)
                for k in _RECORD_KEYS}

    def _rows(self, batch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        for col in (self.id_column, self.input_column):
            if col not in batch:
                raise ValueError(
                    f"the dataset has no column {col!r} (columns: {sorted(batch)}); pass id_column=... and "
                    "input_column=... naming the ids and the encoder inputs."
                )
        ids = np.asarray(batch[self.id_column]).tolist()
        items: Any = batch[self.input_column]
        if self.done:
            keep = np.fromiter((i not in self.done for i in ids), dtype=bool, count=len(ids))
            if not keep.all():
                ids = [i for i, k in zip(ids, keep) if k]
                items = items[keep]
        if not ids:
            return []
        if isinstance(items, np.ndarray) and items.dtype.kind in "OUS":
            items = list(items)  # texts, paths, PIL images: the list the encoder takes
        return [self._write_shard(ids, items, start=-1)]

    def _write_shard(self, ids: list[Any], items: Any, *, start: int) -> dict[str, Any]:
        n = len(ids)
        parts = []
        for b in range(0, n, self.batch_size):  # the batches store.embed runs, shard by shard
            parts.append(
                self.encoder.encode(items[b : b + self.batch_size], batch_size=self.batch_size,
                                    normalize=self.normalize, progress=False)
            )
        X = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if X.shape != (n, self.dim):
            raise ValueError(f"the encoder returned shape {X.shape} for {n} inputs; expected ({n}, {self.dim}).")
        staged = stage_shard(self.dir, X, ids, self.id_kind)
        return {
            **staged.to_dict(),
            "start": start,
            "ids_sha256": ids_digest(ids, self.id_kind),
            "ids_json": json.dumps(ids) if start < 0 else "",
            "host": socket.gethostname(),
            "error": b"",
        }


def _error_record(exc: Exception) -> dict[str, Any]:
    """A record carrying the worker's exception (pickled for the trip to the driver) and its traceback."""
    import traceback

    from ray import cloudpickle

    text = "".join(traceback.format_exception(exc))
    try:
        payload = cloudpickle.dumps((exc, text))
        cloudpickle.loads(payload)
    except Exception:  # an exception that does not survive pickling: keep its type name and message
        payload = cloudpickle.dumps((RuntimeError(f"{type(exc).__name__}: {exc}"), text))
    record: dict[str, Any] = {k: (0 if k in _INT_KEYS else "") for k in _RECORD_KEYS}
    record.update(host=socket.gethostname(), error=payload)
    return record


def _raise_worker_error(rec: dict[str, Any]) -> None:
    from ray import cloudpickle

    exc, text = cloudpickle.loads(rec["error"])
    if hasattr(exc, "add_note"):
        exc.add_note(f"(raised in a Ray worker on host {rec['host']!r}:\n{text.rstrip()})")
    raise exc


# ---------------------------------------------------------------------------------------------- driver side
_STAGED_FIELDS = tuple(f.name for f in fields(StagedShard))


def _commit(writer: StoreWriter, rec: dict[str, Any]) -> None:
    """Check that the driver sees the files a worker staged, then commit them (the driver alone does)."""
    for tmp, size_key in ((rec["emb_tmp"], "bytes"), (rec["meta_tmp"], "meta_bytes")):
        src = writer.dir / tmp
        try:
            size = src.stat().st_size
        except FileNotFoundError:
            raise PersistenceError(
                f"the driver cannot see the shard file {str(src)!r} that a worker on host {rec['host']!r} "
                f"wrote: store_dir must be one directory shared by the driver and every worker (NFS, a "
                "cluster filesystem, or a single machine)."
            ) from None
        if size != rec[size_key]:
            raise PersistenceError(
                f"the shard file {str(src)!r} written on host {rec['host']!r} has {size} bytes on the driver "
                f"but {rec[size_key]} were written; the shared filesystem does not show the worker's writes."
            )
    writer.commit(StagedShard(**{k: rec[k] for k in _STAGED_FIELDS}))


def _record(row: dict[str, Any]) -> dict[str, Any]:
    rec = {k: (int(row[k]) if k in _INT_KEYS else row[k] if k == "error" else str(row[k])) for k in _RECORD_KEYS}
    if rec["error"]:
        _raise_worker_error(rec)
    return rec


def _check_sequence(inputs: Any) -> None:
    if not hasattr(inputs, "__len__") or not hasattr(inputs, "__getitem__"):
        raise TypeError(
            f"inputs must be a sequence with len() and slicing (list, array, tensor) or a ray.data.Dataset, got "
            f"{type(inputs).__name__}; wrap an iterator in list(...)."
        )


def _slice(inputs: Any, start: int, stop: int) -> Any:
    part = inputs[start:stop]
    clone = getattr(part, "clone", None)  # a tensor slice pickles its whole storage: copy the rows
    return clone() if callable(clone) and type(part).__module__.startswith("torch") else part


def _dataset_columns(ds: Any) -> list[str]:
    schema = ds.schema()
    return list(schema.names) if schema is not None else []


def _read_dataset_ids(ds: Any, id_column: str) -> list[Any]:
    out: list[Any] = []
    for batch in ds.select_columns([id_column]).iter_batches(batch_size=65536, batch_format="numpy"):
        out.extend(np.asarray(batch[id_column]).tolist())
    return out


def embed_distributed(
    encoder: str | EncoderSpec | Callable[..., Any],
    inputs: Any,
    ids: Sequence[Hashable] | None = None,
    *,
    store_dir: str | Path,
    dataset: str | None = None,
    encoder_kwargs: dict[str, Any] | None = None,
    num_actors: int = 2,
    batch_size: int = 64,
    shard_size: int = DEFAULT_SHARD_SIZE,
    normalize: bool = False,
    settings: dict[str, Any] | None = None,
    overwrite: bool = False,
    num_cpus: float = 1,
    num_gpus: float = 0,
    id_column: str = "id",
    input_column: str = "item",
    progress: bool = True,
) -> EmbeddingStore:
    """Encode ``inputs`` on a Ray cluster into an embedding store (the format of :func:`latentalign.store.embed`).

    Uses the running Ray instance (``ray.init(address="auto")`` first to use a cluster; otherwise Ray
    starts a local one). See the module docstring for how work and writes are split.

    Parameters
    ----------
    encoder : str, EncoderSpec or callable
        What each actor builds once: a registry name (``load_encoder``), an :class:`EncoderSpec`, or a
        picklable factory returning an encoder (``functools.partial(TorchModuleEncoder, module, dim=8)``).
        A built encoder is refused (pass its factory). One extra copy is built in a Ray task first, to read
        the ``metadata`` that keys the store.
    inputs : sequence or ray.data.Dataset
        A sequence (list, numpy array, tensor; what ``encoder.encode`` takes) with one id per item in
        ``ids``, or a Dataset with columns ``id_column`` and ``input_column`` (string / object columns are
        passed to the encoder as lists, numeric columns as arrays). The store key hashes a sequence's
        inputs as ``embed`` does; a Dataset's inputs are not hashed (that would read them all on the
        driver), so after changing a Dataset's content under the same ids pass ``overwrite=True`` or a
        ``settings`` entry naming the data version.
    ids : sequence of str or int, optional
        Required for a sequence. For a Dataset, the ids it must hold (by default they are read from
        ``id_column`` in a first pass).
    store_dir : str or pathlib.Path
        The store directory; it must be on a filesystem shared by the driver and all workers.
    dataset : str, optional
        Dataset name (part of the key, as in ``embed``).
    encoder_kwargs : dict, optional
        Keyword arguments for the encoder factory.
    num_actors : int
        Size of the actor pool (each actor holds one encoder).
    batch_size : int
        Inputs per forward pass.
    shard_size : int
        Rows per shard (one block); for a sequence, the same shard boundaries as ``embed``.
    normalize : bool
        L2-normalise rows (part of the key).
    settings : dict, optional
        Extra settings that change the result (part of the key).
    overwrite : bool
        Discard what ``store_dir`` holds and recompute.
    num_cpus, num_gpus : float
        Resources per actor (and for the metadata task).
    id_column, input_column : str
        Column names for a Dataset input.
    progress : bool
        Show a tqdm bar of committed rows on the driver.

    Returns
    -------
    EmbeddingStore

    Raises
    ------
    ValueError
        ``store_dir`` holds a store with another key (unless ``overwrite``), or the Dataset's ids differ
        from ``ids``.
    PersistenceError
        The driver cannot see a shard a worker wrote (``store_dir`` is not shared), or a finished shard of
        the store being resumed is corrupt.

    Examples
    --------
    >>> import functools, numpy as np, torch, tempfile  # doctest: +SKIP
    >>> from latentalign.encoders import TorchModuleEncoder  # doctest: +SKIP
    >>> factory = functools.partial(TorchModuleEncoder, torch.nn.Linear(4, 3), dim=3)  # doctest: +SKIP
    >>> X = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)  # doctest: +SKIP
    >>> store = embed_distributed(factory, X, list(range(100)), store_dir=tempfile.mkdtemp(),
    ...                           shard_size=25, num_actors=2)  # doctest: +SKIP
    >>> len(store), store.n_shards  # doctest: +SKIP
    (100, 4)
    """
    spec = EncoderSpec.coerce(encoder, encoder_kwargs)
    if store_dir is None:
        raise ValueError(
            "store_dir is required: a directory on a filesystem shared by the driver and every Ray worker."
        )
    shard_size = check_number(shard_size, "shard_size", integer=True, low=1)
    batch_size = check_number(batch_size, "batch_size", integer=True, low=1)
    num_actors = check_number(num_actors, "num_actors", integer=True, low=1)
    check_number(num_cpus, "num_cpus", low=0)
    check_number(num_gpus, "num_gpus", low=0)
    settings = {"normalize": bool(normalize), **(settings or {})}
    directory = Path(store_dir).expanduser().absolute()

    ray = require_ray()
    rd = require_ray_data()
    from_dataset = isinstance(inputs, rd.Dataset)
    if from_dataset:
        columns = _dataset_columns(inputs)
        for name, col in (("id_column", id_column), ("input_column", input_column)):
            if col not in columns:
                raise ValueError(
                    f"{name}={col!r} is not a column of the dataset (columns: {columns}); pass {name}=... naming "
                    "it."
                )
        id_list, id_kind = normalize_ids(_read_dataset_ids(inputs, id_column) if ids is None else ids)
        key_ids: list[Any] = sorted(id_list)
        key_settings = {**settings, "row_order": "dataset"}
        # hashing a Dataset's inputs would read all of them on the driver: its key covers the ids only
        inputs_sha = "ray.data.Dataset"
    else:
        _check_sequence(inputs)
        if ids is None:
            raise ValueError("ids are required when inputs is a sequence: pass one unique id per input.")
        id_list, id_kind = normalize_ids(ids)
        if len(id_list) != len(inputs):
            raise ValueError(f"got {len(inputs)} inputs but {len(id_list)} ids; pass exactly one id per input.")
        key_ids, key_settings = id_list, settings
        inputs_sha = inputs_digest(inputs)

    resources: dict[str, float] = {"num_cpus": num_cpus}
    if num_gpus:
        resources["num_gpus"] = num_gpus
    info = ray.get(ray.remote(_describe).options(**resources).remote(spec))
    encoder_meta = info["metadata"]
    key_sha = ids_digest(key_ids, id_kind)
    key = content_key(encoder_meta, dataset, len(key_ids), key_sha, inputs_sha, key_settings)

    finished = finished_store(directory, key, overwrite=overwrite)
    if finished is not None:
        return finished
    directory.mkdir(parents=True, exist_ok=True)

    with write_lock(directory):
        manifest, finished = open_for_writing(
            directory, key, overwrite=overwrite, mismatch_hint=" (or written from a Dataset vs from a sequence)"
        )
        if finished is not None:
            return finished
        if manifest is None:
            manifest = new_manifest(
                key=key, dim=info["dim"], n_total=len(id_list), id_kind=id_kind, encoder_meta=encoder_meta,
                dataset=dataset, ids_sha=key_sha, settings=settings, shard_size=shard_size,
            )
            manifest["writer"] = "latentalign.dist.embed_distributed"
            if from_dataset:
                manifest["row_order"] = "dataset"
        writer = StoreWriter(directory, manifest)
        writer.write_manifest()
        common = dict(
            store_dir=str(directory), expected_metadata=canonical_json(encoder_meta), id_kind=id_kind,
            dim=info["dim"], batch_size=batch_size, normalize=normalize,
        )
        run = _run_dataset if from_dataset else _run_sequence
        run(ray, rd, spec, inputs, id_list, id_kind, writer, common=common, shard_size=shard_size,
            num_actors=num_actors, resources=resources, id_column=id_column, input_column=input_column,
            progress=progress, name=info["name"])
        writer.finish()
    return EmbeddingStore(directory)


def _progress(total: int, initial: int, name: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=f"embed {name} (ray)", unit="item")


def _reraise(exc: BaseException, writer: StoreWriter, n: int) -> None:
    """Re-raise ``exc``, noting how far the store got and how to resume."""
    if hasattr(exc, "add_note"):
        exc.add_note(
            f"latentalign.dist: {writer.rows_done} of {n} rows are committed in {str(writer.dir)!r}; re-run "
            "the same call to resume from there."
        )
    raise exc


def _run_sequence(
    ray: Any, rd: Any, spec: EncoderSpec, inputs: Any, ids: list[Any], id_kind: str, writer: StoreWriter, *,
    common: dict[str, Any], shard_size: int, num_actors: int, resources: dict[str, float], progress: bool,
    name: str, **_: Any,
) -> None:
    n = len(ids)
    first = writer.rows_done
    bounds = [(s, min(s + shard_size, n)) for s in range(first, n, shard_size)]
    if not bounds:
        return
    payloads = [ray.put((s, ids[s:e], _slice(inputs, s, e))) for s, e in bounds]
    ds = rd.from_items([{"task": i} for i in range(len(bounds))], override_num_blocks=len(bounds))
    out = ds.map_batches(
        _ShardEncoder,
        fn_constructor_kwargs={**common, "spec": spec, "payloads": payloads},
        batch_size=1,
        batch_format="numpy",
        compute=rd.ActorPoolStrategy(size=min(num_actors, len(bounds))),
        **resources,
    )
    waiting: dict[int, dict[str, Any]] = {}
    with _progress(n, first, name, progress) as bar:
        try:
            for row in out.iter_rows():
                rec = _record(row)
                s = rec["start"]
                if rec["ids_sha256"] != ids_digest(ids[s : s + rec["rows"]], id_kind):
                    raise RuntimeError(f"internal error: the shard starting at row {s} holds other ids than planned.")
                waiting[s] = rec
                while writer.rows_done in waiting:  # commit in input order: the manifest lists a prefix
                    done = waiting.pop(writer.rows_done)
                    _commit(writer, done)
                    bar.update(done["rows"])
        except BaseException as exc:
            _reraise(exc, writer, n)
    if writer.rows_done != n:
        raise RuntimeError(f"internal error: {writer.rows_done} of {n} rows were committed.")


def _run_dataset(
    ray: Any, rd: Any, spec: EncoderSpec, inputs: Any, ids: list[Any], id_kind: str, writer: StoreWriter, *,
    common: dict[str, Any], shard_size: int, num_actors: int, resources: dict[str, float], id_column: str,
    input_column: str, progress: bool, name: str,
) -> None:
    n = len(ids)
    expected = set(ids)
    committed: set[Any] = set()
    if writer.manifest["shards"]:
        resumed = EmbeddingStore(writer.dir, allow_incomplete=True)
        committed = set(resumed.ids)
    if len(committed) == n:
        return
    done_ref = [ray.put(frozenset(committed))] if committed else None
    out = inputs.select_columns([id_column, input_column]).map_batches(
        _ShardEncoder,
        fn_constructor_kwargs={**common, "spec": spec, "done": done_ref, "id_column": id_column,
                               "input_column": input_column},
        batch_size=shard_size,
        batch_format="numpy",
        compute=rd.ActorPoolStrategy(size=num_actors),
        **resources,
    )
    with _progress(n, len(committed), name, progress) as bar:
        try:
            for row in out.iter_rows():
                rec = _record(row)
                shard_ids = json.loads(rec["ids_json"])
                unknown = [i for i in shard_ids if i not in expected]
                if unknown:
                    raise ValueError(
                        f"the dataset holds {len(unknown)} ids that are not in ids (e.g. {unknown[:5]}); pass the "
                        "dataset's own ids, or ids=None to read them from the dataset."
                    )
                again = [i for i in shard_ids if i in committed]
                if again or len(set(shard_ids)) != len(shard_ids):
                    raise ValueError(
                        f"the dataset holds repeated ids (e.g. {(again or shard_ids)[:5]}); ids must be unique "
                        "(rows are keyed by id)."
                    )
                _commit(writer, rec)
                committed.update(shard_ids)
                bar.update(rec["rows"])
        except BaseException as exc:
            _reraise(exc, writer, n)
    if len(committed) != n:
        missing = [i for i in ids if i not in committed]
        raise ValueError(
            f"the dataset yielded {len(committed)} of the {n} ids; {len(missing)} never came (e.g. {missing[:5]}). "
            "Pass ids=None to embed the ids the dataset holds."
        )
