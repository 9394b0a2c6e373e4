"""The linear path between two models and the barrier along it (linear mode connectivity).

:func:`interpolate` yields the models ``(1 - alpha) * A + alpha * B``; :func:`barrier` evaluates a
function along that path and returns the largest gap between the curve and the straight line joining
its endpoints (Frankle et al. 2020; Entezari et al. 2022; Ainsworth et al. 2023): 0 for two models in
one linearly connected basin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from latentalign.merge.checks import check_same_architecture, check_same_device
from latentalign.merge.merging import as_model
from latentalign.merge.spec import state_dict_of

__all__ = ["interpolate", "barrier", "barrier_from_curve", "BarrierResult"]


def _alphas(alphas: Sequence[float] | np.ndarray | int) -> np.ndarray:
    if isinstance(alphas, (int, np.integer)):
        grid = np.linspace(0.0, 1.0, int(alphas))
    else:
        grid = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if grid.size < 2 or not np.all(np.isfinite(grid)):
        raise ValueError(f"alphas must be at least 2 finite values (or a number of points >= 2); received {alphas!r}.")
    return grid


def interpolate(
    model_a: nn.Module, model_b: nn.Module, alphas: Sequence[float] | np.ndarray | int = 11
) -> Iterator[tuple[float, nn.Module]]:
    """Yield ``(alpha, model)`` with ``model = (1 - alpha) * A + alpha * B`` (new models of A's class).

    Batch-norm running statistics are interpolated too; recompute them with
    :func:`~latentalign.merge.repair.reset_batchnorm` for a fair evaluation of the midpoints.

    Parameters
    ----------
    model_a, model_b : nn.Module
        One architecture, one device.
    alphas : sequence of float or int, default 11
        Positions on the path (0 is A, 1 is B; values outside [0, 1] extrapolate), or a number of
        evenly spaced points from 0 to 1.

    Examples
    --------
    >>> a, b = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = a.weight.fill_(0.0), b.weight.fill_(4.0)
    >>> [(alpha, m.weight.item()) for alpha, m in interpolate(a, b, 3)]
    [(0.0, 0.0), (0.5, 2.0), (1.0, 4.0)]
    """
    grid = _alphas(alphas)
    state_a, state_b = state_dict_of(model_a), state_dict_of(model_b)
    check_same_architecture([state_a, state_b], ["model_a", "model_b"])
    check_same_device([state_a, state_b], ["model_a", "model_b"])
    for alpha in grid:
        # written out rather than through merge(): alphas outside [0, 1] extrapolate (negative weights)
        blended = {
            k: ((1 - alpha) * v.double() + alpha * state_b[k].double()).to(v.dtype)
            if v.is_floating_point()
            else v.clone()
            for k, v in state_a.items()
        }
        yield float(alpha), as_model(model_a, blended)


@dataclass(frozen=True)
class BarrierResult:
    """A function evaluated along the linear path between two models.

    Attributes
    ----------
    alphas : ndarray
        Positions on the path.
    values : ndarray
        ``eval_fn`` at each position.
    barrier : float
        Loss: ``max(values - line)``; accuracy (``higher_is_better=True``): ``max(line - values)``,
        where ``line`` joins the values at the endpoints.
    """

    alphas: np.ndarray
    values: np.ndarray
    barrier: float


def barrier(
    model_a: nn.Module,
    model_b: nn.Module,
    eval_fn: Callable[[nn.Module], float],
    alphas: Sequence[float] | np.ndarray | int = 11,
    *,
    higher_is_better: bool = False,
) -> BarrierResult:
    """Loss (or accuracy) barrier on the linear path from A to B.

    Parameters
    ----------
    model_a, model_b : nn.Module
    eval_fn : callable
        Model -> float (a loss, or an accuracy with ``higher_is_better=True``).
    alphas : sequence of float or int, default 11
        Must include 0 and 1 (the endpoints define the straight line), or a number of points.
    higher_is_better : bool, default False

    Returns
    -------
    BarrierResult

    Examples
    --------
    >>> model = torch.nn.Linear(3, 1)
    >>> x = torch.randn(8, 3)
    >>> loss = lambda m: float(m(x).pow(2).mean())
    >>> barrier(model, model, loss, 5).barrier
    0.0
    """
    grid = _alphas(alphas)
    if not (np.any(grid == 0.0) and np.any(grid == 1.0)):
        raise ValueError(f"alphas must include 0 and 1 (the endpoints of the path); received {grid.tolist()}.")
    values = []
    with torch.no_grad():
        for _, model in interpolate(model_a, model_b, grid):
            value = float(eval_fn(model))
            if not np.isfinite(value):
                raise ValueError(
                    f"eval_fn returned {value}; it must return a finite float for every model on the path."
                )
            values.append(value)
    curve = np.asarray(values)
    return BarrierResult(grid, curve, barrier_from_curve(grid, curve, higher_is_better=higher_is_better))


def barrier_from_curve(
    alphas: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, *, higher_is_better: bool = False
) -> float:
    """The barrier of a curve already evaluated along the path (``alphas`` must include 0 and 1).

    Examples
    --------
    >>> barrier_from_curve([0.0, 0.5, 1.0], [1.0, 3.0, 2.0])
    1.5
    >>> round(barrier_from_curve([0.0, 0.5, 1.0], [0.9, 0.5, 0.8], higher_is_better=True), 6)
    0.35
    """
    grid, curve = np.asarray(alphas, dtype=np.float64).reshape(-1), np.asarray(values, dtype=np.float64).reshape(-1)
    if grid.shape != curve.shape or not (np.any(grid == 0.0) and np.any(grid == 1.0)):
        raise ValueError(
            f"alphas must include 0 and 1 (the endpoints of the path) and match values in length; received "
            f"{grid.size} alphas {grid.tolist()[:6]} and {curve.size} values."
        )
    start, end = curve[grid == 0.0][0], curve[grid == 1.0][0]
    line = start + grid * (end - start)
    gap = line - curve if higher_is_better else curve - line
    return float(max(gap.max(), 0.0))
