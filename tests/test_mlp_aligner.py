"""MLPAligner: planted nonlinear and linear maps, early stopping, seeding, module, parameter errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentalign import Affine
from latentalign.align.mlp import MIN_STEPS, MLPAligner, MLPMap
from latentalign.exceptions import ConvergenceWarning

SMALL = {"hidden_layer_sizes": (32,), "lr": 1e-2, "batch_size": 64, "random_state": 0}


def curved(n=400, d=3, seed=0, noise=0.01):
    """Y = tanh(X A) B + noise: a smooth map that no affine map captures."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = np.tanh(X @ (1.5 * rng.standard_normal((d, d)))) @ rng.standard_normal((d, 4))
    return X.astype(np.float32), (Y + noise * rng.standard_normal(Y.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    X, Y = curved()
    return X, Y, MLPAligner(**SMALL).fit(X[:300], Y[:300])


def test_planted_curved_map_beats_affine_clearly(fitted):
    X, Y, mlp = fitted
    affine = Affine().fit(X[:300], Y[:300])
    assert mlp.score(X[300:], Y[300:]) > 0.97
    assert mlp.score(X[300:], Y[300:]) > affine.score(X[300:], Y[300:]) + 0.1


def test_planted_linear_map_matches_affine():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 4))
    Y = X @ rng.standard_normal((4, 4)) + 1.0 + 0.05 * rng.standard_normal((300, 4))
    mlp = MLPAligner(**SMALL).fit(X[:200], Y[:200])
    affine = Affine().fit(X[:200], Y[:200])
    assert mlp.score(X[200:], Y[200:]) == pytest.approx(affine.score(X[200:], Y[200:]), abs=0.005)


def test_early_stopping_stops_and_keeps_the_best_epoch(fitted):
    _, _, mlp = fitted
    k, tol = mlp.n_iter_no_change, mlp.tol
    curve = mlp.validation_loss_curve_
    assert k < mlp.n_iter_ < mlp.max_epochs
    assert len(curve) == len(mlp.loss_curve_) == mlp.n_iter_
    # the stopping rule: none of the last n_iter_no_change epochs improved on the best before it by tol
    assert all(curve[i] > min(curve[:i]) - tol for i in range(len(curve) - k, len(curve)))
    assert mlp.n_iter_ * -(-270 // mlp.batch_size) >= MIN_STEPS  # 270 training rows, 30 held out

    # the weights kept are those of the best held-out epoch: their loss on the held-out rows is the minimum
    seed = np.random.RandomState(0).randint(np.iinfo(np.int32).max)  # how random_state=0 seeds the fit
    held_out = torch.randperm(300, generator=torch.Generator().manual_seed(int(seed)))[:30].numpy()
    X, Y = curved()
    residual = (mlp.transform(X[held_out]) - Y[held_out]) / mlp.scale_y_.numpy()
    assert float(np.mean(residual**2)) == pytest.approx(min(curve), rel=1e-4)


def test_seeded_fits_are_identical_and_seeds_differ():
    X, Y = curved(n=120)
    params = {**SMALL, "max_epochs": 5, "early_stopping": False}
    with pytest.warns(ConvergenceWarning):
        a = MLPAligner(**params).fit(X, Y).transform(X)
        b = MLPAligner(**params).fit(X, Y).transform(X)
        c = MLPAligner(**{**params, "random_state": 1}).fit(X, Y).transform(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_max_epochs_reached_warns_with_the_fix():
    X, Y = curved(n=60)
    with pytest.warns(ConvergenceWarning, match=r"reached max_epochs=2 while the held-out loss .* Raise max_epochs"):
        aligner = MLPAligner(**SMALL, max_epochs=2).fit(X, Y)
    assert aligner.n_iter_ == 2


def test_cosine_loss_learns_directions(fitted):
    X, Y, _ = fitted
    mlp = MLPAligner(**SMALL, loss="cosine").fit(X[:300], Y[:300])
    P, T = mlp.transform(X[300:]), Y[300:]
    cos = (P * T).sum(1) / np.linalg.norm(P, axis=1) / np.linalg.norm(T, axis=1)
    assert np.median(cos) > 0.97


def test_module_equals_transform_and_is_trainable(fitted):
    X, _, mlp = fitted
    module = mlp.to_module(dtype=torch.float64)
    assert isinstance(module, MLPMap)
    Xt = torch.from_numpy(X[:50]).double()
    np.testing.assert_allclose(module(Xt).numpy(), mlp.transform(X[:50].astype(np.float64)), atol=1e-10)
    trainable = mlp.to_module(trainable=True)
    trainable(torch.from_numpy(X[:50])).sum().backward()
    assert trainable.weight0.grad is not None and trainable.skip.grad is not None


@pytest.mark.filterwarnings("ignore::latentalign.exceptions.ConvergenceWarning")
def test_plain_deep_network_saves_and_loads(tmp_path):
    X, Y = curved(n=120)
    params = {**SMALL, "hidden_layer_sizes": (16, 8), "linear_skip": False, "activation": "tanh", "max_epochs": 30}
    aligner = MLPAligner(**params).fit(X, Y)
    assert [tuple(w.shape) for w in aligner.coefs_] == [(3, 16), (16, 8), (8, 4)]
    loaded = MLPAligner.load(aligner.save(tmp_path / "mlp"))
    np.testing.assert_array_equal(loaded.transform(X), aligner.transform(X))


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"hidden_layer_sizes": 256}, TypeError, r"hidden_layer_sizes must be a tuple of positive integers \(e.g."),
        ({"hidden_layer_sizes": (0,)}, ValueError, r"hidden_layer_sizes\[i\] must be >= 1"),
        ({"activation": "sigmoid"}, ValueError, "activation='sigmoid' is not supported; choose one of"),
        ({"loss": "l1"}, ValueError, "loss='l1' is not supported"),
        ({"validation_fraction": 1.0}, ValueError, "validation_fraction must be < 1, got 1.0; keep some pairs"),
        ({"lr": 0.0}, ValueError, "lr must be > 0.0"),
    ],
)
def test_invalid_parameters_name_the_fix(params, error, match):
    X, Y = curved(n=20)
    with pytest.raises(error, match=match):
        MLPAligner(**params).fit(X, Y)
