"""Merging independently trained networks after matching their units (Git Re-Basin, REPAIR, C2M3).

For each model family of the config (MLPs on MNIST, VGG-like CNNs and ResNets with batch norm on
Fashion-MNIST) ``n_models`` networks (default 2) are trained from different seeds (initial weights and
batch order) on the same images. For every pair of them the linear path is evaluated on held-out
images as trained ("naive"), after :func:`~latentalign.merge.matching.weight_matching` and after
:func:`~latentalign.merge.matching.activation_matching` permuted the second model onto the first. For
families with batch norm every model on the path is also evaluated after
:func:`~latentalign.merge.repair.reset_batchnorm` on training images ("+ BN reset"). The final path
of each method (after the reset where there is batch norm) is evaluated once more after
:func:`~latentalign.merge.repair.repair` rescaled every model on it (REPAIR; the ``_repair`` columns).
The page reports the loss and accuracy barriers (largest gap between the path and the straight line
joining its ends) and the midpoint's accuracy.

Width sweeps (``[[setup.sweeps]]``) add one family per width, with the naive and weight-matched paths
only; their matched barriers are plotted against the width. A family with ``merge_all = true`` and
three or more models is also merged as a whole: after pairwise weight matching of every model to
model 0, and after :func:`~latentalign.merge.cycle.cycle_consistent_matching` of all of them to one
universe (C2M3); the merged model's test accuracy is reported (``acc_merged``).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.nn import functional as F

from latentalign.experiments.runner import Check, ExperimentResult
from latentalign.merge import (
    MLP,
    PermutationSpec,
    ResNet,
    VGGLike,
    activation_matching,
    apply_permutation,
    as_model,
    barrier_from_curve,
    cnn_spec,
    cycle_consistent_matching,
    interpolate,
    merge,
    mlp_spec,
    repair,
    reset_batchnorm,
    resnet_spec,
    weight_matching,
)

__all__ = ["run", "build_family", "train_model", "evaluate", "path_curves", "expand_sweeps"]

logger = logging.getLogger(__name__)

METHODS = ("naive", "weight matching", "activation matching")
# the entries of a family that decide which models get trained (a sweep width may reuse a family's models)
_MODEL_KEYS = (
    *("kind", "hidden", "widths", "depth", "width"),
    *("dataset", "n_train", "n_test", "epochs", "batch_size", "downsample"),
)


def build_family(family: dict[str, Any]) -> tuple[nn.Module, PermutationSpec]:
    """A fresh model and its spec from a config's ``[[setup.families]]`` entry.

    Examples
    --------
    >>> model, spec = build_family({"kind": "mlp", "hidden": [8, 8]})
    >>> type(model).__name__, spec.names
    ('MLP', ('h0', 'h1'))
    """
    kind = family["kind"]
    if kind == "mlp":
        hidden = [int(h) for h in family["hidden"]]
        return MLP(784, hidden, 10), mlp_spec(len(hidden))
    if kind == "cnn":
        widths = [int(w) for w in family["widths"]]
        return VGGLike(1, widths, 10), cnn_spec(len(widths))
    if kind == "resnet":
        model = ResNet(int(family["depth"]), int(family["width"]), 10, in_channels=1)
        return model, resnet_spec(model.blocks_per_stage)
    raise ValueError(f"family kind must be 'mlp', 'cnn' or 'resnet'; received {kind!r}.")


def expand_sweeps(setup: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The families to run (``setup.families`` then one per sweep width not among them) and the sweeps.

    A sweep entry holds a family's settings with ``widths`` (hidden units of every layer for an MLP,
    the width multiplier for a ResNet), ``hidden_layers`` (MLP) and ``family_name`` (a format string
    with ``{width}``). A width whose name is already a family reuses it; its model settings must agree.
    Each returned sweep is ``{"name", "widths", "families"}``.

    Examples
    --------
    >>> setup = {"families": [], "sweeps": [{"name": "MLP width", "family_name": "MLP 2x{width}",
    ...     "kind": "mlp", "hidden_layers": 2, "widths": [8, 16], "dataset": "mnist"}]}
    >>> families, sweeps = expand_sweeps(setup)
    >>> [f["hidden"] for f in families], sweeps[0]["families"]
    ([[8, 8], [16, 16]], ['MLP 2x8', 'MLP 2x16'])
    """
    families = [dict(f) for f in setup["families"]]
    by_name = {f["name"]: f for f in families}
    sweeps = []
    for sweep in setup.get("sweeps", []):
        kind, names = sweep["kind"], []
        for width in sweep["widths"]:
            family = {k: v for k, v in sweep.items() if k not in ("name", "widths", "family_name", "hidden_layers")}
            family["name"] = sweep["family_name"].format(width=width)
            if kind == "mlp":
                family["hidden"] = [int(width)] * int(sweep["hidden_layers"])
            elif kind == "resnet":
                family["width"] = int(width)
            else:
                raise ValueError(f"a width sweep's kind must be 'mlp' or 'resnet'; received {kind!r}.")
            family.setdefault("methods", ["naive", "weight matching"])
            family["checks"] = False
            known = by_name.get(family["name"])
            if known is None:
                families.append(family)
                by_name[family["name"]] = family
            elif any(known.get(k) != family.get(k) for k in _MODEL_KEYS):
                raise ValueError(
                    f"sweep {sweep['name']!r} names its width {width} {family['name']!r}, a family with other "
                    "settings; give the sweep another family_name or the same settings."
                )
            names.append(family["name"])
        sweeps.append({"name": sweep["name"], "widths": [int(w) for w in sweep["widths"]], "families": names})
    return families, sweeps


def _load(dataset: str, n_train: int, n_test: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if dataset == "mnist":
        from latentalign.datasets import load_mnist

        data = load_mnist()
        if n_train + n_test > len(data.labels):
            raise ValueError(
                f"n_train + n_test must be at most {len(data.labels)} for MNIST; received {n_train} + {n_test}."
            )
        order = np.random.default_rng(0).permutation(len(data.labels))
        images = torch.from_numpy(data.images[order].astype(np.float32) / 255.0)
        X = ((images - images[:n_train].mean()) / images[:n_train].std()).unsqueeze(1)
        y = torch.from_numpy(data.labels[order].astype(np.int64))
        return X[:n_train], y[:n_train], X[n_train : n_train + n_test], y[n_train : n_train + n_test]
    if dataset == "fashion_mnist":
        from latentalign.experiments.small_cnns import load_fashion_tensors

        X_train, y_train = load_fashion_tensors("train", n_train)
        X_test, y_test = load_fashion_tensors("test", n_test)
        return X_train, y_train, X_test, y_test
    raise ValueError(f"dataset must be 'mnist' or 'fashion_mnist'; received {dataset!r}.")


def train_model(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, seed: int, epochs: int, batch_size: int, lr: float
) -> nn.Module:
    """Train ``model`` in place with Adam on ``(X, y)``; ``seed`` sets the batch order. Returns it in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model(X[index]), y[index]).backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) on ``(X, y)``.

    Examples
    --------
    >>> loss, acc = evaluate(torch.nn.Linear(2, 2), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    >>> 0.0 <= acc <= 1.0
    True
    """
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(X), batch_size):
        logits = model(X[start : start + batch_size])
        target = y[start : start + batch_size]
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(1) == target).sum())
    return loss / len(X), correct / len(X)


def path_curves(
    model_a: nn.Module,
    model_b: nn.Module,
    alphas: np.ndarray,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    calibration: list[torch.Tensor] | None = None,
    repair_calibration: list[torch.Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Test loss and accuracy along the linear path.

    With ``calibration``, after a batch-norm reset at each point; with ``repair_calibration``, after
    :func:`~latentalign.merge.repair.repair` toward the endpoints' statistics interpolated at that point.
    """
    losses, accuracies = [], []
    for alpha, model in interpolate(model_a, model_b, alphas):
        if calibration is not None:
            model = reset_batchnorm(model, calibration)
        if repair_calibration is not None:
            model = repair(model, [model_a, model_b], repair_calibration, weights=[1.0 - alpha, alpha])
        loss, acc = evaluate(model, X, y)
        losses.append(loss)
        accuracies.append(acc)
    return np.asarray(losses), np.asarray(accuracies)


def _train_models(
    family: dict[str, Any], setup: dict[str, Any], X: torch.Tensor, y: torch.Tensor
) -> tuple[list[nn.Module], PermutationSpec]:
    seed, models = int(setup["seed"]), []
    for offset in range(int(family.get("n_models", 2))):
        torch.manual_seed(seed + offset)
        model, spec = build_family(family)
        models.append(
            train_model(
                model,
                X,
                y,
                seed=seed + offset,
                epochs=int(family["epochs"]),
                batch_size=int(family.get("batch_size", setup["batch_size"])),
                lr=float(setup["lr"]),
            )
        )
    return models, spec


def _merged_accuracy(
    models: list[nn.Module],
    states: list[dict[str, torch.Tensor]],
    X: torch.Tensor,
    y: torch.Tensor,
    calibration: list[torch.Tensor],
    has_bn: bool,
) -> tuple[float, float, float]:
    """Loss and accuracy of the average of ``states`` (after a BN reset where there is BN), and accuracy after REPAIR."""
    merged = as_model(models[0], merge(states))
    aligned = [as_model(models[0], s) for s in states]
    loss, acc = evaluate(reset_batchnorm(merged, calibration) if has_bn else merged, X, y)
    _, acc_repair = evaluate(repair(merged, aligned, calibration), X, y)
    return loss, acc, acc_repair


def _merge_all(
    family: dict[str, Any],
    setup: dict[str, Any],
    models: list[nn.Module],
    spec: PermutationSpec,
    weight_perms: dict[tuple[int, int], dict[str, np.ndarray]],
    data: tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]],
    has_bn: bool,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Merge all models after pairwise matching to model 0 and after cycle-consistent matching (C2M3)."""
    X_test, y_test, calibration = data
    n = len(models)
    pairwise = [models[0].state_dict()] + [
        apply_permutation(models[i].state_dict(), spec, weight_perms[(0, i)]) for i in range(1, n)
    ]
    start = time.perf_counter()
    cycle = cycle_consistent_matching(models, spec, max_iter=int(setup["cycle_max_iter"]))
    cycle_s = time.perf_counter() - start
    universe = [apply_permutation(m.state_dict(), spec, cycle.to_universe[i]) for i, m in enumerate(models)]
    label = "-".join(str(i) for i in range(n))
    rows = []
    for method, states in (
        ("merge all: weight matching of each to model 0", pairwise),
        ("merge all: cycle-consistent matching (C2M3)", universe),
    ):
        loss, acc, acc_repair = _merged_accuracy(models, states, X_test, y_test, calibration, has_bn)
        rows.append(
            {
                "family": family["name"],
                "pair": label,
                "method": method + (" + BN reset" if has_bn else ""),
                "acc_merged": round(100 * acc, 2),
                "loss_merged": round(loss, 4),
                "acc_merged_repair": round(100 * acc_repair, 2),
            }
        )
    # do the pairwise maps compose? 2 -> 1 -> 0 against 2 -> 0 (weight_perms[(i, j)] reorders j onto i)
    composed = {p: weight_perms[(1, 2)][p][weight_perms[(0, 1)][p]] for p in weight_perms[(0, 2)]}
    consistency = float(np.mean([np.mean(composed[p] == weight_perms[(0, 2)][p]) for p in composed]))
    details = {
        "cycle_s": round(cycle_s, 1),
        "cycle_steps": len(cycle.objective) - 1,
        "cycle_objective": [round(v, 3) for v in cycle.objective[-3:]],
        "pairwise_composition_agreement": round(consistency, 4),
    }
    return rows, details


def _run_family(
    family: dict[str, Any], setup: dict[str, Any], alphas: np.ndarray
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    family_start = time.perf_counter()
    X_train, y_train, X_test, y_test = _load(family["dataset"], int(family["n_train"]), int(family["n_test"]))
    factor = int(family.get("downsample", 1))
    if factor > 1:  # average-pool the images (28x28 -> 14x14 at 2): a 4x cheaper ResNet on two cores
        X_train, X_test = F.avg_pool2d(X_train, factor), F.avg_pool2d(X_test, factor)
    start = time.perf_counter()
    models, spec = _train_models(family, setup, X_train, y_train)
    train_s = time.perf_counter() - start
    calibration = list(X_train[: int(setup["n_calibration"])].split(int(setup["batch_size"])))
    methods = list(family.get("methods", METHODS))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or "naive" not in methods:
        raise ValueError(
            f"family {family['name']!r}: methods must include 'naive' and come from {METHODS}; received {methods}."
        )
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in models[0].modules())
    endpoints = [evaluate(m, X_test, y_test) for m in models]
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[float]] = {}
    weight_perms: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    timings: dict[str, list[float]] = {"weight matching": [], "activation matching": [], "sweeps": []}
    agreement = []
    for i, j in itertools.combinations(range(len(models)), 2):
        model_a, model_b = models[i], models[j]
        candidates = {"naive": model_b}
        perms = {}
        if "weight matching" in methods:
            start = time.perf_counter()
            wm = weight_matching(model_a, model_b, spec, seed=int(setup["seed"]))
            timings["weight matching"].append(time.perf_counter() - start)
            timings["sweeps"].append(len(wm.objective) - 1)
            weight_perms[(i, j)] = perms["weight matching"] = wm.perms
        if "activation matching" in methods:
            start = time.perf_counter()
            perms["activation matching"] = activation_matching(model_a, model_b, spec, calibration).perms
            timings["activation matching"].append(time.perf_counter() - start)
        if len(perms) == 2:
            wm_perms, am_perms = perms["weight matching"], perms["activation matching"]
            agreement.append(float(np.mean([np.mean(wm_perms[p] == am_perms[p]) for p in wm_perms])))
        for method, p in perms.items():
            candidates[method] = as_model(model_b, apply_permutation(model_b.state_dict(), spec, p))
        for method, b in candidates.items():
            for reset in [False, True] if has_bn else [False]:
                losses, accs = path_curves(
                    model_a, b, alphas, X_test, y_test, calibration=calibration if reset else None
                )
                label = method + (" + BN reset" if reset else "")
                curves[f"{i}-{j} {label}"] = accs.tolist()
                row = {
                    "family": family["name"],
                    "pair": f"{i}-{j}",
                    "method": label,
                    "acc_A": round(100 * endpoints[i][1], 2),
                    "acc_B": round(100 * endpoints[j][1], 2),
                    "acc_mid": round(100 * float(accs[np.argmin(np.abs(alphas - 0.5))]), 2),
                    "loss_barrier": round(barrier_from_curve(alphas, losses), 4),
                    "acc_barrier": round(100 * barrier_from_curve(alphas, accs, higher_is_better=True), 2),
                }
                if reset == has_bn and family.get("repair", True):
                    losses, accs = path_curves(model_a, b, alphas, X_test, y_test, repair_calibration=calibration)
                    curves[f"{i}-{j} {method} + REPAIR"] = accs.tolist()
                    row["loss_barrier_repair"] = round(barrier_from_curve(alphas, losses), 4)
                    row["acc_barrier_repair"] = round(100 * barrier_from_curve(alphas, accs, higher_is_better=True), 2)
                rows.append(row)
    details: dict[str, Any] = {
        "curves": curves,
        "train_s": round(train_s, 1),
        "n_models": len(models),
        "endpoint_accuracy": [round(100 * e[1], 2) for e in endpoints],
        "weight_matching_s": round(float(np.mean(timings["weight matching"])), 2)
        if timings["weight matching"]
        else None,
        "weight_matching_sweeps": int(max(timings["sweeps"])) if timings["sweeps"] else None,
        "activation_matching_s": round(float(np.mean(timings["activation matching"])), 2)
        if timings["activation matching"]
        else None,
        "agreement": float(np.mean(agreement)) if agreement else None,
        "n_train": int(family["n_train"]),
        "n_test": int(family["n_test"]),
        "image_size": int(X_train.shape[-1]),
        "has_bn": has_bn,
    }
    if family.get("merge_all") and len(models) >= 3:
        if "weight matching" not in methods:
            raise ValueError(f"family {family['name']!r}: merge_all needs 'weight matching' among its methods.")
        merged_rows, details["merge_all"] = _merge_all(
            family, setup, models, spec, weight_perms, (X_test, y_test, calibration), has_bn
        )
        rows += merged_rows
    details["wall_s"] = round(time.perf_counter() - family_start, 1)
    return rows, details


_COLORS = {"naive": "tab:gray", "weight matching": "tab:orange", "activation matching": "tab:green"}


def _plot_paths(alphas: np.ndarray, details: dict[str, Any], names: list[str], out: Path, name: str) -> Path:
    """Test accuracy along the path between models 0 and 1 of each family in ``names``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.3), squeeze=False)
    for ax, family in zip(axes[0], names):
        curves = {k.removeprefix("0-1 "): v for k, v in details[family]["curves"].items() if k.startswith("0-1 ")}
        has_reset = any(k.endswith(" + BN reset") for k in curves)
        for label, accs in curves.items():
            method = label.removesuffix(" + BN reset").removesuffix(" + REPAIR")
            if label.endswith(" + REPAIR"):
                style = "--"
            else:
                style = "-" if (label != method or not has_reset) else ":"
            ax.plot(
                alphas,
                100 * np.asarray(accs),
                marker="o",
                markersize=3,
                label=label,
                color=_COLORS[method],
                linestyle=style,
            )
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("alpha (0 = model 0, 1 = model 1)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=5)
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_sweeps(sweeps: list[dict[str, Any]], out: Path, name: str) -> Path:
    """Loss barrier against width, naive and after weight matching (and REPAIR), one panel per sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps), 3.3), squeeze=False)
    for ax, sweep in zip(axes[0], sweeps):
        for key, label, color, style in (
            ("naive", "naive", "tab:gray", ":"),
            ("matched", "weight matching", "tab:orange", "-"),
            ("repaired", "weight matching + REPAIR", "tab:red", "--"),
        ):
            ax.plot(sweep["widths"], sweep[key], marker="o", color=color, linestyle=style, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sweep["widths"], [str(w) for w in sweep["widths"]])
        ax.set_title(sweep["name"], fontsize=9)
        ax.set_xlabel(sweep.get("width_label", "width"))
        ax.set_ylabel("test loss barrier (nats)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / f"{name}_width.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pair_check(rows: list[dict[str, Any]], name: str, method: str, naive: str, fraction: float, claim: str) -> Check:
    matched = [r for r in rows if r["family"] == name and r["method"] == method]
    baseline = {r["pair"]: r for r in rows if r["family"] == name and r["method"] == naive}
    parts, passed = [], True
    for r in matched:
        base = baseline[r["pair"]]
        passed &= 0 < base["loss_barrier"] and r["loss_barrier"] <= fraction * base["loss_barrier"]
        parts.append(
            f"{r['loss_barrier']:.3f} vs {base['loss_barrier']:.3f} (accuracy barrier {r['acc_barrier']:.1f} vs "
            f"{base['acc_barrier']:.1f} points)"
        )
    pairs = "" if len(matched) == 1 else f"{len(matched)} pairs: "
    return Check(
        f"{name}: {method} cuts the loss barrier to <= {fraction:g} x naive{' (every pair)' if pairs else ''}",
        claim,
        pairs + "; ".join(parts),
        bool(passed),
    )


def _checks(
    config: dict[str, Any], families: list[dict[str, Any]], sweeps: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> list[Check]:
    setup, claims = config["setup"], config["paper"]["claims"]
    fraction = float(setup["max_barrier_fraction"])
    checks = []
    for family in families:
        if not family.get("checks", True):
            continue
        name, suffix = family["name"], "" if family["kind"] == "mlp" else " + BN reset"
        checks.append(
            _pair_check(rows, name, "weight matching" + suffix, "naive" + suffix, fraction, claims["weight_matching"])
        )
        checks.append(
            _pair_check(
                rows, name, "activation matching" + suffix, "naive" + suffix, fraction, claims["activation_matching"]
            )
        )
        if suffix:
            reset = [r for r in rows if r["family"] == name and r["method"] == "weight matching + BN reset"]
            plain = {r["pair"]: r for r in rows if r["family"] == name and r["method"] == "weight matching"}
            checks.append(
                Check(
                    f"{name}: resetting batch-norm statistics lowers the matched accuracy barrier",
                    claims["bn_reset"],
                    "; ".join(
                        f"{r['acc_barrier']:.1f} points with reset vs {plain[r['pair']]['acc_barrier']:.1f} without "
                        f"(loss {r['loss_barrier']:.3f} vs {plain[r['pair']]['loss_barrier']:.3f})"
                        for r in reset
                    ),
                    all(r["acc_barrier"] < plain[r["pair"]]["acc_barrier"] for r in reset),
                )
            )
        merged = [r for r in rows if r["family"] == name and "acc_merged" in r]
        if merged:
            cycle = next(r for r in merged if "cycle-consistent" in r["method"])
            pairwise = next(r for r in merged if "to model 0" in r["method"])
            margin = float(setup["cycle_min_gain_points"])
            n = len(cycle["pair"].split("-"))
            checks.append(
                Check(
                    f"{name}: merging {n} models after cycle-consistent matching beats pairwise matching to one model "
                    f"(merged accuracy higher by > {margin:g} points{', BN reset' if suffix else ''})",
                    claims["cycle_consistent"],
                    f"{cycle['acc_merged']:.1f} % vs {pairwise['acc_merged']:.1f} % (after REPAIR: "
                    f"{cycle['acc_merged_repair']:.1f} % vs {pairwise['acc_merged_repair']:.1f} %)",
                    cycle["acc_merged"] - pairwise["acc_merged"] > margin,
                )
            )
    max_rho = float(setup["sweep_max_spearman"])
    for sweep in sweeps:
        rho = (
            float(spearmanr(sweep["widths"], sweep["matched"]).statistic) if len(sweep["widths"]) > 1 else float("nan")
        )
        values = ", ".join(f"{w}: {b:.3f}" for w, b in zip(sweep["widths"], sweep["matched"]))
        checks.append(
            Check(
                f"{sweep['name']}: the weight-matched loss barrier decreases with width (Spearman rho <= {max_rho:g})",
                claims["width"],
                f"{values} (rho {rho:.2f}; naive {', '.join(f'{b:.3f}' for b in sweep['naive'])})",
                bool(rho <= max_rho),
            )
        )
    gain = float(setup["repair_min_gain"])
    for sweep in sweeps:
        if sweep["kind"] != "mlp":
            continue
        plain, repaired = sweep["matched"][0], sweep["repaired"][0]
        checks.append(
            Check(
                f"{sweep['families'][0]}: REPAIR cuts the weight-matched loss barrier by >= {100 * gain:.0f} % "
                "(narrowest width, no batch norm)",
                claims["repair"],
                f"{repaired:.3f} with REPAIR vs {plain:.3f} without (all widths: "
                + ", ".join(f"{r:.3f}" for r in sweep["repaired"])
                + ")",
                repaired <= (1 - gain) * plain,
            )
        )
    return checks


def _sweep_curves(sweeps: list[dict[str, Any]], families: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Fill each sweep with its naive, matched and repaired loss barriers (pair 0-1) per width."""
    kinds = {f["name"]: f["kind"] for f in families}
    for sweep in sweeps:
        sweep["kind"] = kinds[sweep["families"][0]]
        suffix = "" if sweep["kind"] == "mlp" else " + BN reset"
        for key, method, column in (
            ("naive", "naive", "loss_barrier"),
            ("matched", "weight matching", "loss_barrier"),
            ("repaired", "weight matching", "loss_barrier_repair"),
        ):
            sweep[key] = [
                next(r for r in rows if r["family"] == name and r["pair"] == "0-1" and r["method"] == method + suffix)[
                    column
                ]
                for name in sweep["families"]
            ]


def run(config: dict[str, Any], *, out_dir: str | Path) -> ExperimentResult:
    """Train, match, interpolate and merge networks per family; report barriers (see the module docstring)."""
    from latentalign.experiments.common import restore_threads, set_threads

    setup = config["setup"]
    out = Path(out_dir)
    alphas = np.linspace(0.0, 1.0, int(setup["n_alphas"]))
    families, sweeps = expand_sweeps(setup)
    threads = set_threads(setup)
    try:
        rows: list[dict[str, Any]] = []
        details: dict[str, Any] = {}
        for family in families:
            logger.info("merging: training and matching %s", family["name"])
            family_rows, details[family["name"]] = _run_family(family, setup, alphas)
            rows += family_rows
    finally:
        restore_threads(threads)
    _sweep_curves(sweeps, families, rows)
    checks = _checks(config, families, sweeps, rows)
    notes = [
        f"Models of a family are trained from seeds {setup['seed']}, {int(setup['seed']) + 1}, ... (pairs name them "
        f"0, 1, ...), Adam (lr {setup['lr']}, batch {setup['batch_size']} unless the family sets its own); the path "
        f"is evaluated at {len(alphas)} evenly spaced alphas on the held-out images. BN reset: running statistics "
        f"recomputed on {setup['n_calibration']} training images at every point of the path (the same images feed "
        "activation matching and REPAIR). REPAIR (`_repair` columns): every hidden unit (the batch-norm outputs "
        "where there is batch norm) rescaled at every point of the path to the interpolated mean and std of the "
        "endpoints. Barriers: loss in nats, accuracy in points.",
    ]
    for family in families:
        info = details[family["name"]]
        text = (
            f"{family['name']}: {info['n_models']} models, {info['n_train']} training / {info['n_test']} test images "
            f"({info['image_size']} px), test accuracy {', '.join(f'{a:.1f}' for a in info['endpoint_accuracy'])} %; "
            f"training {info['train_s']:.0f} s"
        )
        if info["weight_matching_s"] is not None:
            text += f"; weight matching {info['weight_matching_s']:.2f} s per pair (<= {info['weight_matching_sweeps']} sweeps)"
        if info["activation_matching_s"] is not None:
            text += f", activation matching {info['activation_matching_s']:.2f} s"
        if info["agreement"] is not None:
            text += f"; the two methods agree on {100 * info['agreement']:.0f} % of units"
        if "merge_all" in info:
            merged = info["merge_all"]
            text += (
                f"; cycle-consistent matching {merged['cycle_s']:.0f} s ({merged['cycle_steps']} Frank-Wolfe steps); "
                f"the pairwise weight matchings compose (2 -> 1 -> 0 = 2 -> 0) on "
                f"{100 * merged['pairwise_composition_agreement']:.0f} % of units"
            )
        notes.append(text + f"; whole family start to finish {info['wall_s']:.0f} s.")
    for sweep in sweeps:
        notes.append(
            f"{sweep['name']} (pair 0-1, loss barrier in nats): "
            + "; ".join(
                f"{w}: naive {n:.3f}, matched {m:.3f}, + REPAIR {r:.3f}"
                for w, n, m, r in zip(sweep["widths"], sweep["naive"], sweep["matched"], sweep["repaired"])
            )
            + "."
        )
    notes += list(config.get("notes", []))
    main = [f["name"] for f in families if f.get("checks", True)]
    plots = [_plot_paths(alphas, details, main, out, config["name"])]
    if sweeps:
        plots.append(_plot_sweeps(sweeps, out, config["name"]))
    return ExperimentResult(
        rows=rows, checks=checks, notes=notes, plots=plots, details={"families": details, "sweeps": sweeps}
    )
