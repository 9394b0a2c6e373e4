"""Where a model can be cut, and how to run its front up to a cut or its back from a cut.

Three kinds of models are supported, each with its own cut names (:func:`cut_names`):

- ``torch.nn.Sequential`` (and subclasses): the names of its top-level children; a cut named ``"k"`` is
  the output of child ``k``. The front and the back are slices of the sequence, so nothing runs twice.
- Hugging Face transformer encoders (a ``ModuleList`` at ``encoder.layer``, as in BERT, RoBERTa, MPNet):
  the embeddings module and every block, e.g. ``"embeddings"``, ``"encoder.layer.0"``, ... The states
  are token states ``(n, tokens, d)``; the first element of a block's tuple output is the one cut.
- Any other ``torch.nn.Module`` (timm- or torchvision-style CNNs whose ``forward`` is not a plain
  sequence): the dotted name of any submodule that is not a container (``ModuleList``/``ModuleDict``),
  e.g. ``"layer2"`` or ``"layer2.1"``. The front runs the whole ``forward`` and stops at the cut with a
  forward hook; the back runs the whole ``forward`` on the same inputs with a hook that replaces the cut
  module's output, so B's front is computed and thrown away. The cut module must run once per forward
  pass (a module reused inside ``forward``, such as one ReLU called twice, is refused when detected).

Inputs are a tensor (``model(x)``) or a mapping of keyword arguments (``model(**inputs)``, e.g. a
tokenizer's output).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "CutPoint",
    "cut_names",
    "resolve_cut",
    "run_front",
    "run_back",
    "layer_states",
    "call_model",
    "sequence_slice",
]

_SHOWN = 30  # cut names listed in an error message before "... and N more"


@dataclass(frozen=True)
class CutPoint:
    """A resolved cut: its name, how the model is split there, and the module or index it refers to."""

    name: str
    kind: str  # "sequential" or "hook"
    index: int = -1
    module: nn.Module | None = None


def _transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and (name == "encoder.layer" or name.endswith(".encoder.layer")):
            return name, module
    return None


def cut_names(model: nn.Module) -> list[str]:
    """The valid cut names of ``model``, in the order its modules are registered (shallow to deep for a
    sequence or a transformer encoder).

    Examples
    --------
    >>> import torch
    >>> cut_names(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)))
    ['0', '1', '2']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if isinstance(model, nn.Sequential):
        return [name for name, _ in model.named_children()]
    blocks = _transformer_blocks(model)
    if blocks is not None:
        path, layers = blocks
        prefix = path[: -len("encoder.layer")]
        names = [f"{prefix}embeddings"] if _has_module(model, f"{prefix}embeddings") else []
        return names + [f"{path}.{i}" for i in range(len(layers))]
    return [
        name
        for name, module in model.named_modules()
        if name and not isinstance(module, (nn.ModuleList, nn.ModuleDict))
    ]


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def _listing(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f", ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def resolve_cut(model: nn.Module, cut: str, *, argument: str = "cut") -> CutPoint:
    """The :class:`CutPoint` named ``cut`` in ``model``; a ValueError listing the valid names otherwise.

    Examples
    --------
    >>> import torch
    >>> resolve_cut(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh()), "1").index
    1
    >>> resolve_cut(torch.nn.Sequential(torch.nn.ReLU()), "relu", argument="cut_a")
    Traceback (most recent call last):
    ...
    ValueError: cut_a='relu' is not a cut point of this Sequential; valid cut names: '0'. Pass one of them (latentalign.stitching.cut_names(model) lists them).
    """
    names = cut_names(model)
    if not isinstance(cut, str) or cut not in names:
        raise ValueError(
            f"{argument}={cut!r} is not a cut point of this {type(model).__name__}; valid cut names: "
            f"{_listing(names)}. Pass one of them (latentalign.stitching.cut_names(model) lists them)."
        )
    if isinstance(model, nn.Sequential):
        return CutPoint(cut, "sequential", index=names.index(cut))
    return CutPoint(cut, "hook", module=model.get_submodule(cut))


def call_model(model: nn.Module, inputs: Any) -> Any:
    """``model(**inputs)`` for a mapping of keyword arguments, else ``model(inputs)``."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(inputs)


def sequence_slice(model: nn.Module, start: int | None, stop: int | None) -> nn.Sequential:
    """A plain ``nn.Sequential`` of the children ``start:stop`` of a sequence (sharing their weights).

    ``model[start:stop]`` would call the constructor of a subclass of ``nn.Sequential`` with the children,
    which a subclass with its own constructor arguments does not accept.

    Examples
    --------
    >>> import torch
    >>> sequence_slice(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh()), 1, None)
    Sequential(
      (1): Tanh()
    )
    """
    return nn.Sequential(OrderedDict(list(model.named_children())[start:stop]))


class _Stop(Exception):
    """Raised by the capturing hook to end the front's forward pass at the cut."""


def _state_of(output: Any, cut: str) -> torch.Tensor:
    state = output[0] if isinstance(output, (tuple, list)) and output else output
    if not isinstance(state, torch.Tensor):
        raise TypeError(
            f"The module at cut {cut!r} returns a {type(output).__name__}, not a tensor or a tuple starting "
            "with one; cut at a module whose output is a tensor."
        )
    return state


def run_front(model: nn.Module, cut: CutPoint, inputs: Any) -> torch.Tensor:
    """Run ``model`` on ``inputs`` up to and including the cut; return the state there."""
    if cut.kind == "sequential":
        return sequence_slice(model, None, cut.index + 1)(inputs)
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _args: Any, output: Any) -> None:
        captured.append(_state_of(output, cut.name))
        raise _Stop

    assert cut.module is not None
    handle = cut.module.register_forward_hook(hook)
    try:
        call_model(model, inputs)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(
            f"The module at cut {cut.name!r} never ran in {type(model).__name__}.forward, so it has no state "
            "to cut; pick a module that forward calls."
        )
    return captured[0]


def run_back(model: nn.Module, cut: CutPoint, state: torch.Tensor, inputs: Any) -> Any:
    """Run ``model`` from the cut to its output, with ``state`` in place of its own state at the cut.

    A sequence only runs its children after the cut; any other model runs its whole ``forward`` on
    ``inputs`` with the cut module's output replaced (its shape must match the one replaced).
    """
    if cut.kind == "sequential":
        return sequence_slice(model, cut.index + 1, None)(state)
    calls = [0]

    def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
        calls[0] += 1
        if calls[0] > 1:
            raise RuntimeError(
                f"The module at cut {cut.name!r} ran more than once in one forward pass of "
                f"{type(model).__name__} (a module reused inside forward); cut at a module that runs once."
            )
        own = _state_of(output, cut.name)
        if own.shape != state.shape:
            raise ValueError(
                f"The mapped state has shape {tuple(state.shape)}, but model B's state at cut {cut.name!r} "
                f"has shape {tuple(own.shape)}; the map must produce B's feature count (and, for feature "
                "maps, B's spatial size: see resize in fit_layer_stitcher)."
            )
        new = state.to(dtype=own.dtype, device=own.device)
        if isinstance(output, tuple):
            return (new, *output[1:])
        if isinstance(output, list):
            return [new, *output[1:]]
        return new

    assert cut.module is not None
    handle = cut.module.register_forward_hook(hook)
    try:
        out = call_model(model, inputs)
    finally:
        handle.remove()
    if calls[0] == 0:
        raise RuntimeError(
            f"The module at cut {cut.name!r} never ran in {type(model).__name__}.forward, so the mapped state "
            "was not used; pick a module that forward calls."
        )
    return out


def _batches(inputs: Any, batch_size: int | None) -> list[Any]:
    if batch_size is None or isinstance(inputs, Mapping) or not isinstance(inputs, torch.Tensor):
        return [inputs]
    return [inputs[start : start + batch_size] for start in range(0, len(inputs), batch_size)]


@torch.no_grad()
def layer_states(model: nn.Module, cut: str, inputs: Any, *, batch_size: int | None = 512) -> torch.Tensor:
    """The states of ``model`` at ``cut`` for ``inputs``, computed without gradients.

    The model's train/eval mode is left as it is (call ``model.eval()`` first for BatchNorm and dropout
    at inference).

    Parameters
    ----------
    model : torch.nn.Module
    cut : str
        One of :func:`cut_names` of ``model``.
    inputs : torch.Tensor or mapping
        A batch of inputs (a tensor is run in chunks of ``batch_size`` rows; a mapping at once).
    batch_size : int or None, default 512

    Returns
    -------
    torch.Tensor
        ``(n, c, h, w)`` for a convolutional feature map, ``(n, tokens, d)`` for token states, ``(n, d)``
        for vectors.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> layer_states(model, "1", torch.randn(5, 3)).shape
    torch.Size([5, 4])
    """
    point = resolve_cut(model, cut)
    return torch.cat([run_front(model, point, chunk) for chunk in _batches(inputs, batch_size)])
