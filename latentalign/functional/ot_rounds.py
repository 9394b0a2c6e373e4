"""Wasserstein-Procrustes rounds: couple unpaired rows with OT, fit a map on the coupling, repeat.

:func:`ot_alignment_rounds` is the loop behind :class:`~latentalign.align.ot.OTAligner`, as a pure
function: tensors in, an :class:`OTRounds` record out. Each round

1. *couples* the (mapped) free source rows with the free target rows -- exact EMD, entropic Sinkhorn,
   or fused Gromov-Wasserstein (:mod:`latentalign.functional.ot`);
2. sends each coupled source row to its barycentric target and *refits the map* on those targets plus
   the known pairs;
3. *re-matches*: each coupled row's match is the target row carrying most of its mass; the loop stops
   when no match changes.

The map itself is fitted by a callable the caller passes in (``fit_map``), so this module knows nothing
of the estimators that fit Procrustes or affine maps.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from latentalign._validation import check_choice, check_number
from latentalign.exceptions import ConvergenceWarning
from latentalign.functional.ot import (
    METRICS,
    barycentric_projection_tensors,
    cost_matrix_tensors,
    gw_plan_tensors,
    ot_plan_tensors,
    sinkhorn_projection_tensors,
)

__all__ = [
    "OT_ROUND_METHODS",
    "OT_ROUND_INITS",
    "MIN_MAP_ROWS",
    "FitMap",
    "OnRound",
    "OTRounds",
    "check_ot_rounds_options",
    "linear_part",
    "relative_change",
    "check_pairs",
    "ot_alignment_rounds",
]

OT_ROUND_METHODS = ("sinkhorn", "emd", "gw", "self-learning")
#: Sinkhorn settings inside the rounds when the caller sets none: a round only needs a coupling good
#: enough for the barycentric targets of one map fit, not one converged to 1e-8.
ROUND_SINKHORN_TOL = 1e-4
ROUND_SINKHORN_MAX_ITER = 2000
OT_ROUND_INITS = ("auto", "gw", "relative", "identity")
# Fewest rows a map can be fitted on: a centred fit needs two distinct rows.
MIN_MAP_ROWS = 2

Transform = Callable[[torch.Tensor], torch.Tensor]
#: ``fit_map(X_rows, Y_rows) -> (transform, fitted)``: fits a map sending ``X_rows`` onto ``Y_rows``
#: (paired row by row) and returns the function that applies it plus the fitted object to keep.
FitMap = Callable[[torch.Tensor, torch.Tensor], tuple[Transform, Any]]
#: ``on_round(record)``: called after each round with that round's history entry (e.g. a progress bar).
OnRound = Callable[[dict[str, Any]], None]


@dataclass
class OTRounds:
    """What :func:`ot_alignment_rounds` found.

    Attributes
    ----------
    map : Any
        The fitted object ``fit_map`` returned last (the final map).
    transform : callable
        Applies the final map to rows of the source space.
    matches : torch.Tensor of shape (n_x,), int64, on the CPU
        For each source row: its paired target row (known pairs), the target row carrying most of its
        mass in the last coupling, or -1 (rows left out by sampling).
    history : list of dict
        One entry per round (``round`` 0 is the start): ``step``, ``changed`` (fraction of coupled rows
        whose match changed since the previous coupling; None when there is none to compare),
        ``residual`` (``1 - R^2`` of that round's map fit), ``n_coupled``.
    converged : bool
        Whether the matches stopped changing within ``n_iter`` rounds.
    n_iter : int
        Rounds run after the start.
    """

    map: Any
    transform: Transform
    matches: torch.Tensor
    history: list[dict[str, Any]]
    converged: bool
    n_iter: int


def relative_change(W_prev: torch.Tensor | None, W: torch.Tensor) -> float:
    """Relative change of a map between rounds, ``||W - W_prev||_F / ||W||_F`` (inf without ``W_prev``).

    Examples
    --------
    >>> import torch
    >>> relative_change(torch.eye(2), torch.eye(2)), relative_change(None, torch.eye(2))
    (0.0, inf)
    """
    if W_prev is None:
        return math.inf
    norm = float(torch.linalg.matrix_norm(W))
    return float(torch.linalg.matrix_norm(W - W_prev)) / norm if norm > 0 else math.inf


def linear_part(transform: Transform, dim: int, like: torch.Tensor) -> torch.Tensor:
    """The matrix ``W`` of an affine ``transform(x) = x W + b``, in float64, from ``dim + 1`` probe rows.

    Examples
    --------
    >>> import torch
    >>> W = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    >>> linear_part(lambda Z: Z @ W + 1.0, 2, W).tolist()
    [[0.0, 2.0], [1.0, 0.0]]
    """
    probes = torch.cat([torch.zeros(1, dim), torch.eye(dim)]).to(dtype=like.dtype, device=like.device)
    out = transform(probes).to(torch.float64)
    return out[1:] - out[:1]


def check_ot_rounds_options(
    *,
    method: str,
    reg: float,
    n_iter: int,
    init: str,
    metric: str,
    alpha: float,
    max_samples: int | None,
    gw_samples: int,
    max_iter: int | None,
    tol: float | None,
    batch_size: int | None,
    sample: str,
    random_state: int,
    map_tol: float = 1e-3,
    csls_k: int = 10,
    confidence: float | None = 0.1,
) -> None:
    """Validate the options of :func:`ot_alignment_rounds`; raise ``ValueError``/``TypeError`` naming the bad one.

    Examples
    --------
    >>> check_ot_rounds_options(
    ...     method="emd", reg=0.0, n_iter=5, init="auto", metric="sqeuclidean", alpha=0.5, max_samples=None,
    ...     gw_samples=2000, max_iter=None, tol=None, batch_size=None, sample="random", random_state=0)
    """
    check_choice(method, "method", OT_ROUND_METHODS)
    check_number(reg, "reg", low=0.0)
    if method == "sinkhorn" and reg == 0:
        raise ValueError("method='sinkhorn' needs reg > 0, got reg=0. Use method='emd' for exact OT.")
    check_number(n_iter, "n_iter", integer=True, low=0)
    check_choice(init, "init", OT_ROUND_INITS + (("pairs",) if method == "self-learning" else ()))
    check_choice(metric, "metric", METRICS)
    check_number(alpha, "alpha", low=0.0, high=1.0)
    check_number(max_samples, "max_samples", integer=True, low=2, allow_none=True)
    check_number(gw_samples, "gw_samples", integer=True, low=2)
    check_number(max_iter, "max_iter", integer=True, low=1, allow_none=True)
    check_number(tol, "tol", low=0.0, low_inclusive=False, allow_none=True)
    check_number(batch_size, "batch_size", integer=True, low=1, allow_none=True)
    if batch_size is not None and method != "sinkhorn":
        raise ValueError(
            f"batch_size is only used by method='sinkhorn' (POT's lazy solver), got method={method!r}. "
            "Leave batch_size=None, or cap the rows with max_samples/gw_samples."
        )
    check_choice(sample, "sample", ("random", "first"))
    check_number(random_state, "random_state", integer=True)
    check_number(map_tol, "map_tol", low=0.0, low_inclusive=False)
    check_number(csls_k, "csls_k", integer=True, low=1)
    check_number(confidence, "confidence", low=0.0, high=1.0, allow_none=True)


def check_pairs(pairs: Any, n_x: int, n_y: int) -> torch.Tensor:
    """Validate known pairs; return them as an ``(m, 2)`` int64 tensor (``(0, 2)`` for ``None``).

    Examples
    --------
    >>> check_pairs([[0, 1], [2, 0]], 3, 2).tolist()
    [[0, 1], [2, 0]]
    """
    if pairs is None:
        return torch.zeros((0, 2), dtype=torch.long)
    if isinstance(pairs, torch.Tensor):
        arr = pairs.detach().cpu().numpy()
    else:
        arr = np.asarray(pairs)
    if arr.size == 0:
        return torch.zeros((0, 2), dtype=torch.long)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(
            f"pairs must be an integer array of shape (m, 2) (row k: index into X, index into Y), got shape "
            f"{arr.shape}. Stack the two index columns, e.g. np.stack([ix, iy], axis=1)."
        )
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"pairs must hold integer row indices, got dtype {arr.dtype}.")
    for col, (name, n) in enumerate((("X", n_x), ("Y", n_y))):
        bad = (arr[:, col] < 0) | (arr[:, col] >= n)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"pairs[{k}, {col}] = {int(arr[k, col])} is not a row of {name}, which has {n} rows "
                f"(valid indices 0..{n - 1})."
            )
    return torch.from_numpy(arr.astype(np.int64))


def _sample(rows: torch.Tensor, cap: int | None, gen: torch.Generator, how: str) -> torch.Tensor:
    if cap is None or rows.numel() <= cap:
        return rows
    if how == "first":
        return rows[:cap]
    pick = torch.randperm(rows.numel(), generator=gen)[:cap]
    return rows[pick.sort().values]


def _free_rows(n: int, taken: torch.Tensor) -> torch.Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[taken] = False
    return mask.nonzero().reshape(-1)


def _relative(X: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Cosine similarities of the rows of ``X`` to ``anchors``: coordinates that two spaces share."""
    unit = torch.nn.functional.normalize
    return unit(X, dim=1) @ unit(anchors, dim=1).T


def _resolve_init(init: str, n_pairs: int, d_x: int, n_free: int) -> str:
    if init != "auto":
        return init
    # Fewer pairs than dimensions leave a map under-determined: couple the free rows first, by their
    # similarities to the pairs when there are some (pairs still join the fit), else by GW.
    enough = n_pairs > d_x or n_free < 2
    if n_pairs >= MIN_MAP_ROWS and enough:
        return "pairs"
    return "relative" if n_pairs >= 2 and n_free >= 2 else "gw"


def ot_alignment_rounds(
    X: torch.Tensor,
    Y: torch.Tensor,
    fit_map: FitMap,
    *,
    pairs: Any = None,
    method: str = "sinkhorn",
    reg: float = 0.05,
    n_iter: int = 5,
    init: str = "auto",
    metric: str = "sqeuclidean",
    alpha: float = 0.5,
    max_samples: int | None = None,
    gw_samples: int = 2000,
    max_iter: int | None = None,
    tol: float | None = None,
    batch_size: int | None = None,
    sample: str = "random",
    random_state: int = 0,
    map_tol: float = 1e-3,
    csls_k: int = 10,
    confidence: float | None = 0.1,
    label: str = "ot_alignment_rounds",
    on_round: OnRound | None = None,
    candidates: dict[str, tuple[Transform, Any]] | None = None,
    fit_alone: FitMap | None = None,
) -> OTRounds:
    """Align unpaired (or partly paired) rows: alternate an OT coupling and a map fitted on it.

    Parameters
    ----------
    X : torch.Tensor of shape (n_x, d_x)
    Y : torch.Tensor of shape (n_y, d_y)
        Validated rows of one dtype and device (e.g. from :func:`latentalign._validation.check_pair` with
        ``paired=False``), at least 2 each; not paired row by row.
    fit_map : callable
        ``fit_map(X_rows, Y_rows) -> (transform, fitted)``: fits a map sending ``X_rows`` onto ``Y_rows``
        (paired) and returns a function applying it to source rows, and the fitted object to keep.
    pairs : array of shape (m, 2), optional
        Known pairs ``(index into X, index into Y)`` (checked by :func:`check_pairs`), joined to every map
        fit and never coupled.
    method : {"sinkhorn", "emd", "gw"}, default "sinkhorn"
        Coupling of each round (``"gw"``: Gromov-Wasserstein fused with the cost between mapped source
        rows and target rows, weight ``1 - alpha``, once a map exists).
    reg : float, default 0.05
        Entropic regularisation relative to the mean cost (``"sinkhorn"``; ``"gw"`` when > 0).
    n_iter : int, default 5
        Couple-then-map rounds after the start; stops early when no match changes.
    init : {"auto", "gw", "relative", "identity"}, default "auto"
        First map: see :class:`~latentalign.align.ot.OTAligner` (``"auto"`` picks the pairs, the
        relative-representation coupling or the Gromov-Wasserstein coupling).
    metric : {"sqeuclidean", "euclidean", "cosine"}, default "sqeuclidean"
    alpha : float, default 0.5
        Fused-GW weight of the structure term.
    max_samples : int, optional
        Cap on the free rows of each side entering a linear OT round.
    gw_samples : int, default 2000
        Cap on the free rows of each side entering a Gromov-Wasserstein coupling.
    max_iter, tol : optional
        Passed to the OT solver.
    batch_size : int, optional
        ``method="sinkhorn"`` only: POT's lazy Sinkhorn in blocks of this many rows.
    sample : {"random", "first"}, default "random"
        How rows are drawn when a cap applies.
    random_state : int, default 0
        Seed of the row sampling (rows are drawn once, so consecutive rounds couple the same rows).
    label : str, default "ot_alignment_rounds"
        Name used in the :class:`~latentalign.exceptions.ConvergenceWarning` message.
    on_round : callable, optional
        Called after each round (not the start) with that round's history entry, e.g. a
        :class:`latentalign._progress.RoundProgress`; this function shows nothing itself.
    candidates : dict, optional
        ``method="self-learning"`` only: maps fitted without the pairs (name -> ``(transform, fitted)``),
        judged on the known pairs against the self-learning route
        (:func:`~latentalign.functional.self_learning.seeded_self_learning`).
    fit_alone : callable, optional
        ``method="self-learning"`` only: how the route of the pairs alone fits its map (default
        ``fit_map``), e.g. a Procrustes fit shrunk towards the identity, which suits few pairs but not the
        many matches of the rounds.

    Returns
    -------
    OTRounds

    Warns
    -----
    ConvergenceWarning
        When ``n_iter`` rounds end with matches still changing.

    Examples
    --------
    A rotated, shuffled copy of a skewed cloud, matched without any pair; the map is a plain
    least-squares fit here:

    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> X = torch.empty(60, 3, dtype=torch.float64).exponential_(generator=gen)
    >>> Q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=gen))
    >>> perm = torch.randperm(60, generator=gen)
    >>> def fit_map(A, B):
    ...     W = torch.linalg.lstsq(A, B).solution
    ...     return (lambda Z: Z @ W), W
    >>> out = ot_alignment_rounds(X, (X @ Q)[perm], fit_map, method="emd")
    >>> bool((out.matches == perm.argsort()).all()), out.converged, torch.allclose(out.map, Q)
    (True, True, True)
    """
    check_ot_rounds_options(
        method=method,
        reg=reg,
        n_iter=n_iter,
        init=init,
        metric=metric,
        alpha=alpha,
        max_samples=max_samples,
        gw_samples=gw_samples,
        max_iter=max_iter,
        tol=tol,
        batch_size=batch_size,
        sample=sample,
        random_state=random_state,
        map_tol=map_tol,
        csls_k=csls_k,
        confidence=confidence,
    )
    if method == "self-learning":
        return _self_learning_rounds(
            X,
            Y,
            fit_map,
            pairs=pairs,
            init=init,
            n_iter=n_iter,
            max_samples=max_samples,
            sample=sample,
            random_state=random_state,
            map_tol=map_tol,
            csls_k=csls_k,
            confidence=confidence,
            label=label,
            on_round=on_round,
            candidates=candidates,
            fit_alone=fit_alone,
        )
    if candidates or fit_alone is not None:
        raise ValueError(
            f"candidates and fit_alone are judged against the self-learning route only, got method={method!r}. "
            "Pass method='self-learning', or neither."
        )
    P = check_pairs(pairs, X.shape[0], Y.shape[0])
    m = P.shape[0]
    n_free_x = X.shape[0] - int(P[:, 0].unique().numel())
    n_free_y = Y.shape[0] - int(P[:, 1].unique().numel())
    init = _resolve_init(init, m, X.shape[1], min(n_free_x, n_free_y))
    if init == "identity" and X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"init='identity' compares X and Y directly, but X has {X.shape[1]} features and Y has "
            f"{Y.shape[1]}. Use init='gw' (works across dimensions) or pass known pairs."
        )

    dev = X.device
    Px, Py = P[:, 0].to(dev), P[:, 1].to(dev)
    free_x, free_y = _free_rows(X.shape[0], P[:, 0]).to(dev), _free_rows(Y.shape[0], P[:, 1]).to(dev)
    gen = torch.Generator().manual_seed(int(random_state))
    matches = torch.full((X.shape[0],), -1, dtype=torch.long)
    matches[P[:, 0]] = P[:, 1]
    history: list[dict[str, Any]] = []
    solver: dict[str, Any] = {"reg": float(reg), "metric": metric, "max_iter": max_iter, "tol": tol}
    if method == "sinkhorn" and tol is None:
        solver["tol"] = ROUND_SINKHORN_TOL
        solver["max_iter"] = ROUND_SINKHORN_MAX_ITER if max_iter is None else max_iter

    def refit(rows_x: torch.Tensor, targets: torch.Tensor) -> tuple[Transform, Any, float]:
        Xa = torch.cat([X[Px], X[rows_x]])
        Ya = torch.cat([Y[Py], targets])
        transform, fitted = fit_map(Xa, Ya)
        pred = transform(Xa).to(torch.float64)
        Ya64 = Ya.to(torch.float64)
        total = float((Ya64 - Ya64.mean(0)).pow(2).sum())
        residual = float((pred - Ya64).pow(2).sum()) / total if total > 0 else 0.0
        return transform, fitted, residual

    transform: Transform | None = None
    fitted: Any = None
    no_free = free_x.numel() < 2 or free_y.numel() < 2
    # Rows drawn once, so that consecutive rounds couple the same rows and their matches compare.
    gw_rows = (_sample(free_x, gw_samples, gen, sample), _sample(free_y, gw_samples, gen, sample))
    lin_rows = (_sample(free_x, max_samples, gen, sample), _sample(free_y, max_samples, gen, sample))
    if init == "pairs":
        transform, fitted, residual = refit(free_x[:0], Y[:0])
        history.append({"round": 0, "step": "pairs", "changed": None, "residual": residual, "n_coupled": 0})
    elif init == "relative":
        if m < 2 or no_free:
            raise ValueError(
                f"init='relative' couples the free rows by their similarities to the known pairs, so it needs "
                f"at least 2 pairs and 2 free rows per side; got {m} pairs, {free_x.numel()} free rows of X "
                f"and {free_y.numel()} of Y. Pass more pairs or use init='gw'."
            )
        sx, sy = lin_rows
        plan = ot_plan_tensors(
            _relative(X[sx], X[Px]),
            _relative(Y[sy], Y[Py]),
            method="emd" if method == "gw" else method,
            **solver,
        )
        transform, fitted, residual = refit(sx, barycentric_projection_tensors(plan, Y[sy]))
        matches[sx.cpu()] = sy[plan.argmax(1)].cpu()
        history.append(
            {"round": 0, "step": "relative", "changed": None, "residual": residual, "n_coupled": int(sx.numel())}
        )
    elif init == "gw":
        if no_free:
            raise ValueError(
                "Every row is already paired (or fewer than 2 rows are free), so there is nothing for the "
                "Gromov-Wasserstein start to couple; use init='auto'."
            )
        gx, gy = gw_rows
        plan = gw_plan_tensors(
            X[gx].double(), Y[gy].double(), **{**solver, "reg": float(reg) if method == "gw" else 0.0}
        ).to(X.dtype)
        best = gy[plan.argmax(1)]
        transform, fitted, residual = refit(gx, barycentric_projection_tensors(plan, Y[gy]))
        matches[gx.cpu()] = best.cpu()
        history.append({"round": 0, "step": "gw", "changed": None, "residual": residual, "n_coupled": int(gx.numel())})

    converged = False
    rounds = 0
    W_prev = None if transform is None else linear_part(transform, X.shape[1], X)
    solver_warnings: list[str] = []
    for rnd in range(1, int(n_iter) + 1):
        if no_free:
            converged = True
            break
        rows = gw_rows if method == "gw" else lin_rows
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            rows_x, targets, best = _couple(X, Y, rows, transform, method, solver, float(alpha), batch_size)
        # a round's coupling only feeds one map fit: what counts is the last one (reported below)
        solver_warnings = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        before = matches[rows_x.cpu()]
        seen = before >= 0  # rows matched by the previous coupling (not anchors: they are not coupled)
        changed = float((before[seen] != best.cpu()[seen]).double().mean()) if bool(seen.any()) else None
        transform, fitted, residual = refit(rows_x, targets)
        W = linear_part(transform, X.shape[1], X)
        change = relative_change(W_prev, W)
        W_prev = W
        matches[rows_x.cpu()] = best.cpu()
        rounds = rnd
        history.append(
            {
                "round": rnd,
                "step": method,
                "changed": changed,
                "map_change": change,
                "residual": residual,
                "n_coupled": int(rows_x.numel()),
            }
        )
        if on_round is not None:
            on_round(history[-1])
        if changed == 0.0 or change < map_tol:
            converged = True
            break
    if int(n_iter) == 0 or no_free:
        converged = True
    if not converged:
        last = history[-1]["changed"]
        detail = (
            f"{100 * last:.1f}% of the matches still changed in the last round"
            if last is not None
            else "a single round cannot be compared with a previous coupling"
        )
        warnings.warn(
            f"{label} stopped after n_iter={n_iter} rounds without converging: the map's relative change "
            f"||W_t - W_t-1||_F / ||W_t||_F was {history[-1].get('map_change', math.inf):.2e} in the last "
            f"round, above map_tol={map_tol:g}, and {detail}. Increase n_iter, raise map_tol, or lower reg "
            "for sharper couplings; the history has the per-round log.",
            ConvergenceWarning,
            stacklevel=2,
        )
    for message in solver_warnings:
        warnings.warn(f"{label}, last round: {message}", ConvergenceWarning, stacklevel=2)
    if transform is None:
        raise ValueError(
            f"init='identity' with n_iter={n_iter} and {free_x.numel()} free rows of X fits no map: "
            "run at least one round (n_iter >= 1) on at least 2 free rows per side, or pass pairs."
        )
    return OTRounds(
        map=fitted, transform=transform, matches=matches, history=history, converged=converged, n_iter=rounds
    )


def _couple(
    X: torch.Tensor,
    Y: torch.Tensor,
    rows: tuple[torch.Tensor, torch.Tensor],
    transform: Transform | None,
    method: str,
    solver: dict[str, Any],
    alpha: float,
    batch_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One coupling of the sampled free rows: (rows of X coupled, their barycentric targets, matches)."""
    sx, sy = rows
    Zx = X[sx] if transform is None else transform(X[sx])  # None: init="identity"
    if method == "gw":
        M = cost_matrix_tensors(Zx.double(), Y[sy].double(), solver["metric"])
        plan = gw_plan_tensors(X[sx].double(), Y[sy].double(), M=M, alpha=alpha, **solver).to(X.dtype)
        return sx, barycentric_projection_tensors(plan, Y[sy]), sy[plan.argmax(1)]
    if batch_size is not None:
        targets, best = sinkhorn_projection_tensors(Zx, Y[sy], batch_size=int(batch_size), **solver)
        return sx, targets, sy[best]
    plan = ot_plan_tensors(Zx, Y[sy], method=method, **solver)
    return sx, barycentric_projection_tensors(plan, Y[sy]), sy[plan.argmax(1)]


def _self_learning_rounds(
    X: torch.Tensor,
    Y: torch.Tensor,
    fit_map: FitMap,
    *,
    pairs: Any,
    init: str,
    n_iter: int,
    max_samples: int | None,
    sample: str,
    random_state: int,
    map_tol: float,
    csls_k: int,
    confidence: float | None,
    label: str,
    on_round: OnRound | None,
    candidates: dict[str, tuple[Transform, Any]] | None,
    fit_alone: FitMap | None,
) -> OTRounds:
    """``method="self-learning"``: :func:`~latentalign.functional.self_learning.seeded_self_learning`."""
    # imported here: self_learning builds on this module's pairs checks
    from latentalign.functional.self_learning import seeded_self_learning

    if init not in ("auto", "relative", "pairs"):
        raise ValueError(
            f"method='self-learning' starts from the known pairs' relative representations (init='auto' or "
            f"'relative') or from the pairs alone (init='pairs'), got init={init!r}. Use one of those, or an OT "
            "method."
        )
    P = check_pairs(pairs, X.shape[0], Y.shape[0])
    if P.shape[0] < MIN_MAP_ROWS:
        raise ValueError(
            f"method='self-learning' needs known pairs (at least {MIN_MAP_ROWS}), got {P.shape[0]}. Pass pairs, "
            "or use method='sinkhorn' (which starts from a Gromov-Wasserstein coupling)."
        )
    gen = torch.Generator().manual_seed(int(random_state))
    dev = X.device
    free_x = _sample(_free_rows(X.shape[0], P[:, 0]), max_samples, gen, sample).to(dev)
    free_y = _sample(_free_rows(Y.shape[0], P[:, 1]), max_samples, gen, sample).to(dev)
    out = seeded_self_learning(
        X,
        Y,
        fit_map,
        pairs=P,
        start="pairs" if init == "pairs" else "relative",
        rows_x=free_x,
        rows_y=free_y,
        csls_k=csls_k,
        max_iter=max(int(n_iter), 1),
        tol=map_tol,
        confidence=confidence,
        random_state=random_state,
        label=label,
        on_round=on_round,
        candidates=candidates,
        fit_alone=fit_alone,
    )
    matches = torch.full((X.shape[0],), -1, dtype=torch.long)
    matches[out.matches[:, 0]] = out.matches[:, 1]
    first = "pairs" if init == "pairs" else "relative"
    history = [{"step": "self-learning" if h["round"] else first, **h} for h in out.history]
    return OTRounds(
        map=out.map,
        transform=out.transform,
        matches=matches,
        history=history,
        converged=out.converged,
        n_iter=out.n_iter,
    )
