"""Cycle-consistent matching of several models: planted shuffles recovered, pairwise maps compose."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from latentalign.merge.architectures import MLP, VGGLike
from latentalign.merge.cycle import cycle_consistent_matching
from latentalign.merge.spec import cnn_spec, mlp_spec, permute_model, random_permutations

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _matrix(perm: np.ndarray) -> np.ndarray:
    """The matrix M with (M @ w)[k] = w[perm[k]]: the map that ``apply_permutation`` applies."""
    return np.eye(len(perm))[perm]


@pytest.mark.parametrize(
    ("make_model", "spec"), [(lambda: MLP(20, [16, 12], 3), mlp_spec(2)), (lambda: VGGLike(3, [8, 12], 3), cnn_spec(2))]
)
def test_planted_shuffles_are_recovered_for_every_pair(make_model, spec):
    torch.manual_seed(0)
    base = make_model()
    shuffles = [random_permutations(spec, base, seed=s) for s in range(3)]
    result = cycle_consistent_matching([permute_model(base, spec, s) for s in shuffles], spec)
    for i, j in itertools.permutations(range(3), 2):
        for p in shuffles[0]:
            # model j's unit k is base unit shuffles[j][k], held by model i at argsort(shuffles[i])
            assert np.array_equal(result.pairwise(i, j)[p], np.argsort(shuffles[i][p])[shuffles[j][p]])


def test_pairwise_maps_of_independent_models_are_cycle_consistent():
    torch.manual_seed(0)
    models = [MLP(10, [12, 8], 3).state_dict() for _ in range(4)]
    spec = mlp_spec(2)
    result = cycle_consistent_matching(models, spec, max_iter=30)
    assert result.objective[-1] > result.objective[0]  # the rounded permutations beat the identity
    for a, b, c in itertools.permutations(range(4), 3):
        for p in ("h0", "h1"):
            # map a -> c equals map a -> b followed by b -> c, as matrices acting on a's units
            p_ab, p_bc, p_ac = (_matrix(result.pairwise(s, t)[p]) for s, t in ((a, b), (b, c), (a, c)))
            np.testing.assert_array_equal(p_ac, p_bc @ p_ab)
        assert all(np.array_equal(v, np.arange(len(v))) for v in result.pairwise(a, a).values())


def test_cycle_consistent_matching_errors():
    spec = mlp_spec(1)
    with pytest.raises(ValueError, match="at least 2 models"):
        cycle_consistent_matching([MLP(3, [4], 2)], spec)
    with pytest.raises(ValueError, match=r"models\[0\] and models\[1\] have different architectures"):
        cycle_consistent_matching([MLP(3, [4], 2), MLP(3, [5], 2)], spec)
    with pytest.raises(ValueError, match="max_iter must be at least 1"):
        cycle_consistent_matching([MLP(3, [4], 2), MLP(3, [4], 2)], spec, max_iter=0)
