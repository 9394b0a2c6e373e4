"""Stitcher and evaluate_stitching on planted problems with real heads (torch and scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from latentalign import Affine, Procrustes, RelativeProjection, UniversalSpace
from latentalign.evaluation.stitching import evaluate_stitching
from latentalign.exceptions import PersistenceError
from latentalign.stitching import Stitcher, apply_head, map_embeddings


def clustered(n=600, d=16, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)) * 3
    labels = rng.integers(0, classes, n)
    Y = centres[labels] + rng.standard_normal((n, d))
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    X = Y @ Q.T  # model A sees a rotated copy of B's space: Y = X Q
    return X, Y, labels


def test_stitched_head_recovers_its_own_accuracy_on_a_planted_rotation():
    X, Y, labels = clustered()
    head = LogisticRegression(max_iter=1000).fit(Y[:400], labels[:400])
    aligner = Procrustes().fit(X[:100], Y[:100])
    scores = evaluate_stitching(head, X[400:], Y[400:], labels[400:], aligner)
    assert scores["native"]["accuracy"] > 0.9
    assert scores["stitched"]["accuracy"] == pytest.approx(scores["native"]["accuracy"], abs=1e-12)
    # Without the map the head reads rotated features and falls towards chance.
    assert scores["absolute"]["accuracy"] < scores["native"]["accuracy"] - 0.3


def test_relative_stitching_uses_the_head_trained_on_relative_coordinates():
    X, Y, labels = clustered(seed=1)
    rel = RelativeProjection().fit(X[:100], Y[:100])
    head = LogisticRegression(max_iter=1000).fit(rel.transform_target(Y[:400]), labels[:400])
    scores = evaluate_stitching(head, X[400:], Y[400:], labels[400:], rel)
    assert scores["stitched"]["accuracy"] == pytest.approx(scores["native"]["accuracy"], abs=0.02)
    assert scores["absolute"] is None  # relative space has 100 dims, A's space 16


def test_stitcher_module_with_torch_encoder_and_head():
    torch.manual_seed(0)
    encoder_a = torch.nn.Linear(5, 8).double()
    Q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    head_b = torch.nn.Linear(8, 3).double()
    inputs = torch.randn(200, 5, dtype=torch.float64)
    with torch.no_grad():
        Xa = encoder_a(inputs)
    aligner = Procrustes(center=False).fit(Xa, Xa @ Q)
    stitched = Stitcher(encoder_a, aligner, head_b)
    assert not stitched.training
    out = stitched(inputs)
    with torch.no_grad():
        expected = head_b(Xa @ Q)
    torch.testing.assert_close(out, expected, atol=1e-8, rtol=1e-8)
    np.testing.assert_array_equal(stitched.predict(inputs), expected.argmax(1).numpy())


def test_binary_decision_function_becomes_two_columns():
    X, Y, labels = clustered(classes=2, seed=2)
    head = LogisticRegression(max_iter=1000).fit(Y, labels)
    scores = apply_head(head, torch.from_numpy(Y))
    assert scores.shape == (Y.shape[0], 2)
    np.testing.assert_array_equal(scores.argmax(1).numpy(), head.predict(Y))


def test_universal_space_requires_model_names():
    class FakeUniversal:  # only the interface matters for the error path
        def translate(self, Z, *, src, dst):
            return Z

    with pytest.raises(ValueError, match="needs the source and destination model names"):
        map_embeddings(FakeUniversal(), torch.zeros(2, 2))


def test_bad_components_are_rejected():
    with pytest.raises(TypeError, match="encoder_a must be"):
        Stitcher(42, None, torch.nn.Identity())
    with pytest.raises(TypeError, match="head_b must be"):
        Stitcher(None, None, 42)
    with pytest.raises(TypeError, match="aligner must be a fitted latentalign aligner"):
        map_embeddings(object(), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="head_b must be"):
        apply_head(42, torch.zeros(2, 2))


def test_evaluate_stitching_validates_labels():
    X, Y, labels = clustered(n=50)
    head = LogisticRegression(max_iter=500).fit(Y, labels)
    with pytest.raises(ValueError, match="labels must be a 1-D array with one label per row of X_test"):
        evaluate_stitching(head, X, Y, labels[:10], None)
    with pytest.raises(TypeError, match="labels must be integer class indices"):
        evaluate_stitching(head, X, Y, labels.astype(float), None)
    with pytest.raises(ValueError, match="X_test and Y_test must be paired"):
        evaluate_stitching(head, X, Y[:10], labels, None)


# -- Stitcher as a torch module ------------------------------------------------------------------------------


def rotated_pair(n=300, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return X, X @ Q + 0.5


def test_state_dict_holds_the_map_and_loading_another_map_changes_the_outputs():
    X, Y = rotated_pair()
    X2, Y2 = rotated_pair(seed=1)
    head = torch.nn.Linear(8, 3).double()
    first = Stitcher(None, Procrustes().fit(X, Y), head)
    second = Stitcher(None, Procrustes().fit(X2, Y2), head)
    assert {"map.weight", "map.bias"} <= set(first.state_dict())
    assert not torch.allclose(first(X), second(X))
    result = first.load_state_dict(second.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(first(X), second(X))


def test_map_dtype_follows_the_head_and_to_moves_everything():
    X, Y = rotated_pair()
    aligner = Procrustes().fit(X, Y)
    stitched = Stitcher(None, aligner, torch.nn.Linear(8, 3))  # float32 head: float32 map
    assert stitched.map.weight.dtype == torch.float32
    stitched.to(torch.float64)
    assert stitched.map.weight.dtype == torch.float64 and stitched.head_b.weight.dtype == torch.float64
    with torch.no_grad():
        expected = stitched.head_b(aligner.transform(X))
    torch.testing.assert_close(stitched(X), expected)
    # float32 embeddings are cast to the map's dtype, as the old transform-based path did.
    torch.testing.assert_close(stitched(X.float()), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_stitcher_to_cuda_moves_the_map():
    X, Y = rotated_pair()
    stitched = Stitcher(None, Procrustes().fit(X, Y), torch.nn.Linear(8, 3)).to("cuda")
    assert stitched.map.weight.is_cuda
    assert stitched(X).is_cuda  # CPU embeddings are moved to the map's device


def test_forward_is_differentiable_and_training_reduces_the_loss():
    torch.manual_seed(0)
    X, Y = rotated_pair(n=400)
    labels = (Y[:, 0] > Y[:, 1]).long()
    aligner = Affine().fit(X[:50], Y[:50] + 0.3 * torch.randn(50, 8, dtype=torch.float64))  # a rough map
    head = torch.nn.Linear(8, 2).double()
    stitched = Stitcher(None, aligner, head, trainable_map=True)
    assert not stitched.training
    out = stitched(X)
    assert out.requires_grad  # no inference_mode: the graph is there even in eval mode
    stitched.train()
    params = list(stitched.parameters())
    assert {id(p) for p in stitched.map.parameters()} <= {id(p) for p in params}
    optimizer = torch.optim.SGD(params, lr=0.5)
    loss_fn = torch.nn.CrossEntropyLoss()
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = loss_fn(stitched(X), labels)
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
    assert stitched.map.weight.grad is not None and head.weight.grad is not None
    assert losses[-1] < 0.8 * losses[0]


def test_frozen_map_gets_no_gradient_but_the_head_does():
    X, Y = rotated_pair()
    stitched = Stitcher(None, Procrustes().fit(X, Y), torch.nn.Linear(8, 2).double())
    assert [name for name, _ in stitched.named_parameters()] == ["head_b.weight", "head_b.bias"]
    stitched(X).sum().backward()
    assert stitched.head_b.weight.grad is not None


def test_predict_runs_without_gradients():
    X, Y = rotated_pair()
    stitched = Stitcher(None, Procrustes().fit(X, Y), torch.nn.Linear(8, 3).double(), trainable_map=True)
    with torch.enable_grad():
        assert stitched.predict(X).shape == (X.shape[0],)
    assert stitched.map.weight.grad is None


def test_save_and_load_round_trip(tmp_path):
    X, Y = rotated_pair()
    torch.manual_seed(0)
    encoder = torch.nn.Linear(5, 8).double()
    stitched = Stitcher(
        encoder,
        RelativeProjection(metric=["cosine", "euclidean"]).fit(X[:20], Y[:20]),
        torch.nn.Linear(40, 3).double(),
        trainable_map=True,
    )
    with torch.no_grad():
        stitched.map.anchors.add_(0.01)  # a fine-tuned map: the file must hold the trained values
    path = stitched.save(tmp_path / "stitched")
    assert path.suffix == ".safetensors"
    inputs = torch.randn(10, 5, dtype=torch.float64)
    loaded = Stitcher.load(path, encoder_a=torch.nn.Linear(5, 8).double(), head_b=torch.nn.Linear(40, 3).double())
    assert not loaded.training
    assert torch.equal(loaded(inputs), stitched(inputs))
    assert loaded.map.anchors.requires_grad  # still trainable


def test_load_errors(tmp_path):
    X, Y = rotated_pair()
    aligner = Procrustes().fit(X, Y)
    path = Stitcher(None, aligner, torch.nn.Linear(8, 3).double()).save(tmp_path / "s.safetensors")
    with pytest.raises(PersistenceError, match="does not match this Stitcher's modules"):
        Stitcher.load(path, head_b=torch.nn.Linear(8, 4).double())
    with pytest.raises(PersistenceError, match="the file does not exist"):
        Stitcher.load(tmp_path / "missing.safetensors", head_b=torch.nn.Identity())
    with pytest.raises(PersistenceError, match="was not written by Stitcher.save"):
        Stitcher.load(aligner.save(tmp_path / "aligner"), head_b=torch.nn.Identity())


@pytest.mark.parametrize("bad", ["manual_seed", "int64", "load"])
def test_load_refuses_a_map_dtype_that_is_not_a_floating_dtype(tmp_path, bad):
    from safetensors.torch import safe_open, save_file

    X, Y = rotated_pair()
    path = Stitcher(None, Procrustes().fit(X, Y), torch.nn.Linear(8, 3).double()).save(tmp_path / "s")
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    assert header["map_dtype"] == "float64"
    del header["checksum"]  # a format-1 file (no checksum), so that the dtype check itself is reached
    save_file(tensors, str(path), metadata={**header, "format_version": "1", "map_dtype": bad})
    with pytest.raises(PersistenceError, match=f"map_dtype '{bad}'.*float16, bfloat16, float32, float64"):
        Stitcher.load(path, head_b=torch.nn.Linear(8, 3).double())


def test_load_accepts_each_floating_map_dtype(tmp_path):
    X, Y = rotated_pair()
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        stitched = Stitcher(None, Procrustes().fit(X, Y), torch.nn.Linear(8, 3).to(dtype))
        loaded = Stitcher.load(stitched.save(tmp_path / str(dtype)), head_b=torch.nn.Linear(8, 3).to(dtype))
        assert loaded.map.weight.dtype == dtype


def test_torch_export_of_a_stitcher():
    X, Y = rotated_pair()
    stitched = Stitcher(None, Affine().fit(X, Y), torch.nn.Linear(8, 3)).float()
    x = X.float()
    program = torch.export.export(stitched, (x[:4],), dynamic_shapes=({0: torch.export.Dim("batch", min=2)},))
    torch.testing.assert_close(program.module()(x), stitched(x))


def test_universal_space_stitcher_translates_src_to_dst():
    X, Y = rotated_pair(n=80)
    space = UniversalSpace().fit({"a": X, "b": Y})
    head = torch.nn.Linear(8, 3).double()
    stitched = Stitcher(None, space, head, src="a", dst="b")
    with torch.no_grad():
        expected = head(space.translate(X, "a", "b"))
    torch.testing.assert_close(stitched(X), expected)
    with pytest.raises(ValueError, match="needs the source and destination model names"):
        Stitcher(None, space, head, src="a")


def test_encoder_with_encode_sklearn_head_and_no_map():
    X, Y, labels = clustered(n=200)

    class NumpyEncoder:  # an Encoder-like object: raw inputs -> numpy float32 embeddings
        def encode(self, inputs, *, progress=True):
            return np.asarray(inputs, dtype=np.float32)

    head = LogisticRegression(max_iter=1000).fit(Y, labels)
    stitched = Stitcher(NumpyEncoder(), Procrustes().fit(X, Y), head)
    assert stitched.map.weight.dtype == torch.float64  # no torch head or encoder: fitted precision
    assert (stitched.predict(X) == labels).mean() > 0.9
    baseline = Stitcher(None, None, head)
    assert isinstance(baseline.map, torch.nn.Identity)
    np.testing.assert_array_equal(baseline.predict(torch.from_numpy(Y)), head.predict(Y))


def test_aligner_without_to_module_is_applied_as_an_object():
    class Shift:  # only transform: applied through it, not a module
        def transform(self, Z):
            return Z + 1.0

    stitched = Stitcher(None, Shift(), torch.nn.Identity())
    assert stitched.map is None
    torch.testing.assert_close(stitched(torch.zeros(2, 3)), torch.ones(2, 3))
    with pytest.raises(TypeError, match="has no to_module, so its map is not a module"):
        stitched.save("unused.safetensors")
    with pytest.raises(TypeError, match="aligner must be a fitted latentalign aligner"):
        Stitcher(None, object(), torch.nn.Identity())


def test_replacing_the_map_module_is_followed_by_forward():
    X, Y = rotated_pair()
    stitched = Stitcher(None, Procrustes().fit(X, Y), torch.nn.Identity())  # no head tensors: float64 map
    affine = Affine().fit(X, 2 * Y)
    stitched.map = affine.to_module(dtype=torch.float32)
    out = stitched(X)  # float64 embeddings are cast to the new map's float32
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, affine.transform(X.float()))


@pytest.mark.filterwarnings("ignore:MLPAligner reached max_epochs")  # a 5-epoch fit: only saving is tested
@pytest.mark.parametrize("trainable", [False, True])
@pytest.mark.parametrize("name", ["mlp", "kernel_ridge"])
def test_nonlinear_maps_save_and_load_inside_a_stitcher(tmp_path, name, trainable):
    from latentalign.align import make_aligner

    params = {"hidden_layer_sizes": (16,), "max_epochs": 5, "random_state": 0} if name == "mlp" else {}
    X, Y = rotated_pair()
    aligner = make_aligner(name, **params).fit(X[:40], Y[:40])
    stitched = Stitcher(None, aligner, torch.nn.Linear(8, 3).double(), trainable_map=trainable)
    path = stitched.save(tmp_path / name)
    loaded = Stitcher.load(path, head_b=torch.nn.Linear(8, 3).double())
    inputs = torch.as_tensor(X[40:50])
    assert type(loaded.map) is type(stitched.map)
    torch.testing.assert_close(loaded(inputs), stitched(inputs), rtol=0, atol=0)
    assert any(p.requires_grad for p in loaded.map.parameters()) is trainable


def test_stitcher_load_finds_what_save_wrote_without_a_suffix(tmp_path):
    X = torch.randn(40, 3)
    stitcher = Stitcher(None, Affine().fit(X, 2 * X + 1), torch.nn.Linear(3, 2))
    written = stitcher.save(tmp_path / "stitched")
    assert written.name == "stitched.safetensors"
    back = Stitcher.load(tmp_path / "stitched", head_b=torch.nn.Linear(3, 2))
    assert torch.equal(back(X), stitcher(X))
