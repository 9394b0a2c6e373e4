"""Stitching at any depth between small Fashion-MNIST CNNs (Bansal et al., NeurIPS 2021; Csiszarik et al.,
NeurIPS 2021).

For each pair of :mod:`~latentalign.experiments.small_cnns` models (A, B) and each pair of cuts
(``cut_a``, ``cut_b``), A's blocks up to ``cut_a`` feed B's blocks after ``cut_b`` through a per-position
(1x1) map on the channels: zero-shot Procrustes and affine maps fitted on the two layers' states of a few
hundred training images, and a trained stitching layer (initialised from the affine map, trained on the
task loss with A and B frozen). Each cell's test accuracy is compared with A and B alone. Cuts whose
feature maps differ in spatial size (``block1`` is 14x14, the others 7x7) resize A's maps to B's size.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run", "stitch_cell"]

logger = logging.getLogger(__name__)


def stitch_cell(
    model_a: Any,
    cut_a: str,
    model_b: Any,
    cut_b: str,
    fit_X: Any,
    train_X: Any,
    train_y: Any,
    test_X: Any,
    test_y: Any,
    *,
    aligners: tuple[str, ...] = ("procrustes", "affine"),
    stitch_epochs: int = 1,
    stitch_lr: float = 1e-3,
    seed: int = 0,
    val_X: Any = None,
    val_y: Any = None,
    batch_size: int = 128,
    patience: int = 2,
    front_states: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Test accuracy of each zero-shot map and of the trained stitching layer for one pair of cuts.

    The trained layer starts from the last zero-shot map of ``aligners`` (the papers' least-squares
    initialisation when it is ``"affine"``) and is trained on ``(train_X, train_y)`` with
    :func:`~latentalign.stitching.train_stitching_layer` (cosine schedule; early stopping on
    ``(val_X, val_y)`` when given). Model A is frozen and in eval mode, so its states at ``cut_a`` are
    computed once and the layer is trained on them; ``front_states`` may hold them already
    (``{"train": ..., "val": ..., "test": ...}``, A's states at ``cut_a`` for those inputs, not resized).

    Returns
    -------
    dict
        Test accuracy under each aligner's name and under ``"trained"``; ``"epochs_run"`` and
        ``"best_epoch"`` (the epoch whose map was kept, 0 for the zero-shot start) of the training.
    """
    from collections import OrderedDict

    import torch
    from torch import nn

    from latentalign.experiments.small_cnns import evaluate_accuracy
    from latentalign.stitching import LayerStitcher, fit_layer_stitcher, layer_states, train_stitching_layer

    held_out = val_X is not None and val_y is not None
    inputs = {"train": train_X, "test": test_X} | ({"val": val_X} if held_out else {})
    states = dict(front_states or {})
    for part, X in inputs.items():
        if part not in states:
            states[part] = layer_states(model_a, cut_a, X)
    scores: dict[str, float] = {}
    stitcher = None
    for k, name in enumerate(aligners):
        last = k == len(aligners) - 1
        stitcher = fit_layer_stitcher(
            model_a, cut_a, model_b, cut_b, fit_X, name, resize=True, seed=seed, trainable_map=last
        )
        scores[name] = evaluate_accuracy(stitcher, test_X, test_y)
    assert stitcher is not None
    # the same map and B's back, fed with A's precomputed states (resized to B's size as the stitcher does)
    identity = nn.Sequential(OrderedDict(states=nn.Identity()))
    on_states = LayerStitcher(identity, "states", model_b, cut_b, stitcher.map, size=stitcher.size)
    validation = (states["val"], val_y) if held_out else None
    with torch.random.fork_rng(devices=[]):
        train_stitching_layer(
            on_states,
            (states["train"], train_y),
            epochs=stitch_epochs,
            lr=stitch_lr,
            seed=seed,
            batch_size=batch_size,
            validation=validation,
            patience=patience,
        )
    scores["trained"] = evaluate_accuracy(on_states, states["test"], test_y)
    scores["epochs_run"] = float(len(on_states.train_history_["train_loss"]))
    scores["best_epoch"] = float(on_states.train_history_["best_epoch"])
    return scores


def run(config: dict[str, Any], *, out_dir: str | Path):
    """Train (or read from the cache) the CNNs, then fill the accuracy grid of every listed pair."""
    from latentalign.experiments.common import restore_threads, set_threads

    previous = set_threads(config["setup"])
    try:
        rows, grids, alone, timings = _grid(config["setup"])
    finally:
        restore_threads(previous)
    return _result(config, rows, grids, alone, timings, Path(out_dir))


def _label(width: float, seed: int) -> str:
    return f"w{width:g}-s{seed}"


def _grid(setup: dict[str, Any]):
    from latentalign.experiments.small_cnns import evaluate_accuracy, load_fashion_tensors, train_small_cnn
    from latentalign.stitching import layer_states

    start, cpu_start = time.perf_counter(), time.process_time()
    n_train, epochs = int(setup["n_train"]), int(setup["epochs"])
    n_stitch, n_val = int(setup["n_stitch_train"]), int(setup["n_val"])
    if n_stitch > n_train:
        raise ValueError(
            f"n_stitch_train={n_stitch} exceeds n_train={n_train}: the stitching layer trains on (a part of) "
            "the models' own training images. Lower n_stitch_train."
        )
    models = {}
    for width, seed in sorted({(float(w), int(s)) for pair in setup["pairs"] for w, s in (pair[:2], pair[2:])}):
        models[_label(width, seed)] = train_small_cnn(width, seed, n_train=n_train, epochs=epochs)
    models_s = time.perf_counter() - start
    # the held-out slice (early stopping) follows the models' training images: seen by neither
    X, y = load_fashion_tensors("train", n_train + n_val)
    fit_X = X[: int(setup["n_fit"])]
    train_X, train_y = X[:n_stitch], y[:n_stitch]
    val_X, val_y = X[n_train:], y[n_train:]
    test_X, test_y = load_fashion_tensors("test", int(setup["n_test"]))
    alone = {name: evaluate_accuracy(model, test_X, test_y) for name, model in models.items()}
    cuts = list(setup["cuts"])
    fronts: dict[tuple[str, str], dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    grids: dict[str, dict[str, np.ndarray]] = {}
    pairs = [(_label(float(w_a), int(s_a)), _label(float(w_b), int(s_b))) for w_a, s_a, w_b, s_b in setup["pairs"]]
    for p, (a, b) in enumerate(pairs):
        key = f"{a} -> {b}"
        grid = {k: np.zeros((len(cuts), len(cuts))) for k in ("procrustes", "affine", "trained")}
        for i, cut_a in enumerate(cuts):
            if (a, cut_a) not in fronts:
                inputs = {"train": train_X, "val": val_X, "test": test_X}
                fronts[(a, cut_a)] = {part: layer_states(models[a], cut_a, Z) for part, Z in inputs.items()}
            for j, cut_b in enumerate(cuts):
                t0 = time.perf_counter()
                scores = stitch_cell(
                    models[a],
                    cut_a,
                    models[b],
                    cut_b,
                    fit_X,
                    train_X,
                    train_y,
                    test_X,
                    test_y,
                    stitch_epochs=int(setup["stitch_epochs"]),
                    stitch_lr=float(setup["stitch_lr"]),
                    seed=int(setup["seed"]),
                    val_X=val_X,
                    val_y=val_y,
                    batch_size=int(setup["stitch_batch_size"]),
                    patience=int(setup["stitch_patience"]),
                    front_states=fronts[(a, cut_a)],
                )
                for k in grid:
                    grid[k][i, j] = scores[k]
                rows.append(
                    {
                        "pair": key,
                        "cut_a": cut_a,
                        "cut_b": cut_b,
                        "A_alone": round(alone[a], 4),
                        "B_alone": round(alone[b], 4),
                        "procrustes": round(scores["procrustes"], 4),
                        "affine": round(scores["affine"], 4),
                        "trained": round(scores["trained"], 4),
                        "best_epoch": int(scores["best_epoch"]),
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                )
                logger.info("%s %s->%s: %s", key, cut_a, cut_b, scores)
        if all(later != a for later, _ in pairs[p + 1 :]):  # free A's states once its last pair is done
            fronts = {k: v for k, v in fronts.items() if k[0] != a}
        grids[key] = grid
    timings = {
        "models_s": round(models_s, 1),
        "total_s": round(time.perf_counter() - start, 1),
        "cpu_s": round(time.process_time() - cpu_start, 1),
        "load_average": round(os.getloadavg()[1], 1) if hasattr(os, "getloadavg") else float("nan"),
    }
    return rows, grids, alone, timings


def _same_architecture(row: dict[str, Any]) -> bool:
    a, b = row["pair"].split(" -> ")
    return a.split("-")[0] == b.split("-")[0]


def _plot(grids: dict[str, dict[str, np.ndarray]], cuts: list[str], out: Path, name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ("procrustes", "affine", "trained")
    fig, axes = plt.subplots(len(grids), 3, figsize=(11, 3.4 * len(grids)), squeeze=False)
    for r, (pair, grid) in enumerate(grids.items()):
        for c, kind in enumerate(kinds):
            ax = axes[r, c]
            im = ax.imshow(grid[kind], vmin=0.0, vmax=1.0, cmap="viridis")
            for i in range(len(cuts)):
                for j in range(len(cuts)):
                    ax.text(j, i, f"{grid[kind][i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
            ax.set_xticks(range(len(cuts)), cuts, fontsize=7)
            ax.set_yticks(range(len(cuts)), cuts, fontsize=7)
            ax.set_xlabel(f"cut_b ({pair.split(' -> ')[1]})", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"cut_a ({pair.split(' -> ')[0]})", fontsize=8)
            ax.set_title(f"{pair}: {kind}", fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="test accuracy")
    path = out / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _result(
    config: dict[str, Any],
    rows: list[dict[str, Any]],
    grids: dict[str, dict[str, np.ndarray]],
    alone: dict[str, float],
    timings: dict[str, float],
    out: Path,
):
    from latentalign.experiments.runner import Check, ExperimentResult

    setup = config["setup"]
    max_penalty = float(setup["max_penalty"])
    tolerance = float(setup["trained_tolerance"])
    min_share = float(setup["min_trained_share"])
    diagonal = [r for r in rows if r["cut_a"] == r["cut_b"] and _same_architecture(r)]
    penalties = [r["B_alone"] - r["trained"] for r in diagonal]
    mean_penalty = float(np.mean(penalties)) if penalties else float("nan")
    best_zero = [max(r["procrustes"], r["affine"]) for r in rows]
    wins = [r["trained"] >= z - tolerance for r, z in zip(rows, best_zero)]
    share = float(np.mean(wins))
    notes: list[str] = []
    checks = [
        Check(
            claim=f"same architecture, matching depth: mean stitching penalty (B alone - trained) <= {max_penalty:g}",
            paper="small penalty (a few %) when same-architecture nets from different seeds are stitched at "
            "the same layer (Bansal et al. Fig. 3; Csiszarik et al. Sec. 4)",
            ours=f"{mean_penalty:+.3f} over {len(diagonal)} cells (max {max(penalties, default=float('nan')):+.3f})",
            passed=bool(penalties) and mean_penalty <= max_penalty,
        ),
        Check(
            claim=f"trained stitching >= best zero-shot map - {tolerance:g} in >= {min_share:.0%} of the cells",
            paper="a trained stitching layer does at least as well as the direct matching it starts from "
            "(Csiszarik et al. Table 1: task loss matching >= least squares matching)",
            ours=f"{share:.0%} of {len(rows)} cells; mean trained {np.mean([r['trained'] for r in rows]):.3f} vs "
            f"best zero-shot {np.mean(best_zero):.3f}",
            passed=share >= min_share,
        ),
    ]
    for pair in dict.fromkeys(r["pair"] for r in rows):
        cells = [r for r in rows if r["pair"] == pair and r["cut_a"] == r["cut_b"]]
        if not cells:
            continue
        kind = "same architecture" if _same_architecture(cells[0]) else "different widths"
        notes.append(
            f"{pair} ({kind}), matching depths: mean (B alone - trained) {np.mean([r['B_alone'] - r['trained'] for r in cells]):+.3f}, "
            f"mean (A alone - trained) {np.mean([r['A_alone'] - r['trained'] for r in cells]):+.3f}."
        )
    if diagonal:
        against_a = float(np.mean([r["A_alone"] - r["trained"] for r in diagonal]))
        notes.append(
            "The stitched model runs A's front, so A alone is the other reference: over the same cells the "
            f"mean of (A alone - trained) is {against_a:+.3f} (the check above measures against B alone). A "
            "negative value means the stitched network beats A alone: the layer is trained on the task, through "
            "B's back, so stitching can lift the weaker model of a pair towards the stronger one."
        )
    off = [r for r in rows if r["cut_a"] != r["cut_b"]]
    capped = sum(r["best_epoch"] == int(setup["stitch_epochs"]) for r in rows)
    budget = setup.get("time_budget_s")
    notes += [
        "Models alone (test accuracy): " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(alone.items())) + ".",
        f"Models: SmallCNN (conv+BN+ReLU blocks of 8/16/32/32 channels times the width), {setup['n_train']} "
        f"training images, {setup['epochs']} epochs (cached); zero-shot maps fitted on the states of "
        f"{setup['n_fit']} training images (one row per spatial position, at most 50,000 rows); trained layer: "
        f"initialised from the affine map, Adam with a cosine schedule from lr {setup['stitch_lr']}, batches of "
        f"{setup['stitch_batch_size']}, at most {setup['stitch_epochs']} epochs on the models' first "
        f"{setup['n_stitch_train']} training images, early stopping (patience {setup['stitch_patience']}) on the "
        f"next {setup['n_val']} training images, which neither the models nor the layer trained on, keeping the "
        f"epoch with the lowest held-out loss; accuracy on the first {setup['n_test']} test images.",
        "Epoch kept by early stopping (0 = the affine start): "
        + ", ".join(f"{e}: {n} cells" for e, n in sorted(Counter(r["best_epoch"] for r in rows).items()))
        + "."
        + (
            f" In {capped} of {len(rows)} cells the held-out loss was still falling at the last allowed epoch, "
            "so the epoch cap (set by the time budget), not early stopping, ended training there; a longer "
            "schedule may raise those cells' trained accuracy."
            if capped
            else ""
        ),
        f"Time: {timings['models_s']:.0f} s for the models (0 when cached), {timings['total_s']:.0f} s in all "
        f"(wall clock), {timings['cpu_s']:.0f} s of CPU time on {setup.get('torch_threads', 'default')} torch "
        f"thread(s); the machine's 5-minute load average at the end was {timings['load_average']:g} on "
        f"{os.cpu_count()} cores"
        + (" (other jobs were running)" if timings["load_average"] > (os.cpu_count() or 1) else "")
        + (
            f"; the grid's budget is {budget:g} s on this machine, which the wall-clock time "
            + ("meets." if timings["total_s"] <= budget else "exceeds.")
            if budget
            else "."
        ),
    ]
    if off:
        notes.append(
            "Mismatched depths (cut_a != cut_b), mean accuracy: "
            f"procrustes {np.mean([r['procrustes'] for r in off]):.3f}, affine "
            f"{np.mean([r['affine'] for r in off]):.3f}, trained {np.mean([r['trained'] for r in off]):.3f}; "
            "matching depths: "
            f"procrustes {np.mean([r['procrustes'] for r in rows if r not in off]):.3f}, affine "
            f"{np.mean([r['affine'] for r in rows if r not in off]):.3f}, trained "
            f"{np.mean([r['trained'] for r in rows if r not in off]):.3f}."
        )
    plots = [_plot(grids, list(setup["cuts"]), out, config["name"])]
    details = {"alone": alone, "timings": timings}
    return ExperimentResult(rows=rows, checks=checks, notes=notes, plots=plots, details=details)
