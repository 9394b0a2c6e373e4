"""Repairing the statistics of merged units (REPAIR, Jordan et al., ICLR 2023).

Averaged weights no longer produce the activations the averaged running statistics describe: the
variance of the merged units shrinks ("variance collapse"). Two fixes:

* :func:`reset_batchnorm` runs calibration batches through a copy of the model in training mode and
  replaces every batch norm's running mean and variance with the statistics of those batches.
* :func:`repair` rescales every unit of the merged model so that its mean and standard deviation on
  calibration batches equal the interpolation of the endpoints' (REPAIR's full correction); it also
  applies to networks without batch norm.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from latentalign.merge.checks import check_same_architecture, check_same_device
from latentalign.merge.spec import state_dict_of

__all__ = ["reset_batchnorm", "repair"]

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_REPAIRABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def reset_batchnorm(
    model: nn.Module, loader: torch.Tensor | Iterable[object], *, max_batches: int | None = None
) -> nn.Module:
    """A copy of ``model`` whose batch-norm running statistics are those of the calibration batches.

    Every ``BatchNorm{1,2,3}d`` layer forgets its running mean and variance and accumulates an exact
    (cumulative, ``momentum=None``) average over the batches of ``loader``; the weights are not
    changed. The copy is returned in eval mode, with each layer's momentum as it was.

    Parameters
    ----------
    model : nn.Module
        Not modified.
    loader : Tensor or iterable of Tensor or of (Tensor, target)
        Calibration inputs (moved to the model's device).
    max_batches : int, optional
        Stop after this many batches.

    Returns
    -------
    nn.Module
        A new model of the same class.

    Raises
    ------
    ValueError
        The model has no batch-norm layer, or ``loader`` yields no batch.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.BatchNorm1d(2))
    >>> x = torch.tensor([[0.0, 10.0], [2.0, 14.0]])
    >>> reset_batchnorm(model, x)[0].running_mean
    tensor([ 1., 12.])
    """
    new = copy.deepcopy(model)
    norms = [m for m in new.modules() if isinstance(m, _BATCHNORMS)]
    if not norms:
        raise ValueError(
            f"model ({type(model).__name__}) has no BatchNorm layer to reset; reset_batchnorm applies to models with "
            "BatchNorm1d/2d/3d layers."
        )
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    parameter = next(iter(new.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    batches = [loader] if torch.is_tensor(loader) else loader
    new.train()
    seen = 0
    with torch.no_grad():
        for batch in batches:
            if max_batches is not None and seen >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not torch.is_tensor(x):
                raise TypeError(f"loader must yield tensors or (tensor, target) pairs; received {type(x).__name__}.")
            new(x.to(device))
            seen += 1
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    new.eval()
    if not seen:
        raise ValueError("loader yielded no batch; pass at least one calibration batch.")
    return new


def _unit_axis(module: nn.Module) -> int:
    return -1 if isinstance(module, nn.Linear) else 1


def _mean_var(output: torch.Tensor, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-unit mean and (population) variance, in float64, of a layer's output over samples and positions."""
    units = output.detach().movedim(_unit_axis(module), -1)
    flat = units.reshape(-1, units.shape[-1]).double()
    mean = flat.mean(0)
    return mean, (flat - mean).pow(2).mean(0)


def _calibration(loader: torch.Tensor | Iterable[object], device: torch.device) -> torch.Tensor:
    batches = []
    for batch in [loader] if torch.is_tensor(loader) else loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not torch.is_tensor(x):
            raise TypeError(f"loader must yield tensors or (tensor, target) pairs; received {type(x).__name__}.")
        batches.append(x.to(device))
    if not batches:
        raise ValueError("loader yielded no batch; pass at least one calibration batch.")
    return torch.cat(batches)


@torch.no_grad()
def _run_hooked(model: nn.Module, names: Sequence[str], x: torch.Tensor, hook: Callable[..., Any]) -> None:
    """Run ``x`` through ``model`` in eval mode with ``hook(name, module, output)`` on the modules ``names``."""
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}

    def wrap(name: str):  # noqa: ANN202 - torch hook signature
        def forward_hook(module: nn.Module, _args: object, output: torch.Tensor) -> Any:
            calls[name] = calls.get(name, 0) + 1
            if calls[name] > 1:
                raise ValueError(
                    f"layer {name!r} runs more than once in a forward pass; REPAIR needs each rescaled layer to run "
                    "once (pass other layers)."
                )
            return hook(name, module, output)

        return forward_hook

    handles = [modules[name].register_forward_hook(wrap(name)) for name in names]
    mode = model.training
    model.eval()
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(mode)


def _default_layers(model: nn.Module) -> list[str]:
    norms = [name for name, m in model.named_modules() if isinstance(m, _BATCHNORMS)]
    if norms:
        return norms
    layers = [name for name, m in model.named_modules() if isinstance(m, _REPAIRABLE)]
    return layers[:-1]  # the last one is the output layer: its units are the predictions


def _interpolation_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    coef = np.asarray(weights, dtype=np.float64).reshape(-1)
    if coef.size != n or not np.all(np.isfinite(coef)) or np.any(coef < 0) or coef.sum() <= 0:
        raise ValueError(
            f"weights must be {n} finite non-negative numbers (one per endpoint) with a positive sum; received "
            f"{list(weights)}."
        )
    return coef / coef.sum()


def repair(
    model: nn.Module,
    endpoints: Sequence[nn.Module],
    loader: torch.Tensor | Iterable[object],
    *,
    weights: Sequence[float] | None = None,
    layers: Sequence[str] | None = None,
    eps: float = 1e-5,
) -> nn.Module:
    """A copy of a merged model whose units have the interpolated statistics of the endpoints (REPAIR).

    For every unit of every layer in ``layers``, the mean and standard deviation of its output on the
    calibration batches are measured in each endpoint; the target is their weighted average with
    ``weights`` (the interpolation coefficients of the merge). The unit of the merged model is then
    rescaled and shifted, ``h' = (h - mean) * target_std / sqrt(var + eps) + target_mean``, and the
    affine map is folded into the layer's weight and bias (a batch norm's ``weight`` and ``bias``).
    The calibration batches run as one batch; in one forward pass each layer is measured and
    corrected before the layers after it see its output, so the calibration statistics of the
    returned model match the targets exactly (up to ``eps``).

    Parameters
    ----------
    model : nn.Module
        The merged or interpolated model (for example from :func:`~latentalign.merge.merging.merge`
        or :func:`~latentalign.merge.interpolation.interpolate`); not modified.
    endpoints : list of nn.Module
        The models that were merged, with their units already matched to one order, of the same
        architecture as ``model``.
    loader : Tensor or iterable of Tensor or of (Tensor, target)
        Calibration inputs (moved to the model's device and concatenated: keep them a few hundred
        samples).
    weights : list of float, optional
        One non-negative interpolation coefficient per endpoint (normalized to sum to 1; default
        equal), e.g. ``[1 - alpha, alpha]`` for the point ``alpha`` of a linear path.
    layers : list of str, optional
        Names of the ``Linear``, ``Conv`` or ``BatchNorm`` modules whose output units are corrected.
        Default: every batch norm if the model has one, else every ``Linear`` and ``Conv`` module
        except the last (the output layer).
    eps : float, default 1e-5
        Added to the merged unit's variance before dividing (a unit with no variance is shifted only).

    Returns
    -------
    nn.Module
        A new model of the same class, in eval mode.

    Raises
    ------
    ValueError
        ``endpoints`` is empty, ``weights`` is not one non-negative number per endpoint, a layer is
        missing, is not a Linear, Conv or affine BatchNorm module, or has no bias to fold the shift
        into, or ``loader`` yields no batch.

    Examples
    --------
    Two one-layer endpoints whose unit has standard deviation 1 and 3; their average has 2 only when
    the two units are perfectly correlated. Here they are not, and REPAIR restores the average:

    >>> from latentalign.merge.merging import merge
    >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> with torch.no_grad():
    ...     _ = a.weight.copy_(torch.tensor([[1.0, 0.0]])), b.weight.copy_(torch.tensor([[0.0, 3.0]]))
    ...     _ = a.bias.zero_(), b.bias.zero_()
    >>> x = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    >>> merged = merge([a, b])
    >>> round(float(merged(x).detach().std(unbiased=False)), 3)
    1.581
    >>> round(float(repair(merged, [a, b], x, layers=[""])(x).detach().std(unbiased=False)), 3)
    2.0
    """
    if isinstance(endpoints, nn.Module) or not endpoints:
        raise ValueError("endpoints must be a non-empty list of the models that were merged.")
    coef = _interpolation_weights(weights, len(endpoints))
    if not (eps >= 0 and np.isfinite(eps)):
        raise ValueError(f"eps must be a finite number >= 0; received {eps}.")
    states = [state_dict_of(m) for m in (model, *endpoints)]
    labels = ["model"] + [f"endpoints[{i}]" for i in range(len(endpoints))]
    check_same_architecture(states, labels)
    check_same_device(states, labels)
    new = copy.deepcopy(model).eval()
    names = list(layers) if layers is not None else _default_layers(new)
    modules = dict(new.named_modules())
    for name in names:
        module = modules.get(name)
        if module is None:
            raise ValueError(
                f"layers names {name!r}, which is not a module of the model; pass names from named_modules()."
            )
        if not isinstance(module, _REPAIRABLE + _BATCHNORMS) or getattr(module, "bias", None) is None:
            raise ValueError(
                f"layer {name!r} ({type(module).__name__}) cannot be rescaled: REPAIR folds the correction into the "
                "weight and bias of a Linear or Conv layer with a bias, or of an affine BatchNorm; pass other layers."
            )
    if not names:
        return new
    parameter = next(iter(new.parameters()), None)
    x = _calibration(loader, parameter.device if parameter is not None else torch.device("cpu"))
    goal_mean: dict[str, torch.Tensor] = {}
    goal_std: dict[str, torch.Tensor] = {}
    for c, endpoint in zip(coef.tolist(), endpoints):

        def record(name: str, module: nn.Module, output: torch.Tensor, c: float = c) -> None:
            mean, var = _mean_var(output, module)
            goal_mean[name] = goal_mean.get(name, 0.0) + c * mean
            goal_std[name] = goal_std.get(name, 0.0) + c * var.sqrt()

        _run_hooked(endpoint, names, x, record)
    corrections: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def correct(name: str, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        # layers run in forward order, so each is measured after the ones feeding it were corrected
        mean, var = _mean_var(output, module)
        scale = goal_std[name] / (var + eps).sqrt()
        shift = goal_mean[name] - mean * scale
        corrections[name] = (scale, shift)
        shape = [1] * output.dim()
        shape[_unit_axis(module)] = -1
        return output * scale.reshape(shape).to(output.dtype) + shift.reshape(shape).to(output.dtype)

    _run_hooked(new, names, x, correct)
    for name, (scale, shift) in corrections.items():
        module = modules[name]
        with torch.no_grad():
            module.weight.mul_(scale.reshape((-1,) + (1,) * (module.weight.dim() - 1)).to(module.weight.dtype))
            module.bias.mul_(scale.to(module.bias.dtype)).add_(shift.to(module.bias.dtype))
    return new
