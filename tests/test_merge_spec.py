"""Permutation specs: builders match the reference architectures and permuting keeps the function exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from latentalign.merge.architectures import MLP, ResNet, TransformerBlock, VGGLike
from latentalign.merge.spec import (
    PermutationSpec,
    apply_permutation,
    check_spec,
    cnn_spec,
    mlp_spec,
    permute_model,
    random_permutations,
    resnet_spec,
    transformer_block_spec,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Give every batch norm distinct statistics and affine terms, so a wrongly permuted one shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator))
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.randn(n, generator=generator))
                module.bias.copy_(torch.randn(n, generator=generator))
    return model.eval()


CASES = {
    "mlp": (lambda: MLP(12, [10, 8, 6], 3), lambda: mlp_spec(3), (5, 12)),
    "cnn": (lambda: VGGLike(2, [4, 6, 5], 3), lambda: cnn_spec(3), (4, 2, 12, 12)),
    "resnet8": (lambda: ResNet(8, 1, 3, 2), lambda: resnet_spec(1), (3, 2, 8, 8)),
    "resnet14": (lambda: ResNet(14, 1, 3, 2), lambda: resnet_spec(2), (3, 2, 8, 8)),
    "transformer_heads": (
        lambda: TransformerBlock(16, 4, 24),
        lambda: transformer_block_spec(attention="heads"),
        (2, 5, 16),
    ),
    "transformer_dims": (
        lambda: TransformerBlock(16, 4, 24),
        lambda: transformer_block_spec(attention="dims"),
        (2, 5, 16),
    ),
    "transformer_both": (
        lambda: TransformerBlock(16, 4, 24),
        lambda: transformer_block_spec(attention="both"),
        (2, 5, 16),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_permuted_model_computes_the_same_function(case):
    make_model, make_spec, shape = CASES[case]
    torch.manual_seed(0)
    model = _randomize_batchnorm(make_model(), seed=1)
    spec = make_spec()
    check_spec(model, spec)
    # a small random permutation can be the identity: roll those so that every unit moves
    perms = {
        k: (np.roll(p, 1) if (p == np.arange(len(p))).all() else p)
        for k, p in random_permutations(spec, model, seed=2).items()
    }
    permuted = permute_model(model, spec, perms).eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(permuted(x), model(x), atol=1e-5, rtol=1e-5)
    # the weights did move: the same function comes from different tensors
    changed = [k for k, v in model.state_dict().items() if v.dim() and not torch.equal(v, permuted.state_dict()[k])]
    assert changed


def test_wrong_permutation_changes_the_function():
    """The spec is not vacuous: permuting a hidden layer's rows without its reader's columns breaks the model."""
    torch.manual_seed(0)
    model = MLP(6, [8], 2).eval()
    broken = PermutationSpec.from_axes(
        {
            "layers.0.weight": ("h", None),
            "layers.0.bias": ("h",),
            "layers.1.weight": (None, None),
            "layers.1.bias": (None,),
        }
    )
    permuted = permute_model(model, broken, {"h": np.roll(np.arange(8), 1)})
    x = torch.randn(4, 6)
    assert not torch.allclose(permuted(x), model(x), atol=1e-3)


def test_spec_declared_for_a_user_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    spec = PermutationSpec.from_axes(
        {
            "0.weight": ("a", None),
            "0.bias": ("a",),
            "2.weight": ("b", "a"),
            "2.bias": ("b",),
            "4.weight": (None, "b"),
            "4.bias": (None,),
        }
    )
    assert spec.perm_to_axes["a"] == (("0.weight", 0), ("0.bias", 0), ("2.weight", 1))
    assert check_spec(model, spec) == {"a": 7, "b": 4}
    permuted = permute_model(model, spec, random_permutations(spec, model, seed=0))
    x = torch.randn(3, 5)
    torch.testing.assert_close(permuted(x), model(x), atol=1e-6, rtol=1e-6)


def test_apply_permutation_reorders_the_named_axes_and_leaves_the_input_alone():
    state = {"w": torch.arange(6.0).reshape(3, 2), "v": torch.arange(3.0)}
    spec = PermutationSpec.from_axes({"w": ("p", None), "v": ("p",)})
    before = {k: v.clone() for k, v in state.items()}
    out = apply_permutation(state, spec, {"p": [2, 0, 1]})
    assert torch.equal(out["w"], torch.tensor([[4.0, 5.0], [0.0, 1.0], [2.0, 3.0]]))
    assert torch.equal(out["v"], torch.tensor([2.0, 0.0, 1.0]))
    assert all(torch.equal(state[k], before[k]) for k in state)


def test_specs_join_over_disjoint_entries():
    joined = PermutationSpec.from_axes({"a": ("p",)}) | PermutationSpec.from_axes({"b": (None, "p")})
    assert joined.perm_to_axes["p"] == (("a", 0), ("b", 1))
    with pytest.raises(ValueError, match=r"both declare \['a'\]"):
        PermutationSpec.from_axes({"a": ("p",)}) | PermutationSpec.from_axes({"a": (None,)})


def test_check_spec_reports_an_uncovered_weight():
    state = MLP(4, [8], 2).state_dict()
    state["extra.weight"] = torch.zeros(2)
    with pytest.raises(ValueError, match=r"does not cover 1 entry of the state_dict: \['extra.weight'\]"):
        check_spec(state, mlp_spec(1))


def test_check_spec_reports_a_name_that_does_not_exist():
    with pytest.raises(
        ValueError, match=r"names 2 entries that the state_dict lacks: \['layers.2.weight', 'layers.2.bias'\]"
    ):
        check_spec(MLP(4, [8], 2), mlp_spec(2))


def test_check_spec_allows_a_subset_when_partial():
    params = dict(VGGLike(1, [4], 2).named_parameters())
    assert check_spec(params, cnn_spec(1), partial=True) == {"c0": 4}


def test_check_spec_reports_disagreeing_axis_sizes():
    state = {"a": torch.zeros(3, 2), "b": torch.zeros(2, 4)}
    spec = PermutationSpec.from_axes({"a": ("p", None), "b": (None, "p")})
    with pytest.raises(ValueError, match=r"acts on axis 0 of 'a' of size 3 and on axis 1 of 'b' of size 4"):
        check_spec(state, spec)


def test_check_spec_reports_a_wrong_number_of_axes():
    with pytest.raises(ValueError, match=r"'w' has 2 axes \(shape \(3, 2\)\) but the spec declares 1"):
        check_spec({"w": torch.zeros(3, 2)}, PermutationSpec.from_axes({"w": ("p",)}))


def test_declaration_must_be_a_tuple_per_entry():
    with pytest.raises(TypeError, match=r"Write \('h',\) for a 1-d entry"):
        PermutationSpec({"b": "h"})  # type: ignore[dict-item]


def test_apply_permutation_rejects_a_non_permutation_and_unknown_names():
    state = {"w": torch.zeros(3)}
    spec = PermutationSpec.from_axes({"w": ("p",)})
    with pytest.raises(
        ValueError, match=r"perms\['p'\] must be a permutation of range\(3\); received 3 indices \[0, 0, 1\]"
    ):
        apply_permutation(state, spec, {"p": [0, 0, 1]})
    with pytest.raises(ValueError, match=r"perms names \['q'\], which the spec does not define"):
        apply_permutation(state, spec, {"q": [0, 1, 2]})


def test_builders_validate_their_arguments():
    with pytest.raises(ValueError, match="num_hidden must be at least 1"):
        mlp_spec(0)
    with pytest.raises(ValueError, match="num_blocks must be at least 1"):
        cnn_spec(0)
    with pytest.raises(ValueError, match="blocks_per_stage must give at least one block"):
        resnet_spec([1, 0, 1])
    with pytest.raises(ValueError, match=r"attention must be one of \('heads', 'dims', 'both', 'none'\)"):
        transformer_block_spec(attention="width")
    with pytest.raises(ValueError, match=r"depth must be 6 \* n \+ 2"):
        ResNet(depth=10)


def test_resnet_spec_shares_one_permutation_across_the_residual_stream():
    spec = resnet_spec(2)
    writers = {k for k, axis in spec.perm_to_axes["stream1"] if axis == 0}
    assert writers == {
        "stages.1.0.conv2.weight",
        "stages.1.1.conv2.weight",
        "stages.1.0.shortcut.0.weight",
        *{
            f"stages.1.{b}.{bn}.{e}"
            for b, bn in ((0, "bn2"), (1, "bn2"), (0, "shortcut.1"))
            for e in ("weight", "bias", "running_mean", "running_var")
        },
    }
    # stage 0's stream starts at the stem
    assert ("conv1.weight", 0) in spec.perm_to_axes["stream0"]
