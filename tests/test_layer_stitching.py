"""LayerStitcher, fit_layer_stitcher and train_stitching_layer on planted problems; the SmallCNN zoo's cache."""

from __future__ import annotations

import copy
import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

from latentalign import Procrustes
from latentalign.exceptions import PersistenceError
from latentalign.experiments.small_cnns import SmallCNN, cut_points
from latentalign.stitching import (
    LayerStitcher,
    Stitcher,
    cut_names,
    fit_layer_stitcher,
    layer_states,
    random_stitching_map,
    train_stitching_layer,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _cnn(width: float = 0.5, seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    model = SmallCNN(width)
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so eval mode matters
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


class Residual(nn.Module):
    """A CNN whose forward is not a sequence (a skip connection), cut with hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = h + self.body(h)
        return self.head(h.mean(dim=(2, 3)))


# ------------------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("cut", cut_points())
def test_same_model_same_cut_identity_map_reproduces_the_output_exactly(cut):
    model, x = _cnn(), _images(16)
    assert torch.equal(LayerStitcher(model, cut, model, cut)(x), model(x))


@pytest.mark.parametrize("cut", ["stem", "body", "body.0"])
def test_hooked_model_identity_stitch_is_exact(cut):
    torch.manual_seed(0)
    model, x = Residual().eval(), _images(8)
    assert torch.equal(LayerStitcher(model, cut, model, cut)(x), model(x))


def test_transformer_encoder_identity_and_fitted_stitch():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    assert cut_names(model) == ["embeddings", "encoder.layer.0", "encoder.layer.1", "encoder.layer.2"]
    ids = torch.randint(0, 50, (6, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[:3, 6:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        own = model(**inputs).last_hidden_state
        same = LayerStitcher(model, "encoder.layer.1", model, "encoder.layer.1")(inputs).last_hidden_state
        fitted = fit_layer_stitcher(model, "encoder.layer.0", model, "encoder.layer.0", inputs, "procrustes")
        out = fitted(inputs).last_hidden_state
    assert torch.equal(same, own)
    assert layer_states(model, "encoder.layer.0", inputs).shape == (6, 9, 16)
    torch.testing.assert_close(out, own, atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------ planted truth
def _planted_pair(hooked: bool):
    """A and B compute the same function; B's conv2 channels are rotated and its conv3 undoes it."""
    torch.manual_seed(1)
    layers = OrderedDict(
        conv1=nn.Conv2d(1, 5, 3, padding=1),
        relu1=nn.ReLU(),
        conv2=nn.Conv2d(5, 6, 3, padding=1),
        conv3=nn.Conv2d(6, 4, 3, padding=1),
        relu3=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(2),
        flat=nn.Flatten(),
        fc=nn.Linear(16, 3),
    )
    a = nn.Sequential(layers).double().eval()
    b = copy.deepcopy(a)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    with torch.no_grad():  # state' = Q^T state at every position; conv3 reads it through Q
        b.conv2.weight.copy_(torch.einsum("jo,j...->o...", Q, a.conv2.weight))
        b.conv2.bias.copy_(a.conv2.bias @ Q)
        b.conv3.weight.copy_(torch.einsum("oj...,jk->ok...", a.conv3.weight, Q))
    if hooked:
        a, b = nn.ModuleDict({"net": a}), nn.ModuleDict({"net": b})
        return _Wrap(a), _Wrap(b), "net.net.conv2", Q
    return a, b, "conv2", Q


class _Wrap(nn.Module):
    def __init__(self, inner: nn.ModuleDict) -> None:
        super().__init__()
        self.net = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net["net"](x)


@pytest.mark.parametrize("hooked", [False, True])
def test_zero_shot_procrustes_recovers_a_planted_channel_rotation(hooked):
    a, b, cut, Q = _planted_pair(hooked)
    x, x_test = _images(40, 0, torch.float64), _images(10, 1, torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(b(x_test), a(x_test))  # the same function
        sa, sb = layer_states(a, cut, x_test), layer_states(b, cut, x_test)
        assert (sa - sb).abs().max() > 0.1  # but different states at the cut
        unmapped = LayerStitcher(a, cut, b, cut)(x_test)
        stitched = fit_layer_stitcher(a, cut, b, cut, x, Procrustes())
        out = stitched(x_test)
    assert (unmapped - b(x_test)).abs().max() > 1e-2
    torch.testing.assert_close(out, b(x_test), atol=1e-4, rtol=0)
    torch.testing.assert_close(stitched.aligner_.rotation_, Q, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------ training
def test_training_the_stitching_layer_lowers_the_task_loss_and_leaves_the_models_alone():
    a, b = _cnn(0.5, seed=0), _cnn(0.5, seed=1)
    X = _images(128, 2)
    with torch.no_grad():  # a task B's back can solve: its own predictions (centred, so not all one class)
        logits = b(X)
        y = (logits - logits.mean(0)).argmax(-1)
    assert len(y.unique()) > 3
    stitcher = LayerStitcher(a, "block3", b, "block3", random_stitching_map(16, 16, seed=0))
    before_a = {k: v.clone() for k, v in a.state_dict().items()}
    with torch.no_grad():
        start = nn.functional.cross_entropy(stitcher(X), y).item()
    losses = train_stitching_layer(stitcher, (X, y), epochs=3, lr=0.1, seed=0, batch_size=32)
    with torch.no_grad():
        end = nn.functional.cross_entropy(stitcher(X), y).item()
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2] and end < start - 0.03, (start, losses, end)
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in before_a.items())  # weights and BN statistics
    assert all(p.requires_grad for p in a.parameters()) and not stitcher.training


def _planted_task():
    """A's state is a saturating (tanh) function of the inputs, B's a linear one: the least-squares map from
    A's state to B's is only approximate, and the task (B's own predictions) is what training can improve."""
    torch.manual_seed(3)
    a = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).eval()
    b = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    X = 2.0 * torch.randn(1200, 5, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = b(X)
        y = (logits - logits.mean(0)).argmax(-1)
    return a, b, X, y


def _loss_and_accuracy(stitcher, X, y):
    with torch.no_grad():
        out = stitcher(X)
    return nn.functional.cross_entropy(out, y).item(), (out.argmax(-1) == y).float().mean().item()


def test_trained_layer_is_at_least_as_good_as_its_least_squares_start():
    a, b, X, y = _planted_task()
    train, val, test = (X[:600], y[:600]), (X[600:800], y[600:800]), (X[800:], y[800:])
    stitcher = fit_layer_stitcher(a, "1", b, "0", X[:300], "affine", trainable_map=True)
    start = copy.deepcopy(stitcher)
    train_stitching_layer(stitcher, train, epochs=8, lr=0.05, batch_size=64, validation=val, patience=3)
    history = stitcher.train_history_
    loss_val, _ = _loss_and_accuracy(stitcher, *val)
    assert history["best_epoch"] > 0 and loss_val == pytest.approx(min(history["val_loss"]), rel=1e-5)
    assert history["val_loss"][0] == pytest.approx(_loss_and_accuracy(start, *val)[0], rel=1e-5)
    (loss_start, acc_start), (loss_end, acc_end) = _loss_and_accuracy(start, *test), _loss_and_accuracy(stitcher, *test)
    assert loss_end < loss_start - 0.05 and acc_end >= acc_start, (loss_start, loss_end, acc_start, acc_end)


def test_early_stopping_keeps_the_start_when_training_only_makes_it_worse():
    a, b, X, y = _planted_task()
    stitcher = fit_layer_stitcher(a, "1", b, "0", X[:300], "affine", trainable_map=True)
    start = {k: v.clone() for k, v in stitcher.map.state_dict().items()}
    # a learning rate far too large: every epoch ends worse on the held-out share than the start
    losses = train_stitching_layer(stitcher, (X[:600], y[:600]), epochs=6, lr=50.0, validation=0.25, patience=2)
    history = stitcher.train_history_
    assert len(losses) == 2 and history["best_epoch"] == 0 and min(history["val_loss"][1:]) > history["val_loss"][0]
    assert all(torch.equal(v, start[k]) for k, v in stitcher.map.state_dict().items())


def test_cosine_schedule_and_constant_rate_differ_and_bad_options_fail():
    a, b, X, y = _planted_task()
    maps = {}
    for schedule in ("cosine", "constant"):
        stitcher = fit_layer_stitcher(a, "1", b, "0", X[:300], "affine", trainable_map=True)
        train_stitching_layer(stitcher, (X[:300], y[:300]), epochs=2, lr=0.05, lr_schedule=schedule)
        maps[schedule] = stitcher.map.state_dict()
    assert not all(torch.equal(maps["cosine"][k], maps["constant"][k]) for k in maps["cosine"])
    with pytest.raises(ValueError, match=r"lr_schedule must be one of \('cosine', 'constant'\), got 'step'"):
        train_stitching_layer(stitcher, (X, y), lr_schedule="step")
    with pytest.raises(ValueError, match=r"patience must be a positive int.*got 0"):
        train_stitching_layer(stitcher, (X, y), validation=(X, y), patience=0)
    with pytest.raises(ValueError, match=r"strictly between 0 and 1, got 1\.5"):
        train_stitching_layer(stitcher, (X, y), validation=1.5)
    with pytest.raises(TypeError, match=r"needs data as a pair of \(X, y\) tensors"):
        train_stitching_layer(stitcher, [(X, y)], validation=0.2)


def test_training_needs_a_trainable_map():
    model = _cnn()
    stitcher = fit_layer_stitcher(model, "block3", model, "block3", _images(8), "procrustes")
    with pytest.raises(ValueError, match=r"no trainable parameters.*trainable_map=True"):
        train_stitching_layer(stitcher, (_images(8), torch.zeros(8, dtype=torch.long)))


# ------------------------------------------------------------------------------------------ errors
def test_bad_cut_names_fail_with_the_list_of_valid_ones():
    model = _cnn()
    message = "cut_a='block9' is not a cut point of this SmallCNN; valid cut names: 'block1', 'block2', 'block3', "
    with pytest.raises(ValueError, match=re.escape(message)):
        LayerStitcher(model, "block9", model, "block1")
    with pytest.raises(ValueError, match=r"cut_b='nope'.*'stem', 'body', 'body\.0', 'body\.1', 'head'"):
        LayerStitcher(model, "block1", Residual(), "nope")


def test_feature_maps_of_different_sizes_need_resize():
    a, b = _cnn(0.5, 0), _cnn(1, 1)
    x = _images(12)
    with pytest.raises(ValueError, match=r"are 14x14 but model B's at cut_b='block3' are 7x7.*resize=True"):
        fit_layer_stitcher(a, "block1", b, "block3", x)
    stitched = fit_layer_stitcher(a, "block1", b, "block3", x, "affine", resize=True)
    assert stitched.size == (7, 7) and stitched(x).shape == (12, 10)


def test_a_module_reused_in_forward_is_refused_as_a_cut():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.act = nn.Linear(3, 3), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.lin(self.act(x)))

    model = Shared()
    with pytest.raises(RuntimeError, match="ran more than once"):
        LayerStitcher(model, "act", model, "act")(torch.randn(2, 3))


# ------------------------------------------------------------------------------------------ module behaviour
def test_state_dict_to_and_save_load_round_trip(tmp_path):
    a, b = _cnn(0.5, 0), _cnn(0.5, 1)
    x = _images(20)
    stitched = fit_layer_stitcher(a, "block2", b, "block2", x, "affine")
    fresh = LayerStitcher(_cnn(0.5, 5), "block2", _cnn(0.5, 6), "block2", random_stitching_map(8, 8))
    fresh.load_state_dict(stitched.state_dict())
    # The weights must come back bit for bit; the outputs only to float rounding, since two copies of the
    # same weights at other addresses may take other BLAS paths (seen on an Intel Xeon: 4e-8 apart).
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in stitched.state_dict().items())
    torch.testing.assert_close(fresh(x), stitched(x), rtol=1e-6, atol=1e-6)
    as64 = stitched.to(torch.float64)
    out64 = as64(x.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), fresh(x), atol=1e-4, rtol=1e-4)
    stitched.to(torch.float32)
    path = stitched.save(tmp_path / "stitch")
    back = LayerStitcher.load(path, model_a=_cnn(0.5, 7), model_b=_cnn(0.5, 8))
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in stitched.state_dict().items())
    torch.testing.assert_close(back(x), stitched(x), rtol=1e-6, atol=1e-6)
    assert (back.cut_a, back.cut_b) == ("block2", "block2")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(PersistenceError, match="integrity check"):
        LayerStitcher.load(path, model_a=_cnn(0.5), model_b=_cnn(0.5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_moves_the_models_and_the_map_to_the_gpu():
    a, b = _cnn(0.5, 0), _cnn(0.5, 1)
    x = _images(16)
    stitched = fit_layer_stitcher(a, "block3", b, "block3", x, "procrustes")
    expected = stitched(x)
    on_gpu = stitched.to("cuda")
    assert all(t.is_cuda for t in on_gpu.state_dict().values())
    torch.testing.assert_close(on_gpu(x.cuda()).cpu(), expected, atol=1e-4, rtol=1e-4)


def test_the_package_keeps_the_stitcher_names():
    import latentalign.stitching as stitching

    assert stitching.Stitcher is Stitcher and {"apply_head", "map_embeddings", "map_module"} <= set(stitching.__all__)


# ------------------------------------------------------------------------------------------ small CNN zoo
def test_small_cnn_training_is_seeded_and_cached(tmp_path, monkeypatch, caplog):
    from latentalign._paths import data_dir
    from latentalign.experiments.small_cnns import cache_path, train_small_cnn

    monkeypatch.setenv("LATENTALIGN_DATA_DIR", str(data_dir()))
    monkeypatch.setenv("LATENTALIGN_HOME", str(tmp_path))
    first = train_small_cnn(0.5, 3, n_train=256, epochs=1)
    path = cache_path(0.5, 3, 256, 1)
    assert path.is_file() and str(path).startswith(str(tmp_path))
    again = train_small_cnn(0.5, 3, n_train=256, epochs=1, cache=False)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items())
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with caplog.at_level("WARNING"):
        reread = train_small_cnn(0.5, 3, n_train=256, epochs=1)
    assert "integrity check" in caplog.text
    assert all(torch.equal(v, reread.state_dict()[k]) for k, v in first.state_dict().items())


# ------------------------------------------------------------------------------------------ experiment page
@pytest.mark.slow
def test_layer_stitching_reduced_run_writes_the_grid(tmp_path, monkeypatch):
    from latentalign._paths import data_dir
    from latentalign.experiments.runner import run_experiment

    monkeypatch.setenv("LATENTALIGN_DATA_DIR", str(data_dir()))
    monkeypatch.setenv("LATENTALIGN_HOME", str(tmp_path / "home"))
    result, page = run_experiment("layer_stitching", reduced=True, out_dir=tmp_path)
    assert [(r["cut_a"], r["cut_b"]) for r in result.rows] == [
        ("block2", "block2"),
        ("block2", "block3"),
        ("block3", "block2"),
        ("block3", "block3"),
    ]
    for row in result.rows:
        assert row["A_alone"] > 0.4 and row["B_alone"] > 0.4  # trained: chance is 0.1
        assert all(0.0 <= row[k] <= 1.0 for k in ("procrustes", "affine", "trained"))
    assert len(result.checks) == 2 and "(reduced run)" in page.read_text()
    assert (tmp_path / "layer_stitching.png").is_file() and (tmp_path / "layer_stitching.json").is_file()
