"""UniversalSpace: generalised Procrustes analysis on planted rotations, padding, PCA, add, cycles, persistence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import latentalign
from latentalign.align.procrustes import Procrustes
from latentalign.align.universal import UniversalSpace
from latentalign.exceptions import ConvergenceWarning, NotFittedError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    return np.linalg.qr(rng.normal(size=(d, d)))[0]


def copies(n: int = 200, d: int = 16, k: int = 4, noise: float = 1e-5, seed: int = 0):
    """k rotated, shifted, noisy copies of one anchor set."""
    rng = np.random.default_rng(seed)
    base = rng.exponential(size=(n, d)) @ rng.normal(size=(d, d))
    return base, {
        f"m{i}": base @ rotation(d, rng) + rng.normal(size=d) + noise * rng.normal(size=(n, d)) for i in range(k)
    }


def test_gpa_puts_four_rotated_noisy_copies_in_one_space():
    _, models = copies()
    space = UniversalSpace().fit(models)
    Z = {name: space.to_universal(X, name) for name, X in models.items()}
    scale = np.linalg.norm(Z["m0"] - Z["m0"].mean(0)) / np.sqrt(len(Z["m0"]))
    for a in models:
        for b in models:
            assert np.abs(Z[a] - Z[b]).max() / scale < 1e-3
    assert space.converged_ and space.history_[-1] <= space.tol
    np.testing.assert_allclose(space.mean_shape_.numpy(), np.mean(list(Z.values()), axis=0), atol=1e-4)


def test_translate_recovers_the_other_model_and_inverts_exactly():
    _, models = copies(noise=0.0)
    space = UniversalSpace().fit(models)
    np.testing.assert_allclose(space.translate(models["m1"], "m1", "m3"), models["m3"], atol=1e-8)
    Z = space.to_universal(models["m2"], "m2")
    np.testing.assert_allclose(space.from_universal(Z, "m2"), models["m2"], atol=1e-10)


def test_different_dimensions_are_zero_padded():
    rng = np.random.default_rng(1)
    base = rng.exponential(size=(150, 10)) @ rng.normal(size=(10, 10))
    models = {f"d{d}": base @ np.linalg.qr(rng.normal(size=(d, 10)))[0].T for d in (10, 14, 20)}
    space = UniversalSpace().fit(models)
    assert space.dim_ == 20 and space.weights_["d14"].shape == (14, 20)
    for src in models:
        for dst in models:
            np.testing.assert_allclose(space.translate(models[src], src, dst), models[dst], atol=1e-8)


def test_dim_below_the_largest_keeps_the_main_directions():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 24))  # rank 5 in 24-d
    models = {name: base @ rotation(24, rng) for name in "abc"}
    space = UniversalSpace(dim=5).fit(models)
    assert space.to_universal(models["a"], "a").shape == (200, 5)
    np.testing.assert_allclose(space.translate(models["a"], "a", "c"), models["c"], atol=1e-8)
    wide = UniversalSpace(dim=30).fit(models)
    assert wide.to_universal(models["b"], "b").shape == (200, 30)


def test_scale_option_recovers_scaled_copies():
    rng = np.random.default_rng(3)
    base = rng.exponential(size=(100, 6))
    models = {"a": base, "b": 3.0 * base @ rotation(6, rng), "c": 0.5 * base @ rotation(6, rng)}
    space = UniversalSpace(scale=True).fit(models)
    assert space.scales_["b"] / space.scales_["a"] == pytest.approx(1 / 3, rel=1e-8)
    np.testing.assert_allclose(space.translate(models["b"], "b", "c"), models["c"], atol=1e-8)


def test_add_fits_one_new_model_without_refitting_the_others():
    _, models = copies(noise=0.0)
    first = dict(list(models.items())[:3])
    space = UniversalSpace().fit(first)
    before = {k: v.clone() for k, v in space.weights_.items()}
    mean_before = space.mean_shape_.clone()
    space.add("m3", models["m3"])
    assert space.names_ == ["m0", "m1", "m2", "m3"]
    for name, W in before.items():
        assert torch.equal(space.weights_[name], W)
    assert torch.equal(space.mean_shape_, mean_before)
    np.testing.assert_allclose(space.translate(models["m3"], "m3", "m0"), models["m0"], atol=1e-8)
    # and a new model of another dimension, through a semi-orthogonal map
    rng = np.random.default_rng(4)
    wide = models["m0"] @ np.linalg.qr(rng.normal(size=(20, 16)))[0].T
    space.add("wide", wide)
    assert space.weights_["wide"].shape == (20, 16)
    np.testing.assert_allclose(space.translate(wide, "wide", "m1"), models["m1"], atol=1e-8)


def test_cycle_consistency_is_exact_for_gpa_but_not_for_chained_pairwise_fits():
    _, models = copies(noise=0.05, seed=5)
    space = UniversalSpace().fit(models)
    X = models["m0"]
    assert space.cycle_consistency(X, ["m0", "m1", "m2"]) == pytest.approx(1.0, abs=1e-12)
    # pairwise Procrustes maps m0 -> m1 -> m2 -> m0 do not compose to the identity under noise
    ab = Procrustes().fit(models["m0"], models["m1"])
    bc = Procrustes().fit(models["m1"], models["m2"])
    ca = Procrustes().fit(models["m2"], models["m0"])
    back = ca.transform(bc.transform(ab.transform(X)))
    pairwise = 1 - ((back - X) ** 2).sum() / ((X - X.mean(0)) ** 2).sum()
    assert pairwise < 1 - 1e-6
    # through a smaller model the cycle loses what that model cannot hold
    rng = np.random.default_rng(6)
    narrow = models["m0"] @ rng.normal(size=(16, 4))
    space.add("narrow", narrow)
    assert space.cycle_consistency(X, ["m0", "narrow"]) < 0.99


def test_torch_inputs_keep_dtype_and_save_load_round_trip(tmp_path):
    _, models = copies()
    tmodels = {k: torch.from_numpy(v).float() for k, v in models.items()}
    space = UniversalSpace(preprocess=["center"], dim=12).fit(tmodels)
    Z = space.to_universal(tmodels["m1"], "m1")
    assert isinstance(Z, torch.Tensor) and Z.dtype == torch.float32 and Z.shape == (200, 12)
    path = space.save(tmp_path / "universal")
    for loaded in (UniversalSpace.load(path), latentalign.load(path)):
        assert loaded.names_ == space.names_
        torch.testing.assert_close(
            loaded.translate(tmodels["m0"], "m0", "m2"), space.translate(tmodels["m0"], "m0", "m2")
        )
    assert b"\x80\x04\x95" not in path.read_bytes()


def test_convergence_warning_when_max_iter_is_too_small():
    _, models = copies(noise=0.1)
    with pytest.warns(ConvergenceWarning, match=r"UniversalSpace \(GPA\) stopped after max_iter=1 rounds"):
        space = UniversalSpace(max_iter=1, tol=0.0).fit(models)
    assert not space.converged_ and space.n_iter_ == 1


def test_gpa_converges_without_warning():
    _, models = copies(noise=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        space = UniversalSpace(tol=1e-9).fit(models)
    assert space.converged_ and space.history_[-1] <= 1e-9


def test_errors():
    _, models = copies(n=20, d=3)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        UniversalSpace().to_universal(models["m0"], "m0")
    with pytest.raises(TypeError, match=r"embeddings must be a dict mapping model names to arrays, got list"):
        UniversalSpace().fit([models["m0"], models["m1"]])
    with pytest.raises(ValueError, match=r"embeddings has 1 model\(s\); a universal space needs at least 2"):
        UniversalSpace().fit({"m0": models["m0"]})
    with pytest.raises(TypeError, match=r"Model names must be strings, got \[1\]"):
        UniversalSpace().fit({1: models["m0"], "b": models["m1"]})
    with pytest.raises(ValueError, match=r"embeddings\['m1'\] has 19 rows, but the anchors have 20"):
        UniversalSpace().fit({"m0": models["m0"], "m1": models["m1"][:19]})
    with pytest.raises(ValueError, match=r"method='pca' is not supported"):
        UniversalSpace(method="pca").fit(models)
    with pytest.raises(TypeError, match="mix numpy arrays and torch tensors"):
        UniversalSpace().fit({"a": models["m0"], "b": torch.from_numpy(models["m1"])})
    bad = models["m1"].copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"embeddings\['m1'\] contains NaN or infinity"):
        UniversalSpace().fit({"m0": models["m0"], "m1": bad})
    space = UniversalSpace().fit(models)
    with pytest.raises(ValueError, match=r"Unknown model 'zz'; the universal space holds \['m0', 'm1', 'm2', 'm3'\]"):
        space.to_universal(models["m0"], "zz")
    with pytest.raises(ValueError, match=r"X has 4 features, but UniversalSpace \(model 'm0'\) is expecting 3"):
        space.to_universal(np.ones((2, 4)), "m0")
    with pytest.raises(ValueError, match=r"Z has 4 features, but UniversalSpace \(universal side\) is expecting 3"):
        space.from_universal(np.ones((2, 4)), "m0")
    with pytest.raises(ValueError, match=r"A model named 'm1' is already in the universal space"):
        space.add("m1", models["m1"])
    with pytest.raises(ValueError, match=r"embeddings\['new'\] has 5 rows, but the anchors have 20"):
        space.add("new", models["m1"][:5])
    with pytest.raises(ValueError, match=r"cycle must name at least 2 models"):
        space.cycle_consistency(models["m0"], ["m0"])
    with pytest.raises(ValueError, match=r"X has zero variance"):
        space.cycle_consistency(np.ones((3, 3)), ["m0", "m1"])
