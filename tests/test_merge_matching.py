"""Matching units: planted permutations are recovered, weight matching's objective never decreases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from latentalign.exceptions import ConvergenceWarning
from latentalign.merge.architectures import MLP, ResNet, TransformerBlock, VGGLike
from latentalign.merge.matching import activation_matching, matching_objective, weight_matching
from latentalign.merge.spec import (
    PermutationSpec,
    cnn_spec,
    mlp_spec,
    permute_model,
    random_permutations,
    resnet_spec,
    transformer_block_spec,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


CASES = {
    "mlp": (lambda: MLP(20, [16, 12], 3), lambda: mlp_spec(2), (64, 20)),
    "cnn": (lambda: VGGLike(3, [8, 12, 10], 3), lambda: cnn_spec(3), (8, 3, 12, 12)),
    "resnet": (lambda: ResNet(8, 1, 3, 3), lambda: resnet_spec(1), (8, 3, 8, 8)),
}


@pytest.fixture(scope="module", params=list(CASES))
def planted(request):
    """Model A, model B = A with every permutation of the spec shuffled, the spec and the shuffles."""
    make_model, make_spec, shape = CASES[request.param]
    torch.manual_seed(0)
    model_a, spec = make_model().eval(), make_spec()
    with torch.no_grad():  # distinct batch-norm affine terms, as after training
        for module in model_a.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_()
    perms = random_permutations(spec, model_a, seed=1)
    model_b = permute_model(model_a, spec, perms)
    return model_a, model_b, spec, perms, torch.randn(*shape)


def _recovered(result_perms, planted_perms) -> bool:
    # B's unit perms[i] is A's unit i, so matching B onto A returns the inverse of the shuffle
    return set(result_perms) == set(planted_perms) and all(
        np.array_equal(result_perms[k], np.argsort(planted_perms[k])) for k in planted_perms
    )


def test_weight_matching_recovers_planted_permutations(planted):
    model_a, model_b, spec, perms, _ = planted
    result = weight_matching(model_a, model_b, spec, seed=0)
    assert result.converged
    assert _recovered(result.perms, perms)


def test_activation_matching_recovers_planted_permutations(planted):
    model_a, model_b, spec, perms, x = planted
    result = activation_matching(model_a, model_b, spec, [x[: len(x) // 2], (x[len(x) // 2 :], None)])
    assert _recovered(result.perms, perms)
    # every matched pair has correlation 1: the total is the number of (layer, unit) pairs
    assert result.objective[0] > 0
    assert not model_a.training and not model_b.training


def test_weight_matching_recovers_the_transformer_block():
    torch.manual_seed(0)
    model_a, spec = TransformerBlock(16, 4, 24), transformer_block_spec(attention="both")
    perms = random_permutations(spec, model_a, seed=3)
    result = weight_matching(model_a, permute_model(model_a, spec, perms), spec)
    assert _recovered(result.perms, perms)


def test_weight_matching_objective_never_decreases_between_independent_models():
    torch.manual_seed(0)
    model_a, model_b, spec = MLP(12, [32, 32, 32], 4), MLP(12, [32, 32, 32], 4), mlp_spec(3)
    result = weight_matching(model_a, model_b, spec, seed=0)
    history = np.asarray(result.objective)
    assert len(history) >= 3  # several sweeps, so monotonicity is a real check
    assert np.all(np.diff(history) >= 0)
    assert history[-1] > history[0]
    # the log is the objective of the returned permutations
    assert matching_objective(
        dict(model_a.named_parameters()), dict(model_b.named_parameters()), spec, result.perms
    ) == pytest.approx(history[-1])


def test_weight_matching_is_monotone_when_a_weight_has_one_permutation_on_two_axes():
    """A square weight permuted on both axes (as a recurrent matrix) makes the objective quadratic in it."""
    generator = torch.Generator().manual_seed(0)
    spec = PermutationSpec.from_axes({"inp": ("h", None), "rec": ("h", "h"), "out": (None, "h")})
    a = {k: torch.randn(*s, generator=generator) for k, s in {"inp": (10, 5), "rec": (10, 10), "out": (3, 10)}.items()}
    b = {k: torch.randn(*v.shape, generator=generator) for k, v in a.items()}
    for seed in range(3):
        history = np.asarray(weight_matching(a, b, spec, seed=seed).objective)
        assert np.all(np.diff(history) >= 0)


def test_weight_matching_warns_when_max_iter_stops_it():
    torch.manual_seed(0)
    model_a, spec = MLP(20, [16, 12], 3), mlp_spec(2)
    model_b = permute_model(model_a, spec, random_permutations(spec, model_a, seed=1))
    with pytest.warns(ConvergenceWarning, match="raise max_iter"):
        result = weight_matching(model_a, model_b, spec, max_iter=1)
    assert not result.converged
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        weight_matching(model_a, model_b, spec, max_iter=10)


def test_matching_rejects_different_architectures():
    spec = mlp_spec(1)
    with pytest.raises(
        ValueError,
        match=r"params_a and params_b have different architectures: 'layers.0.weight' has shape \(8, 4\) in params_a but \(6, 4\) in params_b",
    ):
        weight_matching(MLP(4, [8], 2), MLP(4, [6], 2), spec)
    with pytest.raises(ValueError, match=r"model_a and model_b have different architectures: \['layers.2.weight'"):
        activation_matching(MLP(4, [8, 8], 2), MLP(4, [8], 2), mlp_spec(2), torch.zeros(2, 4))


def test_matching_rejects_models_on_different_devices():
    model_a = MLP(4, [8], 2)
    on_meta = {k: v.to("meta") for k, v in model_a.state_dict().items()}
    with pytest.raises(ValueError, match=r"different devices: cpu for params_a .* meta for params_b.*\.to\(device\)"):
        weight_matching(model_a.state_dict(), on_meta, mlp_spec(1))


def test_weight_matching_rejects_a_spec_that_does_not_cover_a_weight():
    with pytest.raises(
        ValueError, match=r"does not cover 2 entries of the state_dict: \['layers.1.weight', 'layers.1.bias'\]"
    ):
        weight_matching(
            MLP(4, [8, 8], 2),
            MLP(4, [8, 8], 2),
            PermutationSpec.from_axes(
                {
                    "layers.0.weight": ("h", None),
                    "layers.0.bias": ("h",),
                    "layers.2.weight": (None, None),
                    "layers.2.bias": (None,),
                }
            ),
        )


def test_activation_matching_needs_a_layer_that_produces_the_units():
    model = TransformerBlock(8, 2, 8)
    with pytest.raises(
        ValueError,
        match=r"finds no Linear, Conv or BatchNorm layer producing the units of \['heads'\].*Use weight_matching",
    ):
        activation_matching(model, model, transformer_block_spec(attention="heads"), torch.zeros(1, 3, 8))


def test_activation_matching_rejects_empty_inputs():
    model = MLP(4, [8], 2)
    with pytest.raises(ValueError, match="inputs yielded no batch"):
        activation_matching(model, model, mlp_spec(1), [])
