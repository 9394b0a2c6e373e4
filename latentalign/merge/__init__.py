"""Merging models by matching their units.

Networks trained from different seeds compute similar features in a different order. This package
writes that symmetry down as data (:mod:`~latentalign.merge.spec`: which axes of which weights each unit
permutation reorders), finds the permutations that align one model's units with another's
(:mod:`~latentalign.merge.matching`: from weights or from activations; :mod:`~latentalign.merge.cycle`:
N models onto one shared universe), averages the aligned weights
(:mod:`~latentalign.merge.merging`), measures the loss barrier along the linear path
(:mod:`~latentalign.merge.interpolation`) and repairs the statistics of the merged units
(:mod:`~latentalign.merge.repair`: batch-norm reset, REPAIR rescaling). Reference models live in :mod:`~latentalign.merge.architectures`.

Examples
--------
>>> import torch
>>> from latentalign.merge import MLP, mlp_spec, random_permutations, permute_model, weight_matching
>>> from latentalign.merge import apply_permutation, merge
>>> torch.manual_seed(0) and None
>>> model_a, spec = MLP(10, [16], 3), mlp_spec(1)
>>> model_b = permute_model(model_a, spec, random_permutations(spec, model_a, seed=0))
>>> perms = weight_matching(model_a, model_b, spec).perms
>>> aligned_b = apply_permutation(model_b.state_dict(), spec, perms)
>>> merged = merge([model_a.state_dict(), aligned_b])
>>> bool(torch.allclose(merged["layers.0.weight"], model_a.layers[0].weight))
True
"""

from latentalign.merge.architectures import MLP, ResNet, TransformerBlock, VGGLike
from latentalign.merge.cycle import CycleConsistentResult, cycle_consistent_matching
from latentalign.merge.interpolation import BarrierResult, barrier, barrier_from_curve, interpolate
from latentalign.merge.matching import MatchResult, activation_matching, matching_objective, weight_matching
from latentalign.merge.merging import as_model, merge, task_arithmetic
from latentalign.merge.repair import repair, reset_batchnorm
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

__all__ = [
    "PermutationSpec",
    "check_spec",
    "apply_permutation",
    "permute_model",
    "random_permutations",
    "mlp_spec",
    "cnn_spec",
    "resnet_spec",
    "transformer_block_spec",
    "MLP",
    "VGGLike",
    "ResNet",
    "TransformerBlock",
    "MatchResult",
    "weight_matching",
    "activation_matching",
    "matching_objective",
    "cycle_consistent_matching",
    "CycleConsistentResult",
    "merge",
    "task_arithmetic",
    "as_model",
    "interpolate",
    "barrier",
    "barrier_from_curve",
    "BarrierResult",
    "reset_batchnorm",
    "repair",
]
