"""Aligner.to_module: the fitted maps as torch modules (equal to transform, differentiable, exportable)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from latentalign import (
    Affine,
    OTAligner,
    Procrustes,
    RelativeProjection,
    UniversalSpace,
)
from latentalign.align.modules import (
    LinearMap,
    RelativeMap,
    finalize_module,
    module_config,
    module_from_config,
    preprocessor_module,
)
from latentalign.align.refine import SelfLearning
from latentalign.exceptions import NotFittedError
from latentalign.preprocessing import (
    Center,
    Chain,
    L2Normalize,
    Preprocessor,
    StandardScale,
    ZeroPad,
)

F64 = torch.float64


def planted(n=200, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=F64) * torch.linspace(0.5, 2.0, d, dtype=F64) + 0.3
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    Y = 1.5 * X @ Q + 0.05 * torch.randn(n, d, generator=g, dtype=F64) - 1.0
    return X, Y


def identity_pairs(m):
    return np.stack([np.arange(m), np.arange(m)], axis=1)


ALIGNERS = {
    "procrustes": lambda X, Y: Procrustes().fit(X, Y),
    "procrustes-scale-standardize": lambda X, Y: Procrustes(scale=True, standardize=True).fit(X, Y),
    "procrustes-wider": lambda X, Y: Procrustes().fit(X[:, :4], Y),
    "affine": lambda X, Y: Affine().fit(X, Y),
    "affine-ridge-no-intercept": lambda X, Y: Affine(alpha=1.0, fit_intercept=False).fit(X, Y),
    "relative-cosine": lambda X, Y: RelativeProjection().fit(X[:40], Y[:40]),
    "relative-angular-uncentred": lambda X, Y: RelativeProjection(metric="angular", center=False).fit(X[:40], Y[:40]),
    "relative-euclidean": lambda X, Y: RelativeProjection(metric="euclidean").fit(X[:40], Y[:40]),
    "relative-product-concat": lambda X, Y: RelativeProjection(metric=["cosine", "euclidean", "l1", "linf"]).fit(
        X[:40], Y[:40]
    ),
    "relative-product-norm-topk": lambda X, Y: RelativeProjection(
        metric=["cosine", "euclidean"], aggregate="concat_norm", top_k=10, power=2.0
    ).fit(X[:40], Y[:40]),
    "relative-sum-power": lambda X, Y: RelativeProjection(metric=["angular", "l1"], aggregate="sum", power=0.5).fit(
        X[:40], Y[:40]
    ),
    "ot-emd-preprocessed": lambda X, Y: OTAligner(method="emd", preprocess=["center", "l2"]).fit(
        X[:60], Y[:60], pairs=identity_pairs(10)
    ),
    "ot-affine": lambda X, Y: OTAligner(method="emd", refine="affine").fit(X[:60], Y[:60], pairs=identity_pairs(60)),
    "self-learning-standardized": lambda X, Y: SelfLearning(preprocess="standardize", n_iter=2).fit(
        X, Y, pairs=identity_pairs(20)
    ),
}
INVERTIBLE = [
    "procrustes",
    "procrustes-scale-standardize",
    "affine",
    "ot-emd-preprocessed",
    "self-learning-standardized",
]


@pytest.fixture(scope="module")
def fitted():
    X, Y = planted()
    # The short OT/self-learning fits may warn that they did not converge; that is not what is tested.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aligners = {name: build(X, Y) for name, build in ALIGNERS.items()}
    return aligners, X, Y


def _input(aligner, X):
    return X[:, : aligner.n_features_in_]


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", list(ALIGNERS))
def test_module_equals_transform(fitted, name, dtype):
    aligners, X, _ = fitted
    aligner = aligners[name]
    x = _input(aligner, X).to(dtype)
    module = aligner.to_module(dtype=dtype)
    assert all(t.dtype == dtype for t in module.state_dict().values())
    out = module(x)
    assert out.dtype == dtype and out.shape == (x.shape[0], aligner.n_features_out_)
    tol = {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 1e-10}
    torch.testing.assert_close(out, aligner.transform(x), **tol)


def test_default_dtype_is_torch_default(fitted):
    aligners, _, _ = fitted
    module = aligners["affine"].to_module()
    assert module.weight.dtype == torch.get_default_dtype()
    assert list(module.parameters()) == []  # buffers unless trainable


@pytest.mark.parametrize("name", INVERTIBLE)
def test_inverse_module_equals_inverse_transform(fitted, name):
    aligners, X, _ = fitted
    aligner = aligners[name]
    z = aligner.transform(X)
    module = aligner.to_module(inverse=True, dtype=F64)
    torch.testing.assert_close(module(z), aligner.inverse_transform(z), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize(
    "name", ["relative-cosine", "relative-angular-uncentred", "relative-euclidean", "relative-product-concat"]
)
def test_relative_inverse_module_equals_inverse_transform(fitted, name, dtype):
    aligners, X, _ = fitted
    aligner = aligners[name]
    z = aligner.transform(X.to(dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 40 anchors in 6 dimensions: no warning expected, but not tested here
        expected = aligner.inverse_transform(z)
    module = aligner.to_module(inverse=True, dtype=dtype)
    tol = {"atol": 1e-4, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-9, "rtol": 1e-9}
    torch.testing.assert_close(module(z), expected, **tol)
    rebuilt = module_from_config(module_config(module)).to(dtype)
    rebuilt.load_state_dict(module.state_dict())
    assert torch.equal(rebuilt(z), module(z))


def test_relative_inverse_module_not_available_where_inverse_transform_is_not(fitted):
    aligners, _, _ = fitted
    with pytest.raises(NotImplementedError, match="sparsified with top_k=10"):
        aligners["relative-product-norm-topk"].to_module(inverse=True)


@pytest.mark.parametrize("aligner", [Procrustes(), Affine(), RelativeProjection(), OTAligner(), SelfLearning()])
def test_unfitted_aligner_raises(aligner):
    with pytest.raises(NotFittedError, match="is not fitted yet"):
        aligner.to_module()


@pytest.mark.parametrize("name", ["procrustes", "relative-product-norm-topk", "ot-emd-preprocessed"])
def test_gradients_reach_input_and_trainable_map(fitted, name):
    aligners, X, _ = fitted
    aligner = aligners[name]
    x = _input(aligner, X)[:16].clone().requires_grad_(True)
    frozen = aligner.to_module(dtype=F64)
    frozen(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert list(frozen.parameters()) == []

    trainable = aligner.to_module(trainable=True, dtype=F64)
    params = list(trainable.parameters())
    assert params and all(p.requires_grad for p in params)
    trainable(x.detach()).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    # Same keys either way: a trainable module loads a frozen one's state and vice versa.
    assert trainable.state_dict().keys() == frozen.state_dict().keys()


def test_to_moves_and_casts_the_map(fitted):
    aligners, X, _ = fitted
    module = aligners["procrustes-scale-standardize"].to_module(dtype=torch.float32)
    module.to(F64)
    assert module.weight.dtype == F64 and module.bias.dtype == F64
    torch.testing.assert_close(module(X), aligners["procrustes-scale-standardize"].transform(X), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_module_on_cuda(fitted):
    aligners, X, _ = fitted
    for name in ("procrustes", "relative-product-concat", "ot-emd-preprocessed"):
        module = aligners[name].to_module().to("cuda")
        x = _input(aligners[name], X).float()
        torch.testing.assert_close(module(x.cuda()).cpu(), aligners[name].transform(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["affine", "relative-product-norm-topk", "ot-emd-preprocessed"])
def test_state_dict_round_trip_into_a_fresh_module(fitted, name):
    aligners, X, _ = fitted
    source = aligners[name].to_module(dtype=F64)
    # A module of the same shape fitted on other data computes something else ...
    other = ALIGNERS[name](*planted(seed=3)).to_module(dtype=F64)
    x = _input(aligners[name], X)
    assert not torch.allclose(other(x), source(x))
    # ... until it loads the state: then the outputs are identical.
    other.load_state_dict(source.state_dict())
    assert torch.equal(other(x), source(x))
    # The description rebuilds the structure without the aligner.
    rebuilt = module_from_config(module_config(source)).to(F64)
    rebuilt.load_state_dict(source.state_dict())
    assert torch.equal(rebuilt(x), source(x))


@pytest.mark.parametrize("name", ["affine", "relative-product-norm-topk", "relative-sum-power", "ot-emd-preprocessed"])
def test_torch_export(fitted, name):
    aligners, X, _ = fitted
    module = aligners[name].to_module()
    x = _input(aligners[name], X).float()
    batch = torch.export.Dim("batch", min=2)
    program = torch.export.export(module, (x[:8],), dynamic_shapes=({0: batch},))
    torch.testing.assert_close(program.module()(x), module(x))


def test_torch_compile_fullgraph_linear(fitted):
    aligners, X, _ = fitted
    module = aligners["procrustes"].to_module()
    compiled = torch.compile(module, fullgraph=True)
    x = X.float()[:8]
    torch.testing.assert_close(compiled(x), module(x))


@pytest.mark.slow
def test_torch_compile_fullgraph_relative(fitted):
    aligners, X, _ = fitted
    module = aligners["relative-product-norm-topk"].to_module()
    compiled = torch.compile(module, fullgraph=True)
    x = X.float()[:8]
    torch.testing.assert_close(compiled(x), module(x))


def test_linear_map_holds_the_fitted_map_in_nn_linear_layout(fitted):
    aligners, _, _ = fitted
    affine = aligners["affine"]
    module = affine.to_module(dtype=F64)
    assert isinstance(module, LinearMap)
    assert torch.equal(module.weight, affine.coef_.T) and torch.equal(module.bias, affine.intercept_)


# -- UniversalSpace -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def universal():
    X, Y = planted(n=60)
    return UniversalSpace(scale=True).fit({"a": X, "b": Y, "c": Y[:, :4]}), X


def test_universal_modules_equal_the_methods(universal):
    space, X = universal
    Z = space.to_universal(X, "a")
    for dtype, tol in ((F64, 1e-10), (torch.float32, 1e-4)):
        x, z = X.to(dtype), Z.to(dtype)
        torch.testing.assert_close(
            space.to_module(src="a", dtype=dtype)(x), space.to_universal(x, "a"), atol=tol, rtol=tol
        )
        torch.testing.assert_close(
            space.to_module(dst="c", dtype=dtype)(z), space.from_universal(z, "c"), atol=tol, rtol=tol
        )
        torch.testing.assert_close(
            space.to_module(src="a", dst="c", dtype=dtype)(x), space.translate(x, "a", "c"), atol=tol, rtol=tol
        )


def test_universal_translate_module_fuses_the_two_maps(universal):
    space, _ = universal
    module = space.to_module(src="a", dst="c")
    linear = [m for m in module.modules() if isinstance(m, LinearMap)]
    assert len(linear) == 1 and tuple(linear[0].weight.shape) == (4, 6)


def test_universal_module_errors(universal):
    space, _ = universal
    with pytest.raises(ValueError, match="needs a model name"):
        space.to_module()
    with pytest.raises(ValueError, match="Unknown model 'z'"):
        space.to_module(src="z")
    with pytest.raises(NotFittedError):
        UniversalSpace().to_module(src="a")


# -- building blocks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps",
    [[Center()], [StandardScale()], [L2Normalize()], [ZeroPad(dim=9)], [Center(), L2Normalize(), ZeroPad(dim=8)]],
)
def test_preprocessor_modules_equal_the_steps(steps):
    X, _ = planted(n=30)
    chain = Chain(steps=steps).fit(X)
    forward = preprocessor_module(chain).double()
    torch.testing.assert_close(forward(X), chain.transform(X))
    Z = chain.transform(X)
    torch.testing.assert_close(preprocessor_module(chain, inverse=True).double()(Z), chain.inverse_transform(Z))


def test_unknown_preprocessor_has_no_module():
    class Custom(Preprocessor):
        def _forward(self, X):
            return X

    step = Custom().fit(np.ones((3, 2)))
    with pytest.raises(NotImplementedError, match="Custom has no torch module"):
        preprocessor_module(step)


def test_relative_map_matches_functional_projection_near_anchors():
    # A point equal to an anchor is at distance exactly 0 (the direct euclidean computation).
    A = torch.randn(5, 3, dtype=F64) + 10.0
    module = RelativeMap(A, torch.zeros(3, dtype=F64), metrics=("euclidean",))
    out = module(A[:2].clone())
    assert out[0, 0] == 0 and out[1, 1] == 0


def test_module_description_errors():
    with pytest.raises(TypeError, match="Cannot describe a Linear module"):
        module_config(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="Unknown map module 'Nope'"):
        module_from_config({"class": "Nope"})
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        finalize_module(nn.Identity(), dtype=torch.int64)
    with pytest.raises(ValueError, match="LinearMap needs weight of shape"):
        LinearMap(torch.zeros(3, 2), torch.zeros(2))


@pytest.mark.parametrize("name", ["relative-euclidean", "ot-emd-preprocessed"])
def test_torch_export_of_inverse_modules(fitted, name):
    aligners, X, _ = fitted
    module = aligners[name].to_module(inverse=True)
    z = aligners[name].transform(X.float())
    program = torch.export.export(module, (z[:8],), dynamic_shapes=({0: torch.export.Dim("batch", min=2)},))
    torch.testing.assert_close(program.module()(z), module(z))
