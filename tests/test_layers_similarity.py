"""similarity_matrix: the layers x layers table equals the pairwise measures, on arrays and layered stores."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from latentalign.encoders import TorchModuleEncoder
from latentalign.evaluation import LayerSimilarity, similarity_matrix
from latentalign.functional.similarity import cknna, linear_cka, mutual_knn
from latentalign.reports import plot_layer_similarity
from latentalign.store import LayeredStore, write_layer_embeddings

N = 240


def _model(seed: int, dtype: type = np.float32) -> dict[str, np.ndarray]:
    """Four layers drifting away from a shared latent (planted, decreasing correlation), varied widths."""
    rng = np.random.default_rng(seed)
    z = np.random.default_rng(99).standard_normal((N, 6))  # the items: shared by every model
    layers = {}
    for i, width in enumerate((5, 8, 12, 7)):
        mix = rng.standard_normal((6, width))
        layers[f"layer.{i}"] = (z @ mix + (0.3 + i) * rng.standard_normal((N, width)) + 3.0).astype(dtype)
    return layers


PAIRWISE = {
    "linear_cka": lambda X, Y: linear_cka(X, Y),
    "mutual_knn": lambda X, Y: mutual_knn(X, Y, k=7),
    "cknna": lambda X, Y: cknna(X, Y, k=7),
}


@pytest.mark.parametrize(
    ("metric", "dtype"),
    [("linear_cka", np.float32), ("linear_cka", np.float64), ("mutual_knn", np.float32), ("cknna", np.float64)],
)
def test_table_equals_pairwise_calls(metric, dtype):
    A, B = _model(0, dtype), _model(1, dtype)
    result = similarity_matrix(A, B, metric=metric, k=7, name_a="m0", name_b="m1")
    assert isinstance(result, LayerSimilarity)
    assert result.layers_a == list(A) and result.layers_b == list(B) and result.n == N
    assert result.values.shape == (4, 4) and result.name_a == "m0" and result.name_b == "m1"
    expected = np.array([[PAIRWISE[metric](A[a], B[b]) for b in B] for a in A])
    np.testing.assert_allclose(result.values, expected, atol=1e-6, rtol=0)
    assert np.ptp(expected) > 0.1  # the planted drift gives a table worth comparing


def test_streamed_chunks_give_the_same_cka():
    A, B = _model(0), _model(1)
    whole = similarity_matrix(A, B).values
    for chunk_rows in (50, 239):
        np.testing.assert_allclose(similarity_matrix(A, B, chunk_rows=chunk_rows).values, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("against_itself", [False, True])
def test_streamed_cka_in_groups_of_layers(monkeypatch, against_itself):
    """A budget below one layer's cross products: one pass over the row chunks per layer of A."""
    import latentalign.evaluation.layer_similarity as module

    A = _model(0)
    B = None if against_itself else _model(1)
    whole = similarity_matrix(A, B).values
    monkeypatch.setattr(module, "CROSS_BYTES", 1)
    np.testing.assert_allclose(similarity_matrix(A, B, chunk_rows=70).values, whole, atol=1e-6, rtol=0)


def test_streamed_cka_redoes_float32_overflow_in_float64():
    A = _model(0)
    huge = {name: X * np.float32(1e20) for name, X in A.items()}  # products beyond float32's 3.4e38
    expected = similarity_matrix(A, _model(1)).values
    np.testing.assert_allclose(similarity_matrix(huge, _model(1), chunk_rows=100).values, expected, atol=1e-6)


def test_streamed_cka_names_the_layer_and_rows_of_non_finite_values():
    A, B = _model(0), _model(1)
    B["layer.2"] = B["layer.2"].copy()
    B["layer.2"][150, 1] = np.inf
    with pytest.raises(ValueError, match=r"B\['layer.2'\] has NaN or infinite values in rows 100..199"):
        similarity_matrix(A, B, chunk_rows=100)


@pytest.mark.parametrize("metric", sorted(PAIRWISE))
def test_a_model_against_itself_is_symmetric_with_unit_diagonal(metric):
    A = _model(0)
    alone = similarity_matrix(A, metric=metric, k=7)
    twice = similarity_matrix(A, dict(A), metric=metric, k=7)
    np.testing.assert_allclose(alone.values, twice.values, atol=1e-6, rtol=0)
    if metric != "cknna":  # CKNNA's HSIC of non-symmetric kNN kernels is not symmetric in its arguments
        np.testing.assert_allclose(alone.values, alone.values.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(twice.values), 1.0, atol=1e-6)
    assert alone.name_b == alone.name_a == "A"


def test_planted_rotation_scores_one_and_is_the_best_match():
    rng = np.random.default_rng(3)
    A = _model(0, np.float64)
    Q = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    B = {"rotated": 2.5 * A["layer.2"] @ Q - 7.0, "noise": rng.standard_normal((N, 12))}
    result = similarity_matrix(A, B)
    assert result.values[2, 0] == pytest.approx(1.0, abs=1e-9)
    assert result.values[:, 1].max() < 0.2
    assert result.best_match()["layer.2"] == "rotated"


def test_layered_stores_in_different_id_orders(tmp_path):
    A, B = _model(0), _model(1)
    ids = [f"w{i}" for i in range(N)]
    perm = np.random.default_rng(0).permutation(N)
    store_a = write_layer_embeddings(tmp_path / "a", A, ids, shard_size=100)
    store_b = write_layer_embeddings(tmp_path / "b", {k: v[perm] for k, v in B.items()}, [ids[i] for i in perm])
    for metric in ("linear_cka", "mutual_knn"):
        ref = similarity_matrix(A, B, metric=metric, k=7).values
        got = similarity_matrix(LayeredStore(tmp_path / "a"), store_b, metric=metric, k=7, chunk_rows=64).values
        np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(similarity_matrix(store_a, A).values.diagonal(), 1.0, atol=1e-6)


def test_markdown_table():
    A = _model(0)
    result = similarity_matrix({"x": A["layer.0"]}, {"y0": A["layer.0"], "y1": A["layer.3"]}, name_a="M", name_b="N")
    lines = result.to_markdown(2).splitlines()
    assert lines[0] == "| M / N (linear_cka) | y0 | y1 |"
    assert lines[1] == "|---|---|---|"
    assert lines[2] == f"| x | 1.00 | {result.values[0, 1]:.2f} |"


def test_heatmap_png_and_svg_carry_names_and_values(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    result = similarity_matrix(_model(0), _model(1), name_a="MiniA", name_b="MiniB")
    out = plot_layer_similarity(result, tmp_path / "cka.png")
    assert out == tmp_path / "cka.png"
    assert min(Image.open(out).size) > 100
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", out.with_suffix(".svg").read_text())
    assert {"MiniA layer", "MiniB layer", "layer.0", "layer.3", "linear_cka"} <= set(texts)
    assert sum(t.startswith(("0.", "1.")) and len(t) == 4 for t in texts) >= 16  # the 4 x 4 values annotated
    plot_layer_similarity(result, tmp_path / "bare.png", annotate=False)
    bare = re.findall(r"<text[^>]*>([^<]*)</text>", (tmp_path / "bare.svg").read_text())
    assert f"{result.values[1, 2]:.2f}" not in bare and "MiniA layer" in bare


def test_errors_name_the_layer_and_the_fix():
    A = _model(0)
    with pytest.raises(ValueError, match=r"metric=.svcca. is not supported; choose one of \[.linear_cka."):
        similarity_matrix(A, metric="svcca")
    with pytest.raises(ValueError, match=r"A has 240 rows but B has 10: .* same items"):
        similarity_matrix(A, {"x": np.ones((10, 3))})
    with pytest.raises(ValueError, match=r"the layers of A have different numbers of rows"):
        similarity_matrix({"a": np.ones((5, 2)), "b": np.ones((6, 2))})
    with pytest.raises(TypeError, match="A must be a non-empty mapping layer name"):
        similarity_matrix({})
    flat = {"ok": A["layer.0"], "const": np.ones((N, 3), dtype=np.float32)}
    for metric in ("linear_cka", "mutual_knn"):
        with pytest.raises(ValueError, match="layer 'const' of A has zero variance"):
            similarity_matrix(flat, metric=metric)
    bad = dict(A)
    bad["layer.1"] = A["layer.1"].copy()
    bad["layer.1"][5, 2] = np.nan
    with pytest.raises(ValueError, match=r"A\['layer.1'\]"):
        similarity_matrix(bad)
    with pytest.raises(ValueError, match=r"cknna with k=300 needs more than k rows"):
        similarity_matrix(A, metric="cknna", k=300)


def test_tiny_cnn_layers_end_to_end(tmp_path):
    """A tiny CNN's layers (one forward pass) -> layered store -> the table, against the arrays."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3)
    )
    X = np.random.default_rng(0).standard_normal((60, 1, 8, 8)).astype(np.float32)
    net(torch.from_numpy(X[:1]))  # materialise the lazy layer
    states = TorchModuleEncoder(net.eval(), dim=3).encode(X, layers="all", progress=False)
    store = write_layer_embeddings(tmp_path, states, list(range(60)))
    result = similarity_matrix(store, metric="linear_cka")
    assert result.layers_a == ["0", "1", "2", "3", "4"]
    expected = np.array([[linear_cka(states[a], states[b]) for b in states] for a in states])
    np.testing.assert_allclose(result.values, expected, atol=1e-6, rtol=0)
