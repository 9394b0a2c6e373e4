"""Self-learning rounds (VecMap, Artetxe et al. 2017/2018; MUSE, Conneau et al. 2018), as pure functions.

Start from a map (fitted on a few known pairs, or given), then alternate:

1. *re-match*: map every source row and keep the **mutual** nearest neighbours under CSLS (cross-domain
   similarity local scaling, which removes the hubs plain nearest neighbours suffer from);
2. *map*: refit the map on those matches plus the known pairs, kept throughout.

The loop stops as soon as the matches no longer change. :func:`self_learning_rounds` is the loop behind
:class:`~latentalign.align.refine.SelfLearning`; the map is fitted by a callable the caller passes in.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from latentalign._array import ArrayLike
from latentalign._validation import check_number, check_pair
from latentalign.exceptions import ConvergenceWarning
from latentalign.functional.ot_rounds import MIN_MAP_ROWS, FitMap, check_pairs
from latentalign.functional.retrieval import csls_knn

__all__ = [
    "SelfLearningRounds",
    "mutual_csls_matches",
    "mutual_csls_tensors",
    "self_learning_rounds",
]

Transform = Callable[[torch.Tensor], torch.Tensor]


def mutual_csls_tensors(Z: torch.Tensor, Y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The unchecked core of :func:`mutual_csls_matches`: validated tensors in, (rows, cols, scores) out.

    Examples
    --------
    >>> import torch
    >>> Y = torch.eye(3)
    >>> rows, cols, _ = mutual_csls_tensors(Y[[1, 2, 0]], Y, 1)
    >>> cols.tolist()
    [1, 2, 0]
    """
    fwd_scores, fwd = csls_knn(Z, Y, k=1, csls_k=k)
    _, bwd = csls_knn(Y, Z, k=1, csls_k=k)
    fwd, bwd, fwd_scores = fwd[:, 0], bwd[:, 0], fwd_scores[:, 0]
    rows = torch.arange(Z.shape[0], device=fwd.device)
    mutual = bwd[fwd] == rows
    return rows[mutual], fwd[mutual], fwd_scores[mutual]


def mutual_csls_matches(Z: ArrayLike, Y: ArrayLike, *, k: int = 10) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """Pairs ``(i, j)`` where ``Y[j]`` is ``Z[i]``'s best CSLS match and ``Z[i]`` is ``Y[j]``'s.

    CSLS (Conneau et al., 2018) is ``2 cos(z, y) - r_Y(z) - r_Z(y)``, with ``r`` the mean cosine to the
    ``k`` nearest neighbours on the other side. It is symmetric, so the backward search ranks the same
    scores. Computed in row blocks by :func:`latentalign.functional.retrieval.csls_knn`.

    Parameters
    ----------
    Z : array of shape (n, d)
        Source rows already mapped into ``Y``'s space.
    Y : array of shape (m, d)
    k : int, default 10
        CSLS neighbourhood size.

    Returns
    -------
    rows : int array of shape (p,)
    cols : int array of shape (p,)
    scores : array of shape (p,)
        The CSLS score of each mutual pair.

    Examples
    --------
    >>> import numpy as np
    >>> Y = np.eye(4)
    >>> rows, cols, _ = mutual_csls_matches(Y[[2, 0, 1]] + 0.05, Y, k=1)
    >>> rows.tolist(), cols.tolist()
    ([0, 1, 2], [2, 0, 1])
    """
    Zt, Yt, spec = check_pair(Z, Y, ("Z", "Y"), paired=False, same_features=True)
    check_number(k, "k", integer=True, low=1)
    rows, cols, scores = mutual_csls_tensors(Zt, Yt, int(k))
    if spec.backend == "torch":
        return rows, cols, scores
    return rows.cpu().numpy(), cols.cpu().numpy(), scores.detach().cpu().numpy()


@dataclass
class SelfLearningRounds:
    """What :func:`self_learning_rounds` found.

    Attributes
    ----------
    map : Any
        The fitted object behind the final map (from ``fit_map``, or ``start``'s when no round refitted).
    transform : callable
        Applies the final map to source rows.
    matches : torch.Tensor of shape (p, 2), int64, on the CPU
        The final training pairs: the known pairs plus the last mutual-CSLS matches.
    history : list of dict
        Per round: ``round``, ``n_matches`` (mutual pairs found), ``csls`` (their mean CSLS score),
        ``changed`` (fraction of the union of this round's and the previous round's matches that is not
        in both; None in round 1).
    converged : bool
        Whether the matches stopped changing within ``n_iter`` rounds (True when ``n_iter=0``).
    n_iter : int
        Rounds run.
    """

    map: Any
    transform: Transform
    matches: torch.Tensor
    history: list[dict[str, Any]]
    converged: bool
    n_iter: int


def self_learning_rounds(
    X: torch.Tensor,
    Y: torch.Tensor,
    fit_map: FitMap,
    *,
    pairs: Any = None,
    start: Callable[[torch.Tensor, torch.Tensor], tuple[Transform, Any]] | None = None,
    n_iter: int = 10,
    csls_k: int = 10,
    label: str = "self_learning_rounds",
) -> SelfLearningRounds:
    """Alternate re-matching by mutual CSLS nearest neighbours and refitting a map on the matches.

    Parameters
    ----------
    X : torch.Tensor of shape (n_x, d_x)
    Y : torch.Tensor of shape (n_y, d_y)
        Validated rows of one dtype and device; not paired row by row.
    fit_map : callable
        ``fit_map(X_rows, Y_rows) -> (transform, fitted)``: fits a map sending ``X_rows`` onto ``Y_rows``
        (paired) and returns a function applying it to source rows, and the fitted object to keep.
    pairs : array of shape (m, 2), optional
        Known pairs ``(index into X, index into Y)``: the first map is fitted on them, and they join
        every later fit. At least 2 when given.
    start : callable, optional
        ``start(X, Y) -> (transform, fitted)``: gives the first map from the unpaired rows when there are
        no ``pairs`` (e.g. a Gromov-Wasserstein alignment). Ignored when ``pairs`` are given.
    n_iter : int, default 10
        Most re-matching rounds.
    csls_k : int, default 10
        CSLS neighbourhood size (MUSE: 10); at most the rows of either side.
    label : str, default "self_learning_rounds"
        Name used in the :class:`~latentalign.exceptions.ConvergenceWarning` message.

    Returns
    -------
    SelfLearningRounds

    Warns
    -----
    ConvergenceWarning
        When ``n_iter`` rounds end with matches still changing.

    Examples
    --------
    Ten pairs recover a rotation of a skewed cloud; the map is a plain least-squares fit here:

    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> X = torch.empty(200, 5, dtype=torch.float64).exponential_(generator=gen)
    >>> Q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64, generator=gen))
    >>> def fit_map(A, B):
    ...     W = torch.linalg.lstsq(A, B).solution
    ...     return (lambda Z: Z @ W), W
    >>> seeds = torch.stack([torch.arange(10), torch.arange(10)], 1)
    >>> out = self_learning_rounds(X, X @ Q, fit_map, pairs=seeds)
    >>> out.converged, out.history[-1]["changed"], torch.allclose(out.map, Q)
    (True, 0.0, True)
    """
    check_number(n_iter, "n_iter", integer=True, low=0)
    check_number(csls_k, "csls_k", integer=True, low=1)
    P = check_pairs(pairs, X.shape[0], Y.shape[0]).to(X.device)
    k = int(csls_k)
    if k > min(X.shape[0], Y.shape[0]):
        raise ValueError(
            f"csls_k={k} exceeds the rows available (X has {X.shape[0]}, Y has {Y.shape[0]}); use "
            f"csls_k <= {min(X.shape[0], Y.shape[0])}."
        )
    if 0 < P.shape[0] < MIN_MAP_ROWS:
        raise ValueError(
            f"pairs has {P.shape[0]} row; a map needs at least {MIN_MAP_ROWS} known pairs. Pass more pairs, "
            "or no pairs and a start map."
        )
    if P.shape[0] > 0:
        transform, fitted = fit_map(X[P[:, 0]], Y[P[:, 1]])
    elif start is not None:
        transform, fitted = start(X, Y)
    else:
        raise ValueError(
            f"{label} needs a start: pass known pairs, or a start map fitted on the unpaired rows (e.g. a "
            "Gromov-Wasserstein alignment)."
        )
    history: list[dict[str, Any]] = []
    previous: set[tuple[int, int]] | None = None
    train = P
    converged = int(n_iter) == 0
    rounds = 0
    for rnd in range(1, int(n_iter) + 1):
        rows, cols, scores = mutual_csls_tensors(transform(X), Y, k)
        current = set(zip(rows.tolist(), cols.tolist()))
        changed = None
        if previous is not None:
            union = len(current | previous)
            changed = len(current ^ previous) / union if union else 0.0
        history.append(
            {
                "round": rnd,
                "n_matches": len(current),
                "csls": float(scores.mean()) if scores.numel() else float("nan"),
                "changed": changed,
            }
        )
        rounds = rnd
        if changed == 0.0:
            converged = True
            break
        train = torch.cat([P, torch.stack([rows, cols], 1)])
        if train.shape[0] < MIN_MAP_ROWS:
            raise ValueError(
                f"Round {rnd} found {len(current)} mutual CSLS matches, too few to fit a map. The start "
                "map is too poor: pass more pairs or a better start."
            )
        transform, fitted = fit_map(X[train[:, 0]], Y[train[:, 1]])
        previous = current
    if not converged:
        last = history[-1]["changed"]
        detail = (
            f"{100 * last:.1f}% of the matches changed in the last round"
            if last is not None
            else ("one round cannot be compared with a previous matching")
        )
        warnings.warn(
            f"{label} stopped after n_iter={n_iter} rounds without converging ({detail}). "
            "Increase n_iter; the history has the per-round log.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return SelfLearningRounds(
        map=fitted, transform=transform, matches=train.cpu(), history=history, converged=converged, n_iter=rounds
    )
