"""A map from a few known pairs plus unpaired rows of *different* items, by soft (entropic OT) matching.

When the unpaired rows of the two sides are different items (two corpora, no counterpart guaranteed),
hard matches (mutual nearest neighbours) pair each row with a near-synonym at best, and a map refitted
on them drifts. :func:`transport_refined_map` instead sends every free source row to the *barycentre*
of the target rows an entropic OT coupling spreads it over: the coupling matches the two clouds as
distributions, which they share even without shared items, and the barycentres average the error of
any single neighbour away. The map is then fitted on the known pairs plus those soft targets.

Measured on WordNet lemmas with 50 pairs and 725 disjoint free rows per side (MiniLM-L6 -> MPNet):
the map of the pairs alone retrieved 0.16-0.17 of held-out words (R@1), the relative start below
0.36-0.37; further rounds neither helped nor hurt much, and a round from the pairs' map helps only when
that map is already good (MiniLM-L6 -> L3, identity completion: 0.81 -> 0.84, then down again).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from latentalign._validation import check_choice, check_number
from latentalign.exceptions import ConvergenceWarning
from latentalign.functional.ot import barycentric_projection_tensors, ot_plan_tensors
from latentalign.functional.ot_rounds import FitMap, Transform, check_pairs

__all__ = ["TRANSPORT_STARTS", "relative_transport_start", "transport_refined_map", "transport_rounds"]

TRANSPORT_STARTS = ("relative", "pairs")


def _relative(X: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    unit = torch.nn.functional.normalize
    return unit(X, dim=1) @ unit(anchors, dim=1).T


def transport_refined_map(
    X: torch.Tensor,
    Y: torch.Tensor,
    fit_map: FitMap,
    *,
    pairs: Any,
    rows_x: torch.Tensor,
    rows_y: torch.Tensor,
    start: str = "relative",
    reg: float = 0.1,
    n_rounds: int = 1,
    start_reg: float | None = None,
    start_map: tuple[Transform, Any] | None = None,
) -> tuple[Transform, Any]:
    """Fit a map on known pairs plus the entropic-OT barycentres of unpaired rows.

    1. *start*: ``"relative"`` couples the free rows by the cosine cost between their relative
       representations (cosines to the known pairs, comparable across spaces without any map);
       ``"pairs"`` starts from the map of the pairs alone and goes straight to the rounds.
    2. *rounds* (``n_rounds``): couple the mapped free source rows with the free target rows (cosine
       cost, Sinkhorn with ``reg`` relative to the mean cost), send each source row to its barycentric
       target, refit the map on the pairs plus those targets.

    Parameters
    ----------
    X : torch.Tensor of shape (n_x, d_x)
    Y : torch.Tensor of shape (n_y, d_y)
        Validated rows of one dtype and device.
    fit_map : callable
        ``fit_map(X_rows, Y_rows) -> (transform, fitted)``.
    pairs : array of shape (m, 2)
        Known pairs ``(index into X, index into Y)``, at least 2.
    rows_x, rows_y : torch.Tensor of int64
        The free rows of each side (at least 2 each); they need not hold the same items.
    start : {"relative", "pairs"}, default "relative"
    reg : float, default 0.1
        Entropic regularisation relative to the mean cost. Large on purpose: a blurred coupling
        averages over near neighbours, which is what rows without a counterpart need.
    n_rounds : int, default 1
        Rounds after the start.
    start_reg : float, optional
        Entropic regularisation of the relative start's coupling, relative to its mean cost (default:
        ``reg``). Relative representations are noisier than mapped rows; a blurrier start can help.
    start_map : (transform, fitted), optional
        The map the rounds start from, when the caller already has it: with ``start="pairs"`` the map
        of the pairs alone fitted with ``fit_map``, with ``start="relative"`` that of
        :func:`relative_transport_start` at blur ``start_reg`` (default: fitted here). Routes that share
        a start then fit it once.

    Returns
    -------
    transform : callable
        Applies the map to source rows.
    fitted : Any
        What ``fit_map`` returned last.

    Examples
    --------
    Ten pairs and two *different* samples of one skewed cloud, rotated:

    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> Q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=gen))
    >>> scale = torch.linspace(3.0, 0.5, 6, dtype=torch.float64)
    >>> X = torch.randn(610, 6, dtype=torch.float64, generator=gen) * scale
    >>> Y = torch.cat([X[:10], torch.randn(600, 6, dtype=torch.float64, generator=gen) * scale]) @ Q
    >>> def fit_map(A, B):
    ...     U, _, Vt = torch.linalg.svd(A.T @ B)
    ...     return (lambda Z: Z @ (U @ Vt)), U @ Vt
    >>> pairs = torch.stack([torch.arange(10), torch.arange(10)], 1)
    >>> free = torch.arange(10, 610)
    >>> _, W = transport_refined_map(X, Y, fit_map, pairs=pairs, rows_x=free, rows_y=free)
    >>> bool(torch.linalg.matrix_norm(W - Q) < 0.5)
    True
    """
    check_choice(start, "start", TRANSPORT_STARTS)
    check_number(n_rounds, "n_rounds", integer=True, low=0)
    if start_reg is not None:
        check_number(start_reg, "start_reg", low=0.0, low_inclusive=False)
    P, fx, fy = _checked(X, Y, pairs, rows_x, rows_y, reg)
    if start_map is None and start == "relative":
        start_map = _relative_start(X, Y, fit_map, P, fx, fy, reg if start_reg is None else start_reg)
    elif start_map is None:
        start_map = fit_map(X[P[:, 0]], Y[P[:, 1]])
    return ([start_map] + _rounds(X, Y, fit_map, start_map, P, fx, fy, reg, int(n_rounds)))[-1]


def relative_transport_start(
    X: torch.Tensor,
    Y: torch.Tensor,
    fit_map: FitMap,
    *,
    pairs: Any,
    rows_x: torch.Tensor,
    rows_y: torch.Tensor,
    reg: float = 0.1,
) -> tuple[Transform, Any]:
    """The relative start of :func:`transport_refined_map`, which routes with one start can share.

    A map fitted on the pairs plus the free rows' barycentres under an entropic OT coupling of their
    relative representations: a row's cosines to the known pairs' rows of its own space, comparable
    across the two spaces without any map.

    Parameters
    ----------
    X, Y, fit_map, pairs, rows_x, rows_y
        As in :func:`transport_refined_map`.
    reg : float, default 0.1
        The coupling's entropic regularisation, relative to its mean cost.

    Returns
    -------
    (transform, fitted)
        What ``fit_map`` returned.

    Examples
    --------
    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> X = torch.randn(60, 4, dtype=torch.float64, generator=gen)
    >>> def fit_map(A, B):
    ...     U, _, Vt = torch.linalg.svd(A.T @ B)
    ...     return (lambda Z: Z @ (U @ Vt)), U @ Vt
    >>> pairs = torch.stack([torch.arange(8), torch.arange(8)], 1)
    >>> _, W = relative_transport_start(X, X, fit_map, pairs=pairs, rows_x=torch.arange(8, 60), rows_y=torch.arange(8, 60))
    >>> tuple(W.shape)
    (4, 4)
    """
    return _relative_start(X, Y, fit_map, *_checked(X, Y, pairs, rows_x, rows_y, reg), reg)


def transport_rounds(
    X: torch.Tensor,
    Y: torch.Tensor,
    fit_map: FitMap,
    start_map: tuple[Transform, Any],
    *,
    pairs: Any,
    rows_x: torch.Tensor,
    rows_y: torch.Tensor,
    reg: float = 0.1,
    n_rounds: int = 1,
) -> list[tuple[Transform, Any]]:
    """The soft-matching rounds of :func:`transport_refined_map` from ``start_map``: the map after each.

    Each round couples the mapped free source rows with the free target rows (cosine cost, Sinkhorn
    with ``reg`` relative to the mean cost) and refits the map on the pairs plus each source row's
    barycentric target. Round ``k`` does not depend on how many follow, so the ``k``-th map is the map
    of ``transport_refined_map(..., n_rounds=k)`` from the same start: a route of fewer rounds can be
    read off a longer one.

    Parameters
    ----------
    X, Y, fit_map, pairs, rows_x, rows_y
        As in :func:`transport_refined_map`.
    start_map : (transform, fitted)
        The map the first round starts from (e.g. :func:`relative_transport_start`'s).
    reg : float, default 0.1
        Each coupling's entropic regularisation, relative to its mean cost.
    n_rounds : int, default 1
        Rounds, at least 1.

    Returns
    -------
    list of (transform, fitted)
        What ``fit_map`` returned after each round, the first round's first.

    Examples
    --------
    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> X = torch.randn(60, 4, dtype=torch.float64, generator=gen)
    >>> def fit_map(A, B):
    ...     U, _, Vt = torch.linalg.svd(A.T @ B)
    ...     return (lambda Z: Z @ (U @ Vt)), U @ Vt
    >>> pairs = torch.stack([torch.arange(8), torch.arange(8)], 1)
    >>> free = torch.arange(8, 60)
    >>> start = fit_map(X[:8], X[:8])
    >>> maps = transport_rounds(X, X, fit_map, start, pairs=pairs, rows_x=free, rows_y=free, n_rounds=3)
    >>> len(maps)
    3
    """
    check_number(n_rounds, "n_rounds", integer=True, low=1)
    return _rounds(X, Y, fit_map, start_map, *_checked(X, Y, pairs, rows_x, rows_y, reg), reg, int(n_rounds))


def _relative_start(
    X: torch.Tensor, Y: torch.Tensor, fit_map: FitMap, P: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor, reg: float
) -> tuple[Transform, Any]:
    targets = _soft_targets(_relative(X[fx], X[P[:, 0]]), _relative(Y[fy], Y[P[:, 1]]), Y[fy], reg)
    return _fit_on_targets(X, Y, fit_map, P, fx, targets)


def _rounds(
    X: torch.Tensor,
    Y: torch.Tensor,
    fit_map: FitMap,
    start_map: tuple[Transform, Any],
    P: torch.Tensor,
    fx: torch.Tensor,
    fy: torch.Tensor,
    reg: float,
    n_rounds: int,
) -> list[tuple[Transform, Any]]:
    maps = []
    transform = start_map[0]
    for _ in range(n_rounds):
        maps.append(_fit_on_targets(X, Y, fit_map, P, fx, _soft_targets(transform(X[fx]), Y[fy], Y[fy], reg)))
        transform = maps[-1][0]
    return maps


def _fit_on_targets(
    X: torch.Tensor, Y: torch.Tensor, fit_map: FitMap, P: torch.Tensor, fx: torch.Tensor, targets: torch.Tensor
) -> tuple[Transform, Any]:
    """The map fitted on the known pairs plus each free source row sent to its soft target."""
    return fit_map(torch.cat([X[P[:, 0]], X[fx]]), torch.cat([Y[P[:, 1]], targets]))


def _checked(
    X: torch.Tensor, Y: torch.Tensor, pairs: Any, rows_x: torch.Tensor, rows_y: torch.Tensor, reg: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    check_number(reg, "reg", low=0.0, low_inclusive=False)
    P = check_pairs(pairs, X.shape[0], Y.shape[0]).to(X.device)
    fx, fy = rows_x.to(X.device), rows_y.to(X.device)
    if fx.numel() < 2 or fy.numel() < 2:
        raise ValueError(
            f"rows_x and rows_y must name at least 2 free rows each, got {fx.numel()} and {fy.numel()}. "
            "Without free rows, fit the map on the pairs alone."
        )
    return P, fx, fy


def _soft_targets(A: torch.Tensor, B: torch.Tensor, targets: torch.Tensor, blur: float) -> torch.Tensor:
    """Each row of ``A``'s barycentre of ``targets`` under a blurred cosine-cost coupling of ``A`` with ``B``."""
    # The rounds only need barycentres of a blurred coupling, not a converged one.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plan = ot_plan_tensors(A, B, method="sinkhorn", reg=float(blur), metric="cosine", max_iter=2000, tol=1e-6)
    return barycentric_projection_tensors(plan.to(targets.dtype), targets)
