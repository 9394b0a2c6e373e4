"""Layered stores: one embedding store per hidden layer of a model, over one shared set of ids.

Layout of a layered store directory::

    layers.json            the layer names in order, the row count, the ids digest, the metadata
    <layer>/               an ordinary store (manifest.json, embeddings/, metadata/) per layer

Each ``<layer>/`` is written by :func:`~latentalign.store.write_embeddings` and read by
:class:`~latentalign.store.EmbeddingStore`, so it has the same integrity (sha256 per shard, size checks,
atomic manifest) and can be opened on its own. ``layers.json`` is written last, atomically: it is the
commit point, so a directory without it is not a finished layered store. On opening, every layer's
store must hold the ids the manifest records (same count, same digest) in the same order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentalign._version import __version__
from latentalign.exceptions import PersistenceError
from latentalign.store.files import atomic_write_bytes
from latentalign.store.format import DEFAULT_SHARD_SIZE, MANIFEST, ids_digest, normalize_ids
from latentalign.store.reader import EmbeddingStore
from latentalign.store.writer import clear_store, write_embeddings

__all__ = ["LAYERS_FORMAT", "LAYERS_MANIFEST", "LayeredStore", "write_layer_embeddings"]

LAYERS_FORMAT = "latentalign.layers"
LAYERS_VERSION = 1
LAYERS_MANIFEST = "layers.json"
_LAYER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def _check_layer_name(name: Any) -> str:
    if not isinstance(name, str) or not _LAYER_NAME.match(name) or name in (MANIFEST, LAYERS_MANIFEST):
        raise ValueError(
            f"layer name {name!r} cannot be a directory name: use letters, digits, '_', '.' and '-' (not first "
            "'.' or '-'), e.g. 'layer.3' or 'features.0'. Rename the key of states."
        )
    return name


def write_layer_embeddings(
    root: str | Path,
    states: Mapping[str, Any],
    ids: Sequence[Hashable],
    *,
    metadata: dict[str, Any] | None = None,
    dataset: str | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
) -> LayeredStore:
    """Write one store per layer (``root/<layer>/``) over the same ``ids``, then ``root/layers.json``.

    Parameters
    ----------
    root : str or pathlib.Path
        The layered store directory.
    states : mapping of str to array of shape (n, d_layer)
        Layer name -> embeddings, e.g. what ``encoder.encode(inputs, layers="all")`` returns.
    ids : sequence of hashable
        One id per row, shared by every layer.
    metadata : dict, optional
        Recorded in ``layers.json`` and, with ``"layer": name`` added, in each layer's store.
    dataset : str, optional
    shard_size : int
    overwrite : bool
        Replace an existing layered store at ``root`` (each layer store is replaced as
        :func:`~latentalign.store.write_embeddings` does; layers no longer present are cleared).

    Returns
    -------
    LayeredStore

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> states = {"layer.0": np.eye(3, dtype=np.float32), "layer.1": np.ones((3, 2), dtype=np.float32)}
    >>> store = write_layer_embeddings(tempfile.mkdtemp(), states, ["a", "b", "c"])
    >>> store.layers, len(store), store["layer.1"].dim
    (['layer.0', 'layer.1'], 3, 2)
    """
    if not isinstance(states, Mapping) or not states:
        raise ValueError(
            f"states must be a non-empty mapping layer name -> (n, d) array, got {type(states).__name__}"
            f"{'' if not isinstance(states, Mapping) else ' (empty)'}. Pass encoder.encode(inputs, layers='all')."
        )
    names = [_check_layer_name(name) for name in states]
    id_list, id_kind = normalize_ids(ids)
    for name in names:
        shape = np.shape(states[name])
        if len(shape) != 2 or shape[0] != len(id_list):
            raise ValueError(
                f"states[{name!r}] has shape {shape}, but {len(id_list)} ids were given: every layer must be "
                "(n_ids, d). Pass the ids of the rows the layers were encoded from."
            )
    directory = Path(root)
    manifest_path = directory / LAYERS_MANIFEST
    previous: list[str] = []
    if manifest_path.exists():
        if not overwrite:
            raise ValueError(f"{str(directory)!r} already holds a layered store; pass overwrite=True to replace it.")
        previous = list(_read_layers_manifest(directory)["layers"])
        manifest_path.unlink()  # the commit point goes first: a crash below leaves no claim of a finished store
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(metadata or {})
    keys: dict[str, str | None] = {}
    for name in names:
        store = write_embeddings(
            directory / name,
            states[name],
            id_list,
            metadata={**meta, "layer": name},
            dataset=dataset,
            shard_size=shard_size,
            overwrite=overwrite,
        )
        keys[name] = store.key
    for name in previous:
        if name not in keys and (directory / name / MANIFEST).exists():
            clear_store(directory / name)
    manifest = {
        "format": LAYERS_FORMAT,
        "version": LAYERS_VERSION,
        "layers": names,
        "n": len(id_list),
        "ids_sha256": ids_digest(id_list, id_kind),
        "dims": {name: int(np.shape(states[name])[1]) for name in names},
        "keys": keys,
        "dataset": dataset,
        "metadata": meta,
        "latentalign": __version__,
    }
    atomic_write_bytes(manifest_path, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return LayeredStore(directory)


def _read_layers_manifest(directory: Path) -> dict[str, Any]:
    path = directory / LAYERS_MANIFEST
    if not path.is_file():
        raise PersistenceError(
            f"{str(directory)!r} is not a layered store: it has no {LAYERS_MANIFEST}. Write one with "
            "latentalign.store.write_layer_embeddings(...)."
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PersistenceError(f"{str(path)!r} cannot be parsed ({exc}); the layered store is corrupt.") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != LAYERS_FORMAT:
        raise PersistenceError(f"{str(path)!r} is not a latentalign layers manifest.")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > LAYERS_VERSION:
        raise PersistenceError(
            f"{str(path)!r} has format version {version!r}; this latentalign reads up to {LAYERS_VERSION} "
            "(upgrade latentalign for newer stores)."
        )
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers or not all(isinstance(n, str) for n in layers):
        raise PersistenceError(f"{str(path)!r} lists no layers (layers={layers!r}); the layered store is corrupt.")
    return manifest


class LayeredStore:
    """Read access to a layered store written by :func:`write_layer_embeddings`.

    Parameters
    ----------
    root : str or pathlib.Path
        The directory holding ``layers.json``.
    verify : {"read", "size", "checksum", None}
        Passed to each layer's :class:`~latentalign.store.EmbeddingStore`.

    Attributes
    ----------
    layers : list of str
        The layer names, in the order they were written.
    manifest : dict
        The content of ``layers.json``.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> root = tempfile.mkdtemp()
    >>> _ = write_layer_embeddings(root, {"embeddings": np.eye(2, dtype=np.float32)}, [10, 20])
    >>> store = LayeredStore(root)
    >>> store.ids, store["embeddings"].get([20]).tolist()
    ([10, 20], [[0.0, 1.0]])
    """

    def __init__(self, root: str | Path, *, verify: str | None = "read") -> None:
        self.path = Path(root)
        self.manifest = _read_layers_manifest(self.path)
        self.layers: list[str] = list(self.manifest["layers"])
        self._stores: dict[str, EmbeddingStore] = {}
        for name in self.layers:
            store = EmbeddingStore(self.path / name, verify=verify)
            if len(store) != self.manifest["n"] or store.manifest.get("ids_sha256") != self.manifest["ids_sha256"]:
                raise PersistenceError(
                    f"layer {name!r} of {str(self.path)!r} holds {len(store)} rows with other ids than the layered "
                    f"store records ({self.manifest['n']} rows); it was replaced on its own. Rewrite the layered "
                    "store with write_layer_embeddings(..., overwrite=True)."
                )
            self._stores[name] = store

    def __getitem__(self, name: str) -> EmbeddingStore:
        if name not in self._stores:
            raise KeyError(f"no layer {name!r} in {str(self.path)!r}; available layers: {self.layers}.")
        return self._stores[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return int(self.manifest["n"])

    def __repr__(self) -> str:
        return f"LayeredStore({str(self.path)!r}, layers={len(self.layers)}, n={len(self)})"

    def items(self) -> Iterator[tuple[str, EmbeddingStore]]:
        """``(layer name, EmbeddingStore)`` pairs in layer order."""
        return iter(self._stores.items())

    @property
    def ids(self) -> list[Any]:
        """The row ids, shared by every layer."""
        return self._stores[self.layers[0]].ids

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata given to :func:`write_layer_embeddings`."""
        return dict(self.manifest.get("metadata") or {})

    def to_dict(self) -> dict[str, np.ndarray]:
        """Every layer as one ``(n, d_layer)`` float32 array (loads everything into memory)."""
        return {name: store.to_numpy() for name, store in self._stores.items()}
