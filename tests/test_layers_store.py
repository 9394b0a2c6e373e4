"""Layered stores: one store per layer over one id set, with the integrity of the ordinary store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentalign.exceptions import PersistenceError
from latentalign.store import EmbeddingStore, LayeredStore, write_embeddings, write_layer_embeddings

IDS = [f"item{i}" for i in range(7)]


def _states(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "embeddings": rng.standard_normal((7, 4)).astype(np.float32),
        "layer.0": rng.standard_normal((7, 3)).astype(np.float32),
        "layer.1": rng.standard_normal((7, 5)).astype(np.float32),
    }


def test_round_trip_keeps_layers_ids_order_and_metadata(tmp_path):
    states = _states()
    written = write_layer_embeddings(tmp_path, states, IDS, metadata={"model_id": "tiny"}, shard_size=3)
    store = LayeredStore(tmp_path, verify="checksum")
    assert store.layers == written.layers == ["embeddings", "layer.0", "layer.1"]
    assert list(store) == store.layers and len(store) == 7 and store.ids == IDS
    for name, X in states.items():
        np.testing.assert_array_equal(store[name].to_numpy(), X)
        assert store[name].n_shards == 3
        assert store[name].metadata["layer"] == name and store[name].metadata["model_id"] == "tiny"
        # each layer is an ordinary store, readable on its own
        np.testing.assert_array_equal(EmbeddingStore(tmp_path / name).get(["item6"]), X[6:])
    assert store.metadata == {"model_id": "tiny"}
    assert {k: v.shape for k, v in store.to_dict().items()} == {k: v.shape for k, v in states.items()}
    assert [name for name, _ in store.items()] == store.layers


def test_overwrite_replaces_and_clears_dropped_layers(tmp_path):
    write_layer_embeddings(tmp_path, _states(0), IDS)
    with pytest.raises(ValueError, match="already holds a layered store; pass overwrite=True"):
        write_layer_embeddings(tmp_path, _states(1), IDS)
    new = {"layer.1": _states(1)["layer.1"]}
    store = write_layer_embeddings(tmp_path, new, IDS, overwrite=True)
    assert store.layers == ["layer.1"]
    np.testing.assert_array_equal(store["layer.1"].to_numpy(), new["layer.1"])
    assert not (tmp_path / "layer.0" / "manifest.json").exists()


def test_input_errors(tmp_path):
    with pytest.raises(ValueError, match="states must be a non-empty mapping"):
        write_layer_embeddings(tmp_path, {}, IDS)
    with pytest.raises(ValueError, match=r"states\['embeddings'\] has shape \(7, 4\), but 6 ids were given"):
        write_layer_embeddings(tmp_path, _states(), IDS[:6])
    with pytest.raises(ValueError, match="layer name '../up' cannot be a directory name"):
        write_layer_embeddings(tmp_path, {"../up": np.ones((7, 2))}, IDS)
    write_layer_embeddings(tmp_path / "ok", _states(), IDS)
    with pytest.raises(KeyError, match=r"no layer 'layer.9'.*available layers: \['embeddings'"):
        LayeredStore(tmp_path / "ok")["layer.9"]


def test_integrity_failures_are_detected(tmp_path):
    with pytest.raises(PersistenceError, match="is not a layered store: it has no layers.json"):
        LayeredStore(tmp_path)
    write_layer_embeddings(tmp_path, _states(), IDS)
    # a layer replaced on its own (other ids) no longer belongs to the set
    write_embeddings(tmp_path / "layer.0", _states()["layer.0"], IDS[::-1], overwrite=True)
    with pytest.raises(PersistenceError, match="layer 'layer.0' .* holds 7 rows with other ids"):
        LayeredStore(tmp_path)
    # a flipped byte in a shard is caught by the layer store's checksum
    write_layer_embeddings(tmp_path, _states(), IDS, overwrite=True)
    shard = next((tmp_path / "layer.1" / "embeddings").glob("*.npy"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(PersistenceError):
        LayeredStore(tmp_path, verify="checksum")
    (tmp_path / "layers.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(PersistenceError, match="is not a latentalign layers manifest"):
        LayeredStore(tmp_path)
