"""Recomputing batch-norm statistics after merging (the reset step of REPAIR, Jordan et al., ICLR 2023).

Averaged weights no longer produce the activations the averaged running statistics describe: the
variance of the merged units shrinks ("variance collapse"). :func:`reset_batchnorm` runs calibration
batches through a copy of the model in training mode and replaces every batch norm's running mean and
variance with the statistics of those batches.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["reset_batchnorm"]

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


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
