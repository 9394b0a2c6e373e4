"""Checks every registered aligner must pass (scikit-learn's test_common, for latent-space maps).

Each aligner in ``list_aligners()`` is built with the parameters in ``PARAMS`` and fitted on a planted
problem: ``Y = X Q + noise`` with a random orthogonal ``Q``. A new aligner is covered as soon as it is
registered; give it an entry in ``PARAMS`` / ``ROUND_TRIP`` only if its defaults do not fit these checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import latentalign
from latentalign import NotFittedError
from latentalign.align import list_aligners, make_aligner

ALIGNERS = list_aligners()

# Constructor parameters used by the shared checks (defaults otherwise).
PARAMS: dict[str, dict] = {
    "ot": {"method": "emd"},
    "unsupervised": {"n_init": 1},
    "mlp": {"random_state": 0, "hidden_layer_sizes": (32,), "max_epochs": 60},
    "kernel_ridge": {"alpha": 1e-3},
}
# What inverse_transform(transform(X)) returns: "source" (X itself), "target" (Y's space), or None.
# Aligners that accept different row counts for X and Y (they match unpaired rows themselves).
UNPAIRED_OK = {"ot", "unsupervised"}
ROUND_TRIP = {
    "procrustes": "source",
    "affine": "source",
    "relative": "target",
    "ot": "source",
    "lfm": "source",
    "unsupervised": "source",
    "mlp": None,
    "kernel_ridge": None,
}

N, D = 60, 8


def planted(seed: int = 0, n: int = N, d: int = D, noise: float = 1e-3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + 0.5
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    Y = X @ Q + noise * rng.standard_normal((n, d)) + 1.0
    return X.astype(dtype), Y.astype(dtype)


def build(name: str):
    return make_aligner(name, **PARAMS.get(name, {}))


@pytest.fixture(params=ALIGNERS)
def name(request) -> str:
    return request.param


def test_registry_lists_the_core_aligners():
    assert {"procrustes", "affine", "relative", "ot"} <= set(ALIGNERS)


def test_unknown_aligner_lists_available():
    with pytest.raises(ValueError, match=r"Unknown aligner 'nope'; available aligners are \["):
        make_aligner("nope")


def test_invalid_parameter_names_the_valid_ones(name):
    with pytest.raises(TypeError, match="valid parameters are"):
        make_aligner(name, not_a_parameter=1)


def test_transform_before_fit_raises(name):
    X, _ = planted()
    with pytest.raises(NotFittedError, match="not fitted yet"):
        build(name).transform(X)


def test_fit_returns_self_and_sets_dimensions(name):
    X, Y = planted()
    aligner = build(name)
    assert aligner.fit(X, Y) is aligner
    assert aligner.n_features_in_ == D
    Z = aligner.transform(X)
    assert Z.shape == (N, aligner.n_features_out_)


def test_refit_is_idempotent_and_clone_is_unfitted(name):
    X, Y = planted()
    aligner = build(name).fit(X, Y)
    first = aligner.transform(X)
    second = aligner.fit(X, Y).transform(X)
    np.testing.assert_allclose(first, second, atol=1e-8)
    twin = aligner.clone()
    assert not twin.is_fitted
    np.testing.assert_allclose(twin.fit(X, Y).transform(X), first, atol=1e-8)
    assert repr(twin).startswith(type(aligner).__name__ + "(")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_output_keeps_backend_dtype_and_device(name, backend, dtype):
    X, Y = planted()
    X, Y = X.astype(dtype), Y.astype(dtype)
    if backend == "torch":
        X, Y = torch.from_numpy(X), torch.from_numpy(Y)
    aligner = build(name).fit(X, Y)
    Z = aligner.transform(X)
    assert type(Z) is type(X)
    assert str(Z.dtype).endswith(dtype)
    if backend == "torch":
        assert Z.device == X.device
    if aligner.invertible:
        back = aligner.inverse_transform(Z)
        assert type(back) is type(X) and str(back.dtype).endswith(dtype)


def test_numpy_and_torch_agree(name):
    X, Y = planted()
    from_numpy = build(name).fit(X, Y).transform(X)
    from_torch = build(name).fit(torch.from_numpy(X), torch.from_numpy(Y)).transform(torch.from_numpy(X))
    np.testing.assert_allclose(from_torch.numpy(), from_numpy, atol=1e-6)


def test_half_precision_torch_input_is_returned_in_half(name):
    X, Y = planted()
    aligner = build(name).fit(X, Y)
    Z = aligner.transform(torch.from_numpy(X).to(torch.bfloat16))
    assert Z.dtype == torch.bfloat16


def test_inverse_round_trip(name):
    X, Y = planted(noise=0.0)
    aligner = build(name).fit(X, Y)
    kind = ROUND_TRIP[name]
    if not aligner.invertible:  # a learned nonlinear map has no inverse: the error names the fix
        with pytest.raises(NotImplementedError, match=r"is not invertible; map the other way by fitting"):
            aligner.inverse_transform(aligner.transform(X))
        return
    back = aligner.inverse_transform(aligner.transform(X))
    if kind == "source":
        np.testing.assert_allclose(back, X, atol=1e-6)
    elif kind == "target":
        # Relative coordinates keep directions, not norms: compare directions about the target centre.
        centre = np.asarray(getattr(aligner, "target_mean_", np.zeros(Y.shape[1])), dtype=np.float64)
        b, y = back - centre, Y - centre
        cos = (b * y).sum(1) / np.linalg.norm(b, axis=1) / np.linalg.norm(y, axis=1)
        assert cos.min() > 0.999


def test_save_load_round_trip(name, tmp_path):
    X, Y = planted()
    aligner = build(name).fit(X, Y)
    path = aligner.save(tmp_path / "map")
    assert path.suffix == ".safetensors"
    for loaded in (type(aligner).load(path), latentalign.load(path)):
        assert type(loaded) is type(aligner)
        assert loaded.get_params().keys() == aligner.get_params().keys()
        np.testing.assert_allclose(loaded.transform(X), aligner.transform(X), atol=1e-10)


def test_save_file_holds_no_pickle(name, tmp_path):
    X, Y = planted()
    path = build(name).fit(X, Y).save(tmp_path / "map.safetensors")
    raw = path.read_bytes()
    assert b"\x80\x04\x95" not in raw and b"\x80\x05\x95" not in raw  # pickle protocol 4/5 frame headers


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("where", ["X", "Y"])
def test_non_finite_fit_input_is_rejected(name, bad, where):
    X, Y = planted()
    (X if where == "X" else Y)[3, 2] = bad
    with pytest.raises(ValueError, match=rf"{where} contains NaN or infinity \(first at row 3, column 2"):
        build(name).fit(X, Y)


def test_non_finite_transform_input_is_rejected(name):
    X, Y = planted()
    aligner = build(name).fit(X, Y)
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        aligner.transform(X)


@pytest.mark.parametrize("paired_name", [a for a in ALIGNERS if a not in UNPAIRED_OK])
def test_mismatched_rows_are_rejected(paired_name):
    X, Y = planted()
    with pytest.raises(ValueError, match="must be paired row by row"):
        build(paired_name).fit(X, Y[:-5])


def test_wrong_feature_count_at_transform(name):
    X, Y = planted()
    aligner = build(name).fit(X, Y)
    with pytest.raises(ValueError, match=rf"X has {D + 1} features, but {type(aligner).__name__} is expecting {D}"):
        aligner.transform(np.ones((4, D + 1)))


def test_wrong_shape_is_rejected(name):
    X, Y = planted()
    with pytest.raises(ValueError, match="must be a 2-D array"):
        build(name).fit(X[0], Y[0])


def test_mixed_backends_are_rejected(name):
    X, Y = planted()
    with pytest.raises(TypeError, match="mix numpy arrays and torch tensors"):
        build(name).fit(X, torch.from_numpy(Y))


def test_too_few_anchors_is_rejected(name):
    X, Y = planted()
    with pytest.raises(ValueError, match="(?i)(at least|too few|anchor)"):
        build(name).fit(X[:1], Y[:1])


@pytest.mark.parametrize("streaming_name", [a for a in ALIGNERS if build(a).supports_partial_fit])
def test_partial_fit_matches_fit(streaming_name):
    aligner, streamed = build(streaming_name), build(streaming_name)
    X, Y = planted(n=300)
    for start in range(0, 300, 70):
        streamed.partial_fit(X[start : start + 70], Y[start : start + 70])
    np.testing.assert_allclose(streamed.transform(X), aligner.fit(X, Y).transform(X), atol=1e-8)


def test_score_is_higher_for_the_true_pairing(name):
    X, Y = planted(noise=0.05)
    aligner = build(name).fit(X, Y)
    shuffled = np.random.default_rng(1).permutation(N)
    assert aligner.score(X, Y) > aligner.score(X, Y[shuffled])
