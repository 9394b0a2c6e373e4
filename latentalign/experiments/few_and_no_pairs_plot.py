"""The figure of the ``few_and_no_pairs`` page: one panel per pair of encoders, R@1 (CSLS) against budget."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_curves", "METHOD_COLOURS"]

#: One colour per method, the same on every panel.
METHOD_COLOURS = {
    "procrustes": "tab:blue",
    "affine": "tab:purple",
    "relative": "tab:green",
    "lfm": "tab:orange",
    "ot": "tab:red",
    "unsupervised": "black",
}
_STYLES = {"none": "-", "shuffled": "-", "disjoint": "--"}


def _budget_label(budget: int, is_all: bool) -> str:
    return f"all\n({budget})" if is_all else str(budget)


def _series(records: list[dict[str, Any]]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(method, setting, records) of every line: a method fitted with unpaired rows gets one line per
    setting, each ending at the "all" budget (where no row is left unpaired, so both share that point)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in records):
        own = [r for r in records if r["method"] == method]
        settings = [s for s in ("shuffled", "disjoint") if any(r["unpaired"] == s for r in own)]
        if not settings:
            out.append((method, "none", own))
        for setting in settings:
            out.append((method, setting, [r for r in own if r["unpaired"] == setting or r["is_all"]]))
    return out


def plot_curves(curves: Sequence[dict[str, Any]], path: Path, *, n_seeds: int, title: str) -> Path | None:
    """Draw every case's curves into ``path`` (PNG); ``None`` when matplotlib is not installed.

    ``curves`` holds one entry per case: ``label`` (panel title), ``identity`` (R@1 of the identity map or
    None) and ``records`` (what :func:`~latentalign.experiments.few_and_no_pairs_curves.budget_curve`
    returned). Budgets sit at even spacing (0, 5, 10, ... , all); the line is the mean over seeds and the
    band spans the lowest to the highest seed. Records that carry a bootstrap interval (``r1_csls_low``,
    ``r1_csls_high``, described by ``r1_csls_interval``) get it drawn as capped bars, named in the title.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - plot extra missing
        return None
    n = len(curves)
    cols = min(3, max(n, 1))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.2 * cols, 11.0), 4.2 * rows + 1.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, curve in zip(axes.flat, curves):
        records = [r for r in curve["records"] if r["r1_csls"] is not None]
        budgets = sorted({(r["budget"], r["is_all"]) for r in curve["records"]})
        position = {b: i for i, (b, _) in enumerate(budgets)}
        for method, setting, sub in _series(records):
            xs = sorted({r["budget"] for r in sub})
            values = [[r["r1_csls"] for r in sub if r["budget"] == b] for b in xs]
            mean = np.array([np.mean(v) for v in values])
            low, high = np.array([min(v) for v in values]), np.array([max(v) for v in values])
            x = np.array([position[b] for b in xs], dtype=float)
            label = method if setting == "none" else f"{method}, {setting} unpaired rows"
            colour = METHOD_COLOURS.get(method, "grey")
            if len(xs) == 1:  # a zero-pair method: one point with its seed range
                offset = -0.12 if setting == "shuffled" else 0.12
                ax.errorbar(
                    x + offset,
                    mean,
                    yerr=[mean - low, high - mean],
                    fmt="*" if setting == "shuffled" else "X",
                    color=colour,
                    ms=9,
                    capsize=3,
                    label=label,
                )
                continue
            ax.plot(x, mean, _STYLES[setting], color=colour, marker="o", ms=3, lw=1.4, label=label)
            ax.fill_between(x, low, high, color=colour, alpha=0.12, lw=0)
            if all(r.get("r1_csls_low") is not None and r.get("r1_csls_high") is not None for r in sub):
                # bootstrap intervals carried by the records: lowest low to highest high over seeds
                lo = np.array([min(r["r1_csls_low"] for r in sub if r["budget"] == b) for b in xs])
                hi = np.array([max(r["r1_csls_high"] for r in sub if r["budget"] == b) for b in xs])
                ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="none", ecolor=colour, capsize=2, lw=0.8)
        if curve.get("identity") is not None:
            ax.axhline(curve["identity"], color="grey", lw=0.8, ls=":", label="identity map (no fit)")
        ax.set_xticks(range(len(budgets)))
        ax.set_xticklabels([_budget_label(b, a) for b, a in budgets], fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("known pairs (anchor budget)")
        ax.set_ylabel("R@1, CSLS, held-out items")
        ax.set_title(curve["label"], fontsize=9)
        ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes.flat[:n]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=4, fontsize=8, frameon=False)
    intervals = sorted({str(r["r1_csls_interval"]) for c in curves for r in c["records"] if r.get("r1_csls_interval")})
    caption = f"; capped bars: {', '.join(intervals)}" if intervals else ""
    fig.suptitle(
        f"{title}\nline / point: mean over {n_seeds} seed(s); band / bar: lowest to highest seed; "
        f"dashed: free rows of the two sides are different items{caption}",
        fontsize=10,
    )
    legend_rows = int(np.ceil(len(handles) / 4))
    fig.tight_layout(rect=(0, 0.035 * legend_rows + 0.02, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
