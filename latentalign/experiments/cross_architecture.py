"""Cross-architecture stitching on Fashion-MNIST (Maiorca et al., NeurIPS 2023, Table 1).

Also home of the Fashion-MNIST / EfficientNet-Lite embedding helpers shared with
:mod:`latentalign.experiments.relative_classifiers`: the images are drawn in fixed blocks so that every
experiment (and ``latentalign demo``) reuses the same cached embeddings.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

__all__ = ["FmnistSubset", "ScaledAffine", "fashion_mnist_subset", "embed_subset", "stitch_pair", "run"]

logger = logging.getLogger(__name__)

#: Sizes of the demo's Fashion-MNIST draw (``latentalign.experiments.demo``): its blocks are our first blocks.
DEMO_TRAIN, DEMO_TEST = 1000, 500


@dataclass(frozen=True)
class FmnistSubset:
    """A fixed subset of Fashion-MNIST drawn in blocks (each block is one embedding-store entry)."""

    split: str
    blocks: list[np.ndarray]
    images: np.ndarray
    labels: np.ndarray
    ids: list[str]

    @property
    def indices(self) -> np.ndarray:
        return np.concatenate(self.blocks)


def _block_indices(n_source: int, first: int, n_total: int) -> list[np.ndarray]:
    """Block 0: the demo's draw (``default_rng(0)``, ``first`` rows); later blocks add fresh rows.

    The demo draws the train rows then the test rows from the same generator, so block 0 of the test split
    needs the train draw first; both splits reproduce ``latentalign.experiments.demo`` exactly.
    """
    rng = np.random.default_rng(0)
    demo_train = np.sort(rng.choice(60000, DEMO_TRAIN, replace=False))
    demo_test = np.sort(rng.choice(10000, DEMO_TEST, replace=False))
    block0 = demo_train if n_source == 60000 else demo_test
    if n_total <= len(block0):
        return [block0[:n_total]] if n_total < len(block0) else [block0]
    blocks = [block0]
    taken = set(block0.tolist())
    seed = 1
    while sum(len(b) for b in blocks) < n_total:
        size = min(first, n_total - sum(len(b) for b in blocks))
        pool = np.setdiff1d(np.arange(n_source), np.fromiter(taken, dtype=np.int64))
        block = np.sort(np.random.default_rng(seed).choice(pool, size, replace=False))
        blocks.append(block)
        taken.update(block.tolist())
        seed += 1
    return blocks


def fashion_mnist_subset(split: str, n: int) -> FmnistSubset:
    """``n`` Fashion-MNIST rows of ``split``: the demo's draw first, then blocks of the same size.

    ``n`` must be a multiple of the demo's block (1000 train / 500 test) or smaller than it; a smaller
    ``n`` takes the first ``n`` rows of the demo's draw (a new cache entry).
    """
    from latentalign.datasets import load_fashion_mnist

    first = DEMO_TRAIN if split == "train" else DEMO_TEST
    if n > first and n % first:
        raise ValueError(f"n for the {split} split must be <= {first} or a multiple of {first}, got {n}.")
    data = load_fashion_mnist(split)
    blocks = _block_indices(len(data.ids), first, n)
    idx = np.concatenate(blocks)
    return FmnistSubset(split, blocks, data.images[idx], data.labels[idx], [data.ids[i] for i in idx])


def embed_subset(model: str, subset: FmnistSubset) -> np.ndarray:
    """Embeddings of ``subset`` by ``model`` (an encoder name), block by block through the store cache."""
    from latentalign.datasets import load_fashion_mnist
    from latentalign.encoders import load_encoder
    from latentalign.store import embed

    data = load_fashion_mnist(subset.split)
    encoder = None
    parts = []
    logger.info("embedding %d Fashion-MNIST %s images with %s (store cache)", len(subset.labels), subset.split, model)
    for block in subset.blocks:
        ids = [data.ids[i] for i in block]
        if encoder is None:
            encoder = load_encoder(model)
        start = time.perf_counter()
        store = embed(encoder, data.images[block], ids, dataset=f"fashion_mnist/{subset.split}", progress=False)
        parts.append(np.asarray(store.get(ids), dtype=np.float32))
        logger.info("%s %s block of %d: %.1f s", model, subset.split, len(block), time.perf_counter() - start)
    return np.ascontiguousarray(np.concatenate(parts))


# ---------------------------------------------------------------------------------------------- methods
METHODS = ("absolute", "relative", "affine", "ortho", "mlp", "kernel_ridge")
#: Ridge penalties tried for the kernel ridge map (picked on a held-out fifth of the anchors).
KERNEL_RIDGE_ALPHAS = (1e-3, 1e-2, 0.1, 1.0)


def _head(features: np.ndarray, labels: np.ndarray, seed: int):
    """The target model's classifier: standard scaling + multinomial logistic regression (linear)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0, random_state=seed)).fit(
        features, labels
    )


def _scores(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    return {
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(f1_score(labels, predicted, average="macro")),
        "weighted_f1": float(f1_score(labels, predicted, average="weighted")),
    }


class ScaledAffine:
    """Maiorca et al.'s ``affine`` translator: standard-scale both spaces on the anchors, fit a ridge
    affine map between the scaled spaces, undo the target scaling.

    The ridge penalty is chosen on the anchors only (a held-out fifth of them, grid ``alphas``), then
    the map is refitted on all anchors; no test data is seen.
    """

    def __init__(self, alphas: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5), seed: int = 0) -> None:
        self.alphas = alphas
        self.seed = seed

    def fit(self, X: np.ndarray, Y: np.ndarray) -> ScaledAffine:
        from latentalign.align import Affine
        from latentalign.preprocessing import StandardScale

        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(X))
        held, kept = order[: len(X) // 5], order[len(X) // 5 :]
        errors = []
        for alpha in self.alphas:
            sx, sy = StandardScale().fit(X[kept]), StandardScale().fit(Y[kept])
            aff = Affine(alpha=float(alpha)).fit(sx.transform(X[kept]), sy.transform(Y[kept]))
            pred = aff.transform(sx.transform(X[held]))
            errors.append(float(((pred - sy.transform(Y[held])) ** 2).mean()))
        self.alpha_ = float(self.alphas[int(np.argmin(errors))])
        self.validation_mse_ = dict(zip(map(float, self.alphas), errors))
        self.sx_, self.sy_ = StandardScale().fit(X), StandardScale().fit(Y)
        self.affine_ = Affine(alpha=self.alpha_).fit(self.sx_.transform(X), self.sy_.transform(Y))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        # the transforms return the backend they are given: an ndarray here
        return cast(np.ndarray, self.sy_.inverse_transform(self.affine_.transform(self.sx_.transform(X))))


def fit_kernel_ridge(X: np.ndarray, Y: np.ndarray, seed: int = 0) -> tuple[Any, float]:
    """RBF kernel ridge map from ``X`` to ``Y`` with its penalty chosen on a held-out fifth of the anchors.

    Returns the map refitted on all anchors and the chosen ``alpha`` (from :data:`KERNEL_RIDGE_ALPHAS`).
    """
    from latentalign.align import KernelRidgeAligner

    order = np.random.default_rng(seed).permutation(len(X))
    held, kept = order[: len(X) // 5], order[len(X) // 5 :]
    errors = []
    for alpha in KERNEL_RIDGE_ALPHAS:
        pred = KernelRidgeAligner(alpha=alpha).fit(X[kept], Y[kept]).transform(X[held])
        errors.append(float(((pred - Y[held]) ** 2).mean()))
    alpha = float(KERNEL_RIDGE_ALPHAS[int(np.argmin(errors))])
    return KernelRidgeAligner(alpha=alpha).fit(X, Y), alpha


def fit_mlp(X: np.ndarray, Y: np.ndarray, seed: int = 0) -> Any:
    """The MLP map with its defaults (early stopping on a tenth of the anchors), seeded."""
    from latentalign.align import MLPAligner

    return MLPAligner(random_state=seed).fit(X, Y)


def stitch_pair(
    src: dict[str, np.ndarray],
    tgt: dict[str, np.ndarray],
    anchors: np.ndarray,
    y_train: np.ndarray,
    y_test: np.ndarray,
    *,
    head_seed: int = 0,
    heads: dict[str, Any] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Score the target's linear head on the source's test embeddings mapped by each method.

    ``src`` / ``tgt`` hold ``"train"`` and ``"test"`` embeddings of the same rows; ``anchors`` indexes the
    training rows used as parallel anchors. Returns scores per method (plus ``"no_stitch"``: the
    target's own encoder) and facts about the fitted maps.
    """
    from latentalign.align import Procrustes, RelativeProjection

    heads = {} if heads is None else heads
    if "absolute" not in heads:
        heads["absolute"] = _head(tgt["train"], y_train, head_seed)
    rel = RelativeProjection(metric="cosine", center=False).fit(src["train"][anchors], tgt["train"][anchors])
    if "relative" not in heads:
        heads["relative"] = _head(np.asarray(rel.transform_target(tgt["train"])), y_train, head_seed)
    out = {"no_stitch": _scores(y_test, heads["absolute"].predict(tgt["test"]))}
    out["absolute"] = _scores(y_test, heads["absolute"].predict(src["test"]))
    out["relative"] = _scores(y_test, heads["relative"].predict(np.asarray(rel.transform(src["test"]))))
    own_relative = np.asarray(rel.transform_target(tgt["test"]))
    out["relative_no_stitch"] = _scores(y_test, heads["relative"].predict(own_relative))
    affine = ScaledAffine(seed=head_seed).fit(src["train"][anchors], tgt["train"][anchors])
    out["affine"] = _scores(y_test, heads["absolute"].predict(np.asarray(affine.transform(src["test"]))))
    ortho = Procrustes(center=True, standardize=True).fit(src["train"][anchors], tgt["train"][anchors])
    out["ortho"] = _scores(y_test, heads["absolute"].predict(np.asarray(ortho.transform(src["test"]))))
    mlp = fit_mlp(src["train"][anchors], tgt["train"][anchors], head_seed)
    out["mlp"] = _scores(y_test, heads["absolute"].predict(np.asarray(mlp.transform(src["test"]))))
    kernel_ridge, kr_alpha = fit_kernel_ridge(src["train"][anchors], tgt["train"][anchors], head_seed)
    out["kernel_ridge"] = _scores(y_test, heads["absolute"].predict(np.asarray(kernel_ridge.transform(src["test"]))))
    return out, {"affine_alpha": affine.alpha_, "kernel_ridge_alpha": kr_alpha, "mlp_epochs": mlp.n_iter_}


# ---------------------------------------------------------------------------------------------- runner
def _plot(
    summary: dict[str, tuple[float, float]], published: dict[str, float], out: Path, name: str, models: list[str]
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["no_stitch", *METHODS]
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    x = np.arange(len(keys))
    ax.bar(
        x - 0.2,
        [summary[k][0] for k in keys],
        0.4,
        yerr=[summary[k][1] for k in keys],
        capsize=3,
        label="ours (mean +- std over ordered pairs)",
    )
    ax.bar(x + 0.2, [published.get(k, np.nan) for k in keys], 0.4, label="Maiorca et al. 2023, Table 1 (F-MNIST)")
    ax.set_xticks(x, [k.replace("_", "-") for k in keys])
    ax.set_ylabel("macro F1")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"Cross-architecture stitching, {', '.join(models)} on Fashion-MNIST", fontsize=9)
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(config: dict[str, Any], *, out_dir: Any):
    """Every ordered pair of encoders at every anchor budget: source test embeddings -> target's linear head.

    The paper's checks use the ``n_anchors`` budget; the other budgets of ``anchor_budgets`` show how each
    method, linear or not, depends on the number of anchors.
    """
    import itertools

    from latentalign.experiments.budgets import nested_anchors
    from latentalign.experiments.common import restore_threads, set_threads

    setup = config["setup"]
    threads = set_threads(setup)
    try:
        train = fashion_mnist_subset("train", int(setup["n_train"]))
        test = fashion_mnist_subset("test", int(setup["n_test"]))
        start = time.perf_counter()
        emb = {m: {"train": embed_subset(m, train), "test": embed_subset(m, test)} for m in setup["models"]}
        embed_s = time.perf_counter() - start
        check_budget = int(setup["n_anchors"])
        budgets = nested_anchors(len(train.ids), [*setup.get("anchor_budgets", []), check_budget], int(setup["seed"]))
        # the target's absolute head does not depend on the anchors: fitted once per target
        absolute_heads = {m: _head(emb[m]["train"], train.labels, int(setup["seed"])) for m in setup["models"]}
        scores: dict[int, dict[tuple[str, str], dict[str, dict[str, float]]]] = {k: {} for k in budgets}
        infos: dict[int, dict[tuple[str, str], dict[str, Any]]] = {k: {} for k in budgets}
        for k, anchors in budgets.items():
            heads = {m: {"absolute": absolute_heads[m]} for m in setup["models"]}
            for src, tgt in itertools.permutations(setup["models"], 2):
                logger.info("%s -> %s, %d anchors", src, tgt, k)
                scores[k][src, tgt], infos[k][src, tgt] = stitch_pair(
                    emb[src],
                    emb[tgt],
                    anchors,
                    train.labels,
                    test.labels,
                    head_seed=int(setup["seed"]),
                    heads=heads[tgt],
                )
    finally:
        restore_threads(threads)
    return _result(config, Path(out_dir), scores, infos, check_budget, len(train.ids), len(test.ids), embed_s)


def _pair_row(src: str, tgt: str, k: int, method: str, score: dict[str, float]) -> dict[str, Any]:
    return {
        "source": src,
        "target": tgt,
        "anchors": k,
        "method": method.replace("_", "-"),
        "macro_f1": round(score["macro_f1"], 4),
        "accuracy": round(score["accuracy"], 4),
        "weighted_f1": round(score["weighted_f1"], 4),
    }


def _result(
    config: dict[str, Any],
    out: Path,
    scores: dict[int, dict[tuple[str, str], dict[str, dict[str, float]]]],
    infos: dict[int, dict[tuple[str, str], dict[str, Any]]],
    check_budget: int,
    n_train: int,
    n_test: int,
    embed_s: float,
):
    """The page from the scores of every pair at every budget: table, checks, notes, plots."""
    from latentalign.experiments.budgets import nonlinearity_note, plot_budget_curves
    from latentalign.experiments.runner import Check, ExperimentResult

    setup, paper = config["setup"], config["paper"]
    keys = ("no_stitch", *METHODS)
    summary = {
        k: {
            m: (
                float(np.mean([s[m]["macro_f1"] for s in by_pair.values()])),
                float(np.std([s[m]["macro_f1"] for s in by_pair.values()])),
            )
            for m in keys
        }
        for k, by_pair in scores.items()
    }
    # per-pair rows at the budget of the checks; every budget's mean over pairs after them
    rows: list[dict[str, Any]] = [
        _pair_row(src, tgt, check_budget, m, s[m]) for (src, tgt), s in scores[check_budget].items() for m in keys
    ]
    for k in summary:
        for m in keys:
            rows.append(
                {
                    "source": "mean over pairs",
                    "target": "",
                    "anchors": k,
                    "method": m.replace("_", "-"),
                    "macro_f1": round(summary[k][m][0], 4),
                    "accuracy": None,
                    "weighted_f1": None,
                }
            )
    pub = paper["published"]
    margin = float(setup["max_gap_to_no_stitch"])
    much = float(setup["min_relative_over_absolute"])
    close = float(setup["max_affine_ortho_gap"])
    mean = {m: v[0] for m, v in summary[check_budget].items()}

    def f(x: float) -> str:
        return f"{x:.2f}"

    checks = [
        Check(
            f"ortho within {100 * margin:.0f} points of no-stitch (mean macro F1 over ordered pairs)",
            f"{f(pub['ortho'])} vs {f(pub['no_stitch'])}",
            f"{f(mean['ortho'])} vs {f(mean['no_stitch'])}",
            mean["no_stitch"] - mean["ortho"] <= margin,
        ),
        Check(
            f"affine within {100 * margin:.0f} points of no-stitch",
            f"{f(pub['affine'])} vs {f(pub['no_stitch'])}",
            f"{f(mean['affine'])} vs {f(mean['no_stitch'])}",
            mean["no_stitch"] - mean["affine"] <= margin,
        ),
        Check(
            f"affine ~ ortho (|difference| <= {100 * close:.0f} points)",
            f"{f(pub['affine'])} vs {f(pub['ortho'])}",
            f"{f(mean['affine'])} vs {f(mean['ortho'])}",
            abs(mean["affine"] - mean["ortho"]) <= close,
        ),
        Check(
            "affine > relative and ortho > relative",
            f"{f(pub['affine'])}, {f(pub['ortho'])} > {f(pub['relative'])}",
            f"{f(mean['affine'])}, {f(mean['ortho'])} vs {f(mean['relative'])}",
            mean["affine"] > mean["relative"] and mean["ortho"] > mean["relative"],
        ),
        Check(
            f"relative >> absolute (by >= {100 * much:.0f} points)",
            f"{f(pub['relative'])} vs {f(pub['absolute'])}",
            f"{f(mean['relative'])} vs {f(mean['absolute'])}",
            mean["relative"] - mean["absolute"] >= much,
        ),
    ]
    n_pairs = len(scores[check_budget])
    notes = [
        f"Fashion-MNIST rows: {n_train} training images (classifier and anchor pool), {n_test} test images; "
        f"{len(setup['models'])} encoders, {n_pairs} ordered pairs. Embedding (or reading the cache) took "
        f"{embed_s:.0f} s.",
        f"Anchor budgets {', '.join(map(str, scores))}: each budget's anchors are a seeded draw from the training "
        f"images, nested (a smaller budget's anchors are among a larger one's); the checks use {check_budget} "
        "anchors, the table lists every pair at that budget and the mean over pairs at every budget.",
        nonlinearity_note(
            {k: {m: v[0] for m, v in s.items()} for k, s in summary.items()},
            linear=("affine", "ortho"),
            nonlinear=("mlp", "kernel_ridge"),
        ),
    ]
    for (src, tgt), info in infos[check_budget].items():
        notes.append(
            f"{src} -> {tgt}, {check_budget} anchors: ridge alpha of the affine map chosen on held-out anchors: "
            f"{info['affine_alpha']:g}; kernel ridge alpha: {info['kernel_ridge_alpha']:g}; MLP epochs (early "
            f"stopping): {info['mlp_epochs']}; relative head on the target's own relative coordinates: "
            f"macro F1 {scores[check_budget][src, tgt]['relative_no_stitch']['macro_f1']:.3f}."
        )
    for k, by_pair in infos.items():
        if k != check_budget:
            notes.append(
                f"{k} anchors, over the pairs: affine alphas {sorted({i['affine_alpha'] for i in by_pair.values()})}, "
                f"kernel ridge alphas {sorted({i['kernel_ridge_alpha'] for i in by_pair.values()})}, MLP epochs "
                f"{[i['mlp_epochs'] for i in by_pair.values()]}."
            )
    notes += [f"Reading of the results (written after the full run): {n}" for n in config.get("notes", [])]
    plots = [_plot({m: summary[check_budget][m] for m in keys}, pub, out, config["name"], list(setup["models"]))]
    panel = f"{', '.join(setup['models'])}: mean over {n_pairs} ordered pairs"
    curve = plot_budget_curves(
        {panel: {m: {k: summary[k][m] for k in summary} for m in METHODS if m != "absolute"}},
        out / f"{config['name']}_budgets.png",
        title="Cross-architecture stitching against the anchor budget (Fashion-MNIST)",
        ylabel="macro F1 (mean +- std over pairs)",
        reference={panel: summary[check_budget]["no_stitch"][0]},
    )
    if curve is not None:
        plots.append(curve)
    details = {
        "per_budget": [
            _pair_row(src, tgt, k, m, s[m])
            for k, by_pair in scores.items()
            for (src, tgt), s in by_pair.items()
            for m in keys
        ]
    }
    return ExperimentResult(rows=rows, checks=checks, notes=notes, plots=plots, details=details)
