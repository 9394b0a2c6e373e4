"""Checks shared by matching and merging: same architecture, same device."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["check_same_architecture", "check_same_device"]


def check_same_architecture(states: Sequence[Mapping[str, torch.Tensor]], names: Sequence[str] | None = None) -> None:
    """Raise if the state_dicts do not have the same entry names and shapes; list the first differences.

    Examples
    --------
    >>> a = {"w": torch.zeros(2, 3)}
    >>> check_same_architecture([a, {"w": torch.ones(2, 3)}])
    >>> check_same_architecture([a, {"w": torch.zeros(3, 3)}], names=["model_a", "model_b"])
    Traceback (most recent call last):
    ...
    ValueError: model_a and model_b have different architectures: 'w' has shape (2, 3) in model_a but (3, 3) in model_b. ...
    """
    labels = list(names) if names is not None else [f"model {i}" for i in range(len(states))]
    first, label0 = states[0], labels[0]
    for state, label in zip(states[1:], labels[1:]):
        differences: list[str] = []
        only_first = [k for k in first if k not in state]
        only_other = [k for k in state if k not in first]
        if only_first:
            differences.append(f"{only_first[:3]} only in {label0}")
        if only_other:
            differences.append(f"{only_other[:3]} only in {label}")
        for key, tensor in first.items():
            if key in state and tuple(state[key].shape) != tuple(tensor.shape):
                differences.append(
                    f"{key!r} has shape {tuple(tensor.shape)} in {label0} but {tuple(state[key].shape)} in {label}"
                )
            if len(differences) >= 3:
                break
        if differences:
            raise ValueError(
                f"{label0} and {label} have different architectures: {'; '.join(differences[:3])}. "
                "Matching and merging need models of one architecture (same entry names and shapes)."
            )


def check_same_device(states: Sequence[Mapping[str, torch.Tensor]], names: Sequence[str] | None = None) -> torch.device:
    """Return the one device every tensor of ``states`` lives on; raise if there are several.

    Examples
    --------
    >>> check_same_device([{"w": torch.zeros(1)}, {"w": torch.zeros(1)}])
    device(type='cpu')
    """
    labels = list(names) if names is not None else [f"model {i}" for i in range(len(states))]
    seen: dict[torch.device, str] = {}
    for state, label in zip(states, labels):
        for key, tensor in state.items():
            seen.setdefault(tensor.device, f"{label} ({key!r})")
    if len(seen) > 1:
        where = ", ".join(f"{device} for {label}" for device, label in seen.items())
        raise ValueError(
            f"The models are on different devices: {where}. Move them to one device with .to(device) first."
        )
    return next(iter(seen)) if seen else torch.device("cpu")
