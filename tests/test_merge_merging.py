"""Merging weights, the linear path and its barrier, and the batch-norm reset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from latentalign.merge.architectures import MLP, VGGLike
from latentalign.merge.interpolation import barrier, barrier_from_curve, interpolate
from latentalign.merge.matching import weight_matching
from latentalign.merge.merging import merge, task_arithmetic
from latentalign.merge.repair import reset_batchnorm
from latentalign.merge.spec import apply_permutation, cnn_spec, permute_model, random_permutations

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(seed: int = 0) -> tuple[MLP, MLP]:
    torch.manual_seed(seed)
    return MLP(6, [8], 3).eval(), MLP(6, [8], 3).eval()


def test_merge_averages_models_into_a_new_model_of_the_same_class():
    a, b = _pair()
    merged = merge([a, b])
    assert type(merged) is MLP and merged is not a
    for key, value in merged.state_dict().items():
        torch.testing.assert_close(value, (a.state_dict()[key] + b.state_dict()[key]) / 2)
    weighted = merge([a, b], weights=[3.0, 1.0])
    torch.testing.assert_close(weighted.layers[0].weight, 0.75 * a.layers[0].weight + 0.25 * b.layers[0].weight)
    # inputs untouched
    assert not torch.equal(a.layers[0].weight, merged.layers[0].weight)


def test_merge_keeps_integer_entries_from_the_first_model():
    x, y = VGGLike(1, [4], 2), VGGLike(1, [4], 2)
    x.blocks[0].bn.num_batches_tracked.fill_(5)
    y.blocks[0].bn.num_batches_tracked.fill_(9)
    merged = merge([x.state_dict(), y.state_dict()])
    assert isinstance(merged, dict)
    assert merged["blocks.0.bn.num_batches_tracked"].item() == 5


def test_merging_a_model_with_its_matched_permuted_copy_gives_back_the_same_function():
    torch.manual_seed(0)
    model_a, spec = VGGLike(2, [6, 8], 3), cnn_spec(2)
    with torch.no_grad():
        for module in model_a.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.running_mean.normal_()
    model_a.eval()
    model_b = permute_model(model_a, spec, random_permutations(spec, model_a, seed=4))
    x = torch.randn(4, 2, 8, 8)
    naive = merge([model_a, model_b]).eval()
    assert not torch.allclose(naive(x), model_a(x), atol=1e-3)  # unmatched averaging mixes unrelated units
    perms = weight_matching(model_a, model_b, spec).perms
    aligned_b = apply_permutation(model_b.state_dict(), spec, perms)
    matched = merge([model_a.state_dict(), aligned_b])
    model = merge([model_a])
    model.load_state_dict(matched)
    torch.testing.assert_close(model.eval()(x), model_a(x), atol=1e-5, rtol=1e-5)


def test_task_arithmetic_adds_scaled_task_vectors():
    base, ft1 = _pair(0)
    _, ft2 = _pair(1)
    out = task_arithmetic(base, [ft1, ft2], scale=0.5)
    assert type(out) is MLP
    expected = base.layers[1].weight + 0.5 * (
        (ft1.layers[1].weight - base.layers[1].weight) + (ft2.layers[1].weight - base.layers[1].weight)
    )
    torch.testing.assert_close(out.layers[1].weight, expected)
    same = task_arithmetic(base.state_dict(), [base.state_dict()], scale=3.0)
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in same.items())


def test_merge_rejects_bad_weights_and_mismatched_models():
    a, b = _pair()
    with pytest.raises(ValueError, match=r"weights must be 2 finite non-negative numbers .* received \[1.0, -1.0\]"):
        merge([a, b], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match=r"weights must be 2 .* received \[1.0\]"):
        merge([a, b], weights=[1.0])
    with pytest.raises(
        ValueError,
        match=r"models\[0\] and models\[1\] have different architectures: 'layers.0.weight' has shape \(8, 6\) in models\[0\] but \(5, 6\) in models\[1\]",
    ):
        merge([a, MLP(6, [5], 3)])
    with pytest.raises(ValueError, match=r"\['layers.2.weight', 'layers.2.bias'\] only in models\[1\]"):
        merge([a.state_dict(), MLP(6, [8, 4], 3).state_dict()])
    with pytest.raises(ValueError, match=r"different devices: cpu for models\[0\].*meta for models\[1\]"):
        merge([a.state_dict(), {k: v.to("meta") for k, v in b.state_dict().items()}])
    with pytest.raises(TypeError, match="mixes nn.Modules and state_dicts"):
        merge([a, b.state_dict()])
    with pytest.raises(TypeError, match="must be a list of models"):
        merge(a)  # type: ignore[arg-type]


def test_interpolate_walks_the_straight_line():
    a, b = _pair()
    path = list(interpolate(a, b, [0.0, 0.25, 1.0, 1.5]))
    assert [alpha for alpha, _ in path] == [0.0, 0.25, 1.0, 1.5]
    assert torch.equal(path[0][1].layers[0].weight, a.layers[0].weight)
    assert torch.equal(path[2][1].layers[0].weight, b.layers[0].weight)
    torch.testing.assert_close(path[1][1].layers[0].weight, 0.75 * a.layers[0].weight + 0.25 * b.layers[0].weight)
    torch.testing.assert_close(path[3][1].layers[0].weight, -0.5 * a.layers[0].weight + 1.5 * b.layers[0].weight)
    assert all(type(m) is MLP and m is not a and m is not b for _, m in path)


def test_barrier_of_a_model_with_itself_is_zero_and_positive_on_a_bump():
    a, b = _pair()
    x = torch.randn(32, 6)
    target = a(x).detach()

    def loss(model: nn.Module) -> float:
        return float((model(x) - target).pow(2).mean())

    same = barrier(a, a, loss, 5)
    assert same.barrier == 0.0
    np.testing.assert_allclose(same.values, same.values[0])
    different = barrier(a, b, loss, 5)
    assert different.values.shape == (5,) and different.values[0] == 0.0
    expected = np.max(different.values - different.alphas * different.values[-1])
    assert different.barrier == pytest.approx(max(expected, 0.0))
    # accuracy-like: the gap below the line counts
    flipped = barrier(a, b, lambda m: -loss(m), 5, higher_is_better=True)
    assert flipped.barrier == pytest.approx(different.barrier)


def test_barrier_needs_the_endpoints_and_finite_values():
    a, b = _pair()
    with pytest.raises(ValueError, match=r"alphas must include 0 and 1"):
        barrier(a, b, lambda m: 0.0, [0.0, 0.5])
    with pytest.raises(ValueError, match=r"eval_fn returned nan"):
        barrier(a, b, lambda m: float("nan"), 3)
    with pytest.raises(ValueError, match=r"alphas must be at least 2 finite values"):
        list(interpolate(a, b, 1))


def test_reset_batchnorm_sets_running_statistics_to_the_batch():
    torch.manual_seed(0)
    model = VGGLike(2, [4, 5], 3).eval()
    with torch.no_grad():
        model.blocks[0].bn.running_mean.fill_(7.0)
    x = torch.randn(16, 2, 8, 8) * 3 + 1
    reset = reset_batchnorm(model, [x[:8], (x[8:], torch.zeros(8))])
    conv_out = reset.blocks[0].conv(x).detach()
    torch.testing.assert_close(reset.blocks[0].bn.running_mean, conv_out.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5)
    # per batch unbiased variances, averaged over the two batches (momentum=None: cumulative average)
    per_batch = [reset.blocks[0].conv(part).detach().var(dim=(0, 2, 3), unbiased=True) for part in (x[:8], x[8:])]
    torch.testing.assert_close(reset.blocks[0].bn.running_var, (per_batch[0] + per_batch[1]) / 2, atol=1e-4, rtol=1e-4)
    assert not reset.training and reset.blocks[0].bn.momentum == model.blocks[0].bn.momentum
    assert model.blocks[0].bn.running_mean[0].item() == 7.0  # the input model is untouched
    single = reset_batchnorm(model, x)
    torch.testing.assert_close(
        single.blocks[0].bn.running_var, conv_out.var(dim=(0, 2, 3), unbiased=True), atol=1e-4, rtol=1e-4
    )


def test_reset_batchnorm_errors():
    with pytest.raises(ValueError, match=r"model \(MLP\) has no BatchNorm layer"):
        reset_batchnorm(MLP(2, [2], 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="loader yielded no batch"):
        reset_batchnorm(VGGLike(1, [2], 2), [])


def test_barrier_from_curve_checks_its_inputs():
    with pytest.raises(ValueError, match=r"alphas must include 0 and 1 .* received 2 alphas \[0.0, 0.5\] and 3 values"):
        barrier_from_curve([0.0, 0.5], [1.0, 2.0, 3.0])
