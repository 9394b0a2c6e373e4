"""Anchor-budget sweeps shared by the stitching pages: nested anchor draws, the nonlinearity note, the plot.

A page scores every method at several anchor budgets (numbers of parallel pairs the maps are fitted on).
:func:`nested_anchors` draws the anchors once, so a smaller budget's anchors are a subset of a larger
one's and the curves differ only by the pairs added; :func:`nonlinearity_note` says, budget by budget,
whether a learned nonlinear map beats the best linear one (descriptive, not a pass/fail check);
:func:`plot_budget_curves` draws the mean score against the budget per method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["nested_anchors", "nonlinearity_note", "plot_budget_curves", "NONLINEAR_TOLERANCE"]

#: Mean-score difference under which a nonlinear and a linear map count as level in :func:`nonlinearity_note`.
NONLINEAR_TOLERANCE = 0.01


def nested_anchors(pool: int | np.ndarray, budgets: Sequence[int | str], seed: int) -> dict[int, np.ndarray]:
    """Anchor indices for each budget, all taken from one seeded permutation of ``pool``.

    Budget ``k`` gets the first ``k`` entries of the permutation (sorted), so each budget's anchors are a
    subset of every larger budget's.

    Parameters
    ----------
    pool : int or array of int
        Indices the anchors may be drawn from; an int ``n`` stands for ``range(n)``.
    budgets : sequence of int or "all"
        Numbers of anchors; ``"all"`` is the whole pool.
    seed : int
        Seed of the permutation.

    Returns
    -------
    dict of int to ndarray
        Sorted anchor indices (int64) for each budget, smallest budget first.

    Examples
    --------
    >>> out = nested_anchors(10, [6, 3, "all"], seed=0)
    >>> list(out), set(out[3]) <= set(out[6]) <= set(out[10]), out[10].tolist() == list(range(10))
    ([3, 6, 10], True, True)
    """
    indices = np.arange(pool) if isinstance(pool, (int, np.integer)) else np.asarray(pool, dtype=np.int64)
    if indices.ndim != 1 or indices.size == 0:
        raise ValueError(f"pool must be a positive int or a non-empty 1-D array of indices, got {pool!r}.")
    if not budgets:
        raise ValueError("budgets is empty; pass at least one number of anchors (e.g. [50, 100, 300, 'all']).")
    sizes = []
    for budget in budgets:
        if budget == "all":
            sizes.append(indices.size)
            continue
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or not 1 <= budget <= indices.size:
            raise ValueError(
                f"budgets holds {budget!r}, but each budget must be an int between 1 and the pool's "
                f"{indices.size} rows, or 'all'. Pass budgets within the pool."
            )
        sizes.append(int(budget))
    order = indices[np.random.default_rng(seed).permutation(indices.size)]
    return {k: np.sort(order[:k]) for k in sorted(set(sizes))}


def nonlinearity_note(
    means: Mapping[int, Mapping[str, float]],
    *,
    linear: Sequence[str],
    nonlinear: Sequence[str],
    tolerance: float = NONLINEAR_TOLERANCE,
    metric: str = "mean macro F1",
) -> str:
    """One sentence per page: at which budgets a nonlinear map beats the best linear map, and by how much.

    Parameters
    ----------
    means : mapping of budget to (mapping of method to score)
        The mean score of each method at each budget (higher is better).
    linear, nonlinear : sequence of str
        Methods compared: the best of ``linear`` at each budget against each of ``nonlinear``.
    tolerance : float, default :data:`NONLINEAR_TOLERANCE`
        Differences within ``tolerance`` count as level.
    metric : str
        How the score is named in the sentence.

    Returns
    -------
    str
        The differences budget by budget, then the budgets where nonlinearity pays (a nonlinear map more
        than ``tolerance`` above the best linear one), where it falls behind (every nonlinear map more than
        ``tolerance`` below) and where they are level.

    Examples
    --------
    >>> means = {50: {"ortho": 0.6, "mlp": 0.5}, 1000: {"ortho": 0.8, "mlp": 0.85}}
    >>> print(nonlinearity_note(means, linear=["ortho"], nonlinear=["mlp"]))  # doctest: +NORMALIZE_WHITESPACE
    Nonlinear minus best linear map (mean macro F1): 50 anchors: mlp -0.100 (best linear: ortho 0.600);
    1000 anchors: mlp +0.050 (best linear: ortho 0.800). Nonlinearity pays at 1000 anchors; it falls behind
    at 50 anchors; level at no budget.
    """
    pays, behind, level, parts = [], [], [], []
    for budget in sorted(means):
        scores = means[budget]
        best = max(linear, key=lambda m: scores[m])
        gains = {m: scores[m] - scores[best] for m in nonlinear}
        parts.append(
            f"{budget} anchors: "
            + ", ".join(f"{m.replace('_', ' ')} {g:+.3f}" for m, g in gains.items())
            + f" (best linear: {best.replace('_', ' ')} {scores[best]:.3f})"
        )
        if max(gains.values()) > tolerance:
            pays.append(budget)
        elif max(gains.values()) < -tolerance:
            behind.append(budget)
        else:
            level.append(budget)

    def where(budgets: list[int]) -> str:
        return ", ".join(map(str, budgets)) + " anchors" if budgets else "no budget"

    return (
        f"Nonlinear minus best linear map ({metric}): {'; '.join(parts)}. Nonlinearity pays at {where(pays)}; "
        f"it falls behind at {where(behind)}; level at {where(level)}."
    )


def plot_budget_curves(
    curves: Mapping[str, Mapping[str, Mapping[int, tuple[float, float]]]],
    path: Path,
    *,
    title: str,
    ylabel: str,
    reference: Mapping[str, float] | None = None,
) -> Path | None:
    """Score against the number of anchors, one line per method, one panel per group (e.g. per task).

    Parameters
    ----------
    curves : mapping of panel title to (mapping of method to (mapping of budget to (mean, std)))
        What to draw; ``std`` is drawn as an error bar (0: none).
    path : Path
        Where the PNG goes.
    title, ylabel : str
    reference : mapping of panel title to float, optional
        A dashed horizontal line per panel (e.g. the target's own, non-stitched score).

    Returns
    -------
    Path or None
        ``path``, or None when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - plot extra missing
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves) + 0.6, 3.6), squeeze=False)
    for ax, (panel, methods) in zip(axes[0], curves.items()):
        for method, points in methods.items():
            budgets = sorted(points)
            ax.errorbar(
                budgets,
                [points[b][0] for b in budgets],
                yerr=[points[b][1] for b in budgets],
                marker="o",
                capsize=3,
                label=method.replace("_", "-"),
            )
        if reference is not None and panel in reference:
            ax.axhline(reference[panel], color="black", linestyle="--", linewidth=1, label="non-stitched")
        ax.set_xscale("log")
        ticks = sorted({b for points in methods.values() for b in points})
        ax.set_xticks(ticks, [str(b) for b in ticks])  # the budgets themselves, not powers of ten
        ax.minorticks_off()
        ax.set_xlabel("anchors (parallel pairs the map is fitted on)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1)
        ax.set_title(panel, fontsize=9)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
