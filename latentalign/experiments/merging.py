"""Merging independently trained networks after matching their units (Git Re-Basin; REPAIR's reset).

For each model family of the config (MLPs on MNIST, VGG-like CNNs and ResNets with batch norm on
Fashion-MNIST) two networks are trained from different seeds (initial weights and batch order) on the
same images. The linear path between them is evaluated on held-out images three ways: as trained
("naive"), after :func:`~latentalign.merge.matching.weight_matching` and after
:func:`~latentalign.merge.matching.activation_matching` permuted model B onto model A. For families with
batch norm every model on the path is also evaluated after
:func:`~latentalign.merge.repair.reset_batchnorm` on training images ("+ BN reset"). The page reports
the loss and accuracy barriers (largest gap between the path and the straight line joining its ends)
and the midpoint's accuracy.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
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
    interpolate,
    mlp_spec,
    reset_batchnorm,
    resnet_spec,
    weight_matching,
)

__all__ = ["run", "build_family", "train_model", "evaluate", "path_curves"]

logger = logging.getLogger(__name__)


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
) -> tuple[np.ndarray, np.ndarray]:
    """Test loss and accuracy along the linear path; with ``calibration``, after a batch-norm reset at each point."""
    losses, accuracies = [], []
    for _, model in interpolate(model_a, model_b, alphas):
        if calibration is not None:
            model = reset_batchnorm(model, calibration)
        loss, acc = evaluate(model, X, y)
        losses.append(loss)
        accuracies.append(acc)
    return np.asarray(losses), np.asarray(accuracies)


def _run_family(
    family: dict[str, Any], setup: dict[str, Any], alphas: np.ndarray
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    seed = int(setup["seed"])
    X_train, y_train, X_test, y_test = _load(family["dataset"], int(family["n_train"]), int(family["n_test"]))
    factor = int(family.get("downsample", 1))
    if factor > 1:  # average-pool the images (28x28 -> 14x14 at 2): a 4x cheaper ResNet on two cores
        X_train, X_test = F.avg_pool2d(X_train, factor), F.avg_pool2d(X_test, factor)
    models = []
    start = time.perf_counter()
    for offset in range(2):
        torch.manual_seed(seed + offset)
        model, spec = build_family(family)
        models.append(
            train_model(
                model,
                X_train,
                y_train,
                seed=seed + offset,
                epochs=int(family["epochs"]),
                batch_size=int(family.get("batch_size", setup["batch_size"])),
                lr=float(setup["lr"]),
            )
        )
    train_s = time.perf_counter() - start
    model_a, model_b = models
    n_cal = int(setup["n_calibration"])
    calibration = list(X_train[:n_cal].split(int(setup["batch_size"])))
    start = time.perf_counter()
    wm = weight_matching(model_a, model_b, spec, seed=seed)
    wm_s = time.perf_counter() - start
    start = time.perf_counter()
    am = activation_matching(model_a, model_b, spec, calibration)
    am_s = time.perf_counter() - start
    candidates = {
        "naive": model_b,
        "weight matching": as_model(model_b, apply_permutation(model_b.state_dict(), spec, wm.perms)),
        "activation matching": as_model(model_b, apply_permutation(model_b.state_dict(), spec, am.perms)),
    }
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model_a.modules())
    rows, curves = [], {}
    endpoints = [evaluate(m, X_test, y_test) for m in models]
    for method, b in candidates.items():
        for reset in [False, True] if has_bn else [False]:
            losses, accs = path_curves(model_a, b, alphas, X_test, y_test, calibration=calibration if reset else None)
            label = method + (" + BN reset" if reset else "")
            curves[label] = accs.tolist()
            rows.append(
                {
                    "family": family["name"],
                    "method": label,
                    "acc_A": round(100 * endpoints[0][1], 2),
                    "acc_B": round(100 * endpoints[1][1], 2),
                    "acc_mid": round(100 * float(accs[np.argmin(np.abs(alphas - 0.5))]), 2),
                    "loss_barrier": round(barrier_from_curve(alphas, losses), 4),
                    "acc_barrier": round(100 * barrier_from_curve(alphas, accs, higher_is_better=True), 2),
                }
            )
    details = {
        "curves": curves,
        "train_s": round(train_s, 1),
        "weight_matching_s": round(wm_s, 2),
        "weight_matching_sweeps": len(wm.objective) - 1,
        "activation_matching_s": round(am_s, 2),
        "agreement": float(np.mean([np.mean(wm.perms[p] == am.perms[p]) for p in wm.perms])),
        "n_train": int(family["n_train"]),
        "n_test": int(family["n_test"]),
        "image_size": int(X_train.shape[-1]),
    }
    return rows, details


def _plot(alphas: np.ndarray, details: dict[str, Any], out: Path, name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(details), figsize=(4.2 * len(details), 3.3), squeeze=False)
    colors = {"naive": "tab:gray", "weight matching": "tab:orange", "activation matching": "tab:green"}
    for ax, (family, info) in zip(axes[0], details.items()):
        for label, accs in info["curves"].items():
            method = label.removesuffix(" + BN reset")
            has_reset = any(k.endswith(" + BN reset") for k in info["curves"])
            style = "-" if (label != method or not has_reset) else ":"
            ax.plot(
                alphas,
                100 * np.asarray(accs),
                marker="o",
                markersize=3,
                label=label,
                color=colors[method],
                linestyle=style,
            )
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("alpha (0 = A, 1 = B)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(config: dict[str, Any], *, out_dir: str | Path) -> ExperimentResult:
    """Train two networks per family, match and interpolate them, report barriers (see the module docstring)."""
    from latentalign.experiments.common import restore_threads, set_threads

    setup, paper = config["setup"], config["paper"]
    out = Path(out_dir)
    alphas = np.linspace(0.0, 1.0, int(setup["n_alphas"]))
    threads = set_threads(setup)
    try:
        rows: list[dict[str, Any]] = []
        details: dict[str, Any] = {}
        for family in setup["families"]:
            logger.info("merging: training and matching %s", family["name"])
            family_rows, details[family["name"]] = _run_family(family, setup, alphas)
            rows += family_rows
    finally:
        restore_threads(threads)

    def row(family: str, method: str) -> dict[str, Any]:
        return next(r for r in rows if r["family"] == family and r["method"] == method)

    claims = paper["claims"]
    fraction = float(setup["max_barrier_fraction"])
    checks = []
    for family in setup["families"]:
        name = family["name"]
        has_bn = family["kind"] != "mlp"
        suffix = " + BN reset" if has_bn else ""
        naive, matched = row(name, "naive" + suffix), row(name, "weight matching" + suffix)
        activation = row(name, "activation matching" + suffix)
        checks.append(
            Check(
                f"{name}: weight matching{suffix} cuts the loss barrier to <= {fraction:g} x naive",
                claims["weight_matching"],
                f"{matched['loss_barrier']:.3f} vs {naive['loss_barrier']:.3f} (accuracy barrier {matched['acc_barrier']:.1f} vs {naive['acc_barrier']:.1f} points)",
                0 < naive["loss_barrier"] and matched["loss_barrier"] <= fraction * naive["loss_barrier"],
            )
        )
        checks.append(
            Check(
                f"{name}: activation matching{suffix} cuts the loss barrier to <= {fraction:g} x naive",
                claims["activation_matching"],
                f"{activation['loss_barrier']:.3f} vs {naive['loss_barrier']:.3f}",
                0 < naive["loss_barrier"] and activation["loss_barrier"] <= fraction * naive["loss_barrier"],
            )
        )
        if has_bn:
            plain = row(name, "weight matching")
            checks.append(
                Check(
                    f"{name}: resetting batch-norm statistics lowers the matched accuracy barrier",
                    claims["bn_reset"],
                    f"{matched['acc_barrier']:.1f} points with reset vs {plain['acc_barrier']:.1f} without (loss "
                    f"{matched['loss_barrier']:.3f} vs {plain['loss_barrier']:.3f})",
                    matched["acc_barrier"] < plain["acc_barrier"],
                )
            )
    notes = [
        f"Two models per family, seeds {setup['seed']} and {int(setup['seed']) + 1}, Adam (lr {setup['lr']}, batch "
        f"{setup['batch_size']} unless the family sets its own); the path is evaluated at {len(alphas)} evenly spaced alphas on the held-out images. "
        f"BN reset: running statistics recomputed on {setup['n_calibration']} training images at every point of the "
        "path (the same images feed activation matching). Barriers: loss in nats, accuracy in points.",
    ]
    for name, info in details.items():
        notes.append(
            f"{name}: {info['n_train']} training / {info['n_test']} test images ({info['image_size']} px); training {info['train_s']:.0f} s; weight "
            f"matching {info['weight_matching_s']:.2f} s ({info['weight_matching_sweeps']} sweeps), activation matching "
            f"{info['activation_matching_s']:.2f} s; the two methods agree on {100 * info['agreement']:.0f} % of units."
        )
    notes += list(config.get("notes", []))
    plot = _plot(alphas, details, out, config["name"])
    return ExperimentResult(rows=rows, checks=checks, notes=notes, plots=[plot], details={"families": details})
