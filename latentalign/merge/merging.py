"""Averaging the weights of models of one architecture: plain or weighted averages, task arithmetic.

Inputs are models or state_dicts; a model in gives a new model of the same class out (a deep copy of
the first with the merged weights loaded), a state_dict in gives a state_dict out. Integer entries
(batch norm's ``num_batches_tracked``) are taken from the first model. Match the units first
(:mod:`latentalign.merge.matching`, :func:`~latentalign.merge.spec.apply_permutation`): averaging
unmatched networks mixes unrelated units.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import overload

import numpy as np
import torch
from torch import nn

from latentalign.merge.checks import check_same_architecture, check_same_device
from latentalign.merge.spec import state_dict_of

__all__ = ["merge", "task_arithmetic", "as_model"]

StateDict = Mapping[str, torch.Tensor]


def as_model(template: nn.Module, state_dict: StateDict) -> nn.Module:
    """A deep copy of ``template`` with ``state_dict`` loaded (strictly).

    Examples
    --------
    >>> lin = torch.nn.Linear(2, 2)
    >>> new = as_model(lin, {"weight": torch.eye(2), "bias": torch.zeros(2)})
    >>> bool(torch.equal(new.weight, torch.eye(2))), new is lin
    (True, False)
    """
    new = copy.deepcopy(template)
    new.load_state_dict(dict(state_dict))
    return new


def _states(models: Sequence[nn.Module | StateDict], label: str) -> list[dict[str, torch.Tensor]]:
    if isinstance(models, (nn.Module, Mapping)) or not isinstance(models, Sequence):
        raise TypeError(f"{label} must be a list of models or state_dicts; received {type(models).__name__}.")
    if not models:
        raise ValueError(f"{label} is empty; pass at least one model.")
    kinds = {isinstance(m, nn.Module) for m in models}
    if len(kinds) > 1:
        raise TypeError(f"{label} mixes nn.Modules and state_dicts; pass all of one kind.")
    states = [state_dict_of(m) for m in models]
    names = [f"{label}[{i}]" for i in range(len(states))]
    check_same_architecture(states, names)
    check_same_device(states, names)
    return states


@overload
def merge(models: Sequence[nn.Module], weights: Sequence[float] | None = None) -> nn.Module: ...
@overload
def merge(models: Sequence[StateDict], weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]: ...


def merge(
    models: Sequence[nn.Module] | Sequence[StateDict], weights: Sequence[float] | None = None
) -> nn.Module | dict[str, torch.Tensor]:
    """Weighted average of the weights of several models of one architecture.

    Parameters
    ----------
    models : list of nn.Module or list of state_dict
    weights : list of float, optional
        One non-negative weight per model, normalized to sum to 1 (default: equal weights).

    Returns
    -------
    nn.Module or dict
        A new model of the first model's class, or a state_dict, as given.

    Raises
    ------
    ValueError
        The models differ in entry names or shapes (the first differences are listed), sit on
        different devices, or the weights are not one non-negative number per model.

    Examples
    --------
    >>> a, b = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
    >>> merge([a, b])["w"]
    tensor([0.5000, 0.5000])
    >>> merge([a, b], weights=[3, 1])["w"]
    tensor([0.2500, 0.2500])
    """
    states = _states(models, "models")
    if weights is None:
        coef = np.full(len(states), 1.0 / len(states))
    else:
        coef = np.asarray(weights, dtype=np.float64).reshape(-1)
        if coef.size != len(states) or not np.all(np.isfinite(coef)) or np.any(coef < 0) or coef.sum() <= 0:
            raise ValueError(
                f"weights must be {len(states)} finite non-negative numbers (one per model) with a positive sum; "
                f"received {list(weights)}."
            )
        coef = coef / coef.sum()
    merged: dict[str, torch.Tensor] = {}
    for key, first in states[0].items():
        if not first.is_floating_point():
            merged[key] = first.clone()
            continue
        total = sum(float(c) * s[key].double() for c, s in zip(coef, states))
        merged[key] = torch.as_tensor(total).to(first.dtype)
    first_model = models[0]
    return as_model(first_model, merged) if isinstance(first_model, nn.Module) else merged


def task_arithmetic(
    base: nn.Module | StateDict, finetuned: Sequence[nn.Module] | Sequence[StateDict], scale: float = 1.0
) -> nn.Module | dict[str, torch.Tensor]:
    """``base + scale * sum_i (finetuned_i - base)``: add task vectors to a base model.

    Parameters
    ----------
    base : nn.Module or state_dict
        The model the fine-tuned ones started from.
    finetuned : list of nn.Module or list of state_dict
        Fine-tuned models of the same architecture.
    scale : float, default 1.0
        Multiplies the summed task vectors (``1 / len(finetuned)`` averages them).

    Returns
    -------
    nn.Module or dict
        Same kind as ``base``.

    Examples
    --------
    >>> base = {"w": torch.zeros(2)}
    >>> ft = [{"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([0.0, 2.0])}]
    >>> task_arithmetic(base, ft, scale=0.5)["w"]
    tensor([0.5000, 1.0000])
    """
    if not np.isfinite(scale):
        raise ValueError(f"scale must be a finite number; received {scale}.")
    states = _states([base, *finetuned], "[base, *finetuned]")
    base_state, tuned = states[0], states[1:]
    out: dict[str, torch.Tensor] = {}
    for key, b in base_state.items():
        if not b.is_floating_point():
            out[key] = b.clone()
            continue
        delta = sum(s[key].double() - b.double() for s in tuned)
        out[key] = (b.double() + scale * torch.as_tensor(delta)).to(b.dtype)
    return as_model(base, out) if isinstance(base, nn.Module) else out
