"""Cycle-consistent matching of N models to a shared universe of units (after C2M3, Crisostomi et al.).

Matching N models pairwise gives maps that need not compose: going from A to B to C may not land where
going from A to C does. Here every model ``m`` gets one permutation per spec name onto a shared
*universe*; the map from model ``i`` to model ``j`` goes through it (``P_ij = P_j^T P_i``), so every
cycle of maps is the identity by construction.

The permutations maximize the agreement of all aligned models, ``sum_{m < n} <P_m(W_m), P_n(W_n)>``
(the data-free weight-matching objective summed over pairs). They are relaxed to doubly stochastic
matrices and optimized by Frank-Wolfe: at each step the gradient for every model and permutation is
computed at the current point, the best permutation matrix along it comes from a linear assignment
(:func:`scipy.optimize.linear_sum_assignment`), and every matrix moves toward it by ``2 / (k + 2)``.
At the end each matrix is rounded to the nearest permutation (one more linear assignment).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from latentalign.merge.checks import check_same_architecture, check_same_device
from latentalign.merge.spec import PermutationSpec, check_spec

__all__ = ["CycleConsistentResult", "cycle_consistent_matching"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CycleConsistentResult:
    """Permutations of N models onto one universe of units.

    Attributes
    ----------
    to_universe : list of dict of str to ndarray
        For model ``m``, the index arrays that reorder its units into the universe's order
        (``apply_permutation(state_m, spec, to_universe[m])``).
    objective : list of float
        The relaxed objective after each Frank-Wolfe step, then the objective of the rounded
        permutations (last entry).
    """

    to_universe: list[dict[str, np.ndarray]]
    objective: list[float] = field(default_factory=list)

    def pairwise(self, source: int, target: int) -> dict[str, np.ndarray]:
        """Index arrays that reorder model ``source``'s units into model ``target``'s order.

        ``apply_permutation(state_source, spec, result.pairwise(source, target))`` puts ``source``'s
        unit ``perm[k]`` where ``target`` has its unit ``k``.
        """
        into_target, into_source = self.to_universe[target], self.to_universe[source]
        # target unit k sits at universe position argsort(u_t)[k], where source has unit u_s[...]
        return {p: into_source[p][np.argsort(into_target[p])] for p in into_target}


def _entries(model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(model, nn.Module):
        return {k: v.detach().double() for k, v in model.named_parameters()}
    if isinstance(model, Mapping):
        return {k: v.detach().double() for k, v in model.items() if torch.is_tensor(v) and v.is_floating_point()}
    raise TypeError(f"models must hold nn.Modules or state_dicts; received {type(model).__name__}.")


def _align(
    tensor: torch.Tensor, axes: tuple[str | None, ...], mats: Mapping[str, torch.Tensor], skip: int | None = None
) -> torch.Tensor:
    """Multiply ``tensor`` along each permuted axis by that permutation's (soft) matrix: out[i] = sum_j S[i, j] w[j]."""
    for axis, perm in enumerate(axes):
        if perm is not None and axis != skip:
            tensor = torch.movedim(torch.tensordot(mats[perm], tensor, dims=([1], [axis])), 0, axis)
    return tensor


def _objective(aligned: Sequence[Mapping[str, torch.Tensor]]) -> float:
    total = 0.0
    for key in aligned[0]:
        stack = [a[key] for a in aligned]
        summed = torch.stack(stack).sum(0)
        total += 0.5 * (float(torch.sum(summed * summed)) - sum(float(torch.sum(s * s)) for s in stack))
    return total


def cycle_consistent_matching(
    models: Sequence[nn.Module] | Sequence[Mapping[str, torch.Tensor]],
    spec: PermutationSpec,
    *,
    max_iter: int = 100,
    tol: float = 1e-7,
) -> CycleConsistentResult:
    """Match N >= 2 models of one architecture to a shared universe, so that all pairwise maps compose.

    Parameters
    ----------
    models : list of nn.Module or list of state_dict
        For a module, its parameters enter the objective (not its buffers); for a mapping, every
        floating-point entry.
    spec : PermutationSpec
    max_iter : int, default 100
        Frank-Wolfe steps.
    tol : float, default 1e-7
        Stop when a step changes the relaxed objective by less than ``tol`` times its size.

    Returns
    -------
    CycleConsistentResult
        ``to_universe`` per model and :meth:`~CycleConsistentResult.pairwise` maps.

    Examples
    --------
    Three shuffled copies of one model: the pairwise maps undo the shuffles and compose.

    >>> from latentalign.merge.architectures import MLP
    >>> from latentalign.merge.spec import mlp_spec, random_permutations, permute_model
    >>> torch.manual_seed(0) and None
    >>> base, spec = MLP(20, [16], 4), mlp_spec(1)
    >>> shuffles = [random_permutations(spec, base, seed=s) for s in range(3)]
    >>> models = [permute_model(base, spec, s) for s in shuffles]
    >>> result = cycle_consistent_matching(models, spec)
    >>> # model 1's unit k is base unit shuffles[1][k]; model 0 holds that unit at argsort(shuffles[0])[...]
    >>> expected = np.argsort(shuffles[0]["h0"])[shuffles[1]["h0"]]
    >>> bool((result.pairwise(0, 1)["h0"] == expected).all())
    True
    """
    if isinstance(models, (nn.Module, Mapping)) or len(models) < 2:
        raise ValueError("models must be a list of at least 2 models or state_dicts (one universe for all of them).")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1; received {max_iter}.")
    states = [_entries(m) for m in models]
    names = [f"models[{i}]" for i in range(len(states))]
    check_same_architecture(states, names)
    device = check_same_device(states, names)
    sizes = check_spec(states[0], spec, partial=True)
    missing = [p for p in spec.names if p not in sizes]
    if missing:
        raise ValueError(
            f"Permutations {missing[:5]} act on no floating-point entry of the models, so they cannot be sized."
        )
    mats = [{p: torch.eye(n, dtype=torch.float64, device=device) for p, n in sizes.items()} for _ in states]
    history: list[float] = []
    for step in range(max_iter):
        aligned = [{k: _align(w, spec.axes_to_perm[k], m) for k, w in s.items()} for s, m in zip(states, mats)]
        history.append(_objective(aligned))
        if step > 0 and abs(history[-1] - history[-2]) <= tol * max(1.0, abs(history[-1])):
            break
        total = {k: sum(a[k] for a in aligned) for k in aligned[0]}
        gamma = 2.0 / (step + 2.0)
        updates = []
        for state, own, mat in zip(states, aligned, mats):
            vertex = {}
            for p, n in sizes.items():
                grad = torch.zeros(n, n, dtype=torch.float64, device=device)
                for key, axis in spec.perm_to_axes[p]:
                    if key not in state:
                        continue
                    others = (total[key] - own[key]).movedim(axis, 0).reshape(n, -1)
                    partial = _align(state[key], spec.axes_to_perm[key], mat, skip=axis).movedim(axis, 0).reshape(n, -1)
                    grad += others @ partial.T
                rows, cols = linear_sum_assignment(grad.cpu().numpy(), maximize=True)
                best = torch.zeros(n, n, dtype=torch.float64, device=device)
                best[torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)] = 1.0
                vertex[p] = best
            updates.append(vertex)
        for mat, vertex in zip(mats, updates):
            for p in mat:
                mat[p] = mat[p] + gamma * (vertex[p] - mat[p])
        logger.debug("cycle-consistent matching step %d: relaxed objective %.6g", step, history[-1])
    to_universe = []
    for mat in mats:
        to_universe.append({p: linear_sum_assignment(m.cpu().numpy(), maximize=True)[1] for p, m in mat.items()})
    hard = []
    for state, perms in zip(states, to_universe):
        index = {p: torch.as_tensor(v, device=device) for p, v in perms.items()}
        hard.append(
            {
                k: _align(
                    w,
                    spec.axes_to_perm[k],
                    {p: torch.eye(len(v), dtype=torch.float64, device=device)[v] for p, v in index.items()},
                )
                for k, w in state.items()
            }
        )
    history.append(_objective(hard))
    return CycleConsistentResult(to_universe, history)
