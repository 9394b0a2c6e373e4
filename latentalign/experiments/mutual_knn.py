"""Mutual k-nearest-neighbour alignment across image and text models (Huh et al., ICML 2024).

Tux Paint stamps (clip art, each with an English caption) are embedded by image encoders
(EfficientNet-Lite0/1/2) and text encoders (MiniLM, MPNet, multilingual e5); every pair of models gets the
mutual k-NN score of Huh et al. (mean over items of ``|kNN_A(i) & kNN_B(i)| / k``, cosine, ``k = 10``).
With ``k`` neighbours among ``n`` items, two unrelated spaces overlap by ``k / (n - 1)`` on average (the
chance level); the runner also measures it by shuffling the pairing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from latentalign.anchors import distinct_rows
from latentalign.experiments.runner import Check, ExperimentResult

__all__ = ["run", "tuxpaint_pairs", "parameter_count"]

logger = logging.getLogger(__name__)

_SHORT = {
    "minilm": "MiniLM",
    "mpnet": "MPNet",
    "e5-small": "e5-small",
    "efficientnet-lite0": "EffNet-L0",
    "efficientnet-lite1": "EffNet-L1",
    "efficientnet-lite2": "EffNet-L2",
}


def tuxpaint_pairs(limit: int | None, seed: int) -> tuple[list[str], list[Path], list[str], list[str]]:
    """Tux Paint PNG stamps whose English and French captions are unique, as the demo selects them.

    Returns ids, image paths, English captions and stamp folders; with ``limit``, the demo's seeded subset
    (the same ids, so the embedding store's caches are shared with ``latentalign demo``).
    """
    from latentalign.datasets import load_tuxpaint
    from latentalign.experiments.common import unique_caption_rows

    tux = load_tuxpaint(languages=("en", "fr"), image_format="png")
    unique = unique_caption_rows(tux.captions["en"], tux.captions["fr"])
    n = len(unique) if limit is None else min(int(limit), len(unique))
    keep = np.sort(np.random.default_rng(seed).permutation(unique)[:n])
    return (
        [tux.ids[i] for i in keep],
        [tux.image_paths[i] for i in keep],
        [tux.captions["en"][i] for i in keep],
        [tux.categories[i] for i in keep],
    )


def parameter_count(name: str) -> int | None:
    """Number of parameters of a registered torch encoder (None when it is not a torch model)."""
    from latentalign.encoders import load_encoder

    encoder = load_encoder(name)
    modules = getattr(encoder, "_modules", None)
    if callable(modules):
        return int(sum(p.numel() for m in modules() for p in m.parameters()))
    return None


def embed_models(
    models: list[str], ids: list[str], paths: list[Path], captions: list[str], notes: list[str]
) -> dict[str, np.ndarray]:
    """Embed the stamps with each model (images for image encoders, English captions for text encoders)."""
    from latentalign.datasets import load_rgb
    from latentalign.encoders import encoder_info, load_encoder
    from latentalign.store import embed

    images: list[np.ndarray] | None = None
    inputs: list[np.ndarray] | list[str]
    out = {}
    for name in models:
        start = time.perf_counter()
        if encoder_info(name)["modality"] == "image":
            if images is None:
                images = [load_rgb(p) for p in paths]
            inputs, dataset = images, "tuxpaint/png"
        else:
            inputs, dataset = captions, "tuxpaint/en"
        logger.info("embedding %d items of %s with %s (store cache)", len(ids), dataset, name)
        store = embed(load_encoder(name), inputs, ids, dataset=dataset, shard_size=128, progress=False)
        out[name] = np.ascontiguousarray(store.get(ids), dtype=np.float32)
        notes.append(
            f"embedded {dataset} with {name}: {out[name].shape[0]} x {out[name].shape[1]} in "
            f"{time.perf_counter() - start:.0f} s (cached after the first run)"
        )
    return out


def _plot(
    matrix: np.ndarray,
    models: list[str],
    image_models: list[str],
    text_models: list[str],
    sizes: dict[str, int | None],
    chance: float,
    out_dir: Path,
    name: str,
) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12.5, 5))
    off_diagonal = matrix[~np.eye(len(models), dtype=bool)]
    im = ax1.imshow(matrix, cmap="viridis", vmin=0, vmax=max(0.5, float(np.nanmax(off_diagonal))))
    labels = [_SHORT.get(m, m) for m in models]
    ax1.set_xticks(range(len(models)))
    ax1.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax1.set_yticks(range(len(models)))
    ax1.set_yticklabels(labels, fontsize=8)
    for i in range(len(models)):
        for j in range(len(models)):
            if i != j:
                ax1.text(
                    j,
                    i,
                    f"{matrix[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if matrix[i, j] < 0.3 else "black",
                )
    fig.colorbar(im, ax=ax1, fraction=0.046)
    ax1.set_title(f"mutual kNN (k=10), chance {chance:.3f}", fontsize=10)
    xs = [sizes.get(m) or i for i, m in enumerate(image_models)]
    scale = 1e6 if all(sizes.get(m) for m in image_models) else 1
    for t in text_models:
        ys = [matrix[models.index(m), models.index(t)] for m in image_models]
        ax2.plot(np.asarray(xs) / scale, ys, marker="o", label=f"vs {_SHORT.get(t, t)}")
    mean = [np.mean([matrix[models.index(m), models.index(t)] for t in text_models]) for m in image_models]
    ax2.plot(
        np.asarray(xs) / scale,
        mean,
        marker="s",
        color="black",
        linewidth=1.5,
        linestyle="--",
        alpha=0.7,
        label="mean over text models",
    )
    ax2.axhline(chance, color="grey", linestyle=":", label="chance k/(n-1)")
    ax2.axhline(3 * chance, color="red", linestyle="--", linewidth=0.8, label="3 x chance (pass line)")
    for x, m in zip(xs, image_models):
        ax2.annotate(
            _SHORT.get(m, m), (x / scale, 0), textcoords="offset points", xytext=(0, 4), fontsize=7, ha="center"
        )
    ax2.set_xlabel("image encoder parameters (millions)" if scale > 1 else "image encoder")
    ax2.set_ylabel("image-caption mutual kNN alignment")
    ax2.set_ylim(0, None)
    ax2.set_title("Cross-modal alignment vs image-model size", fontsize=10)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def run(config: dict[str, Any], *, out_dir: Path) -> ExperimentResult:
    """Compute the mutual-kNN matrix, the shuffled-pairing chance level, and check the claims."""
    from latentalign.functional.similarity import mutual_knn

    setup = config["setup"]
    seed, k = int(setup["seed"]), int(setup["k"])
    image_models, text_models = list(setup["image_models"]), list(setup["text_models"])
    models = image_models + text_models
    notes: list[str] = []
    ids, paths, captions, _ = tuxpaint_pairs(setup.get("limit"), seed)
    n = len(ids)
    spaces = embed_models(models, ids, paths, captions, notes)
    keep = distinct_rows(spaces[image_models[0]])
    if len(keep) < n:
        notes.append(
            f"{n - len(keep)} stamps dropped: their picture repeats an earlier stamp's exactly "
            f"({', '.join(ids[i] for i in sorted(set(range(n)) - set(keep.tolist())))})."
        )
        spaces = {m: X[keep] for m, X in spaces.items()}
        n = len(keep)
    chance = k / (n - 1)

    matrix = np.eye(len(models))
    for i, a in enumerate(models):
        for j in range(i + 1, len(models)):
            matrix[i, j] = matrix[j, i] = mutual_knn(spaces[a], spaces[models[j]], k=k)
    rng = np.random.default_rng(seed)
    shuffled = [
        mutual_knn(spaces[image_models[0]], spaces[text_models[0]][rng.permutation(n)], k=k)
        for _ in range(int(setup["n_shuffles"]))
    ]
    sizes = {m: parameter_count(m) for m in image_models}

    rows = []
    for i, a in enumerate(models):
        row: dict[str, Any] = {"model": a, "params": sizes.get(a)}
        row.update({b: float(matrix[i, j]) for j, b in enumerate(models)})
        rows.append(row)
    cross = {(a, t): float(matrix[models.index(a), models.index(t)]) for a in image_models for t in text_models}
    mean_by_image = {a: float(np.mean([cross[(a, t)] for t in text_models])) for a in image_models}
    notes.append(
        f"n = {n} image-caption pairs, k = {k}: chance overlap k/(n-1) = {chance:.4f}; a shuffled "
        f"pairing ({image_models[0]} vs {text_models[0]}, {len(shuffled)} shuffles) gives "
        f"{np.mean(shuffled):.4f} +- {np.std(shuffled):.4f}."
    )
    notes.append(
        "Parameters (image encoders): "
        + ", ".join(f"{m} {size / 1e6:.2f} M" for m in image_models if (size := sizes.get(m)))
    )
    notes.append(
        "Mean cross-modal score per image encoder: " + ", ".join(f"{m} {mean_by_image[m]:.3f}" for m in image_models)
    )

    factor = float(setup["min_over_chance"])
    worst = min(cross, key=lambda pair: cross[pair])
    order = sorted(image_models, key=lambda m: sizes.get(m) or image_models.index(m))
    means = [mean_by_image[m] for m in order]
    rising = all(b > a for a, b in zip(means, means[1:]))
    paper = config["paper"]
    checks = [
        Check(
            claim=f"every image-text mutual kNN >= {factor:g} x chance (chance k/(n-1) = {chance:.4f})",
            paper=paper.get("claim_above_chance", ""),
            ours=f"min {cross[worst]:.3f} ({worst[0]} vs {worst[1]}) = {cross[worst] / chance:.1f} x chance; "
            f"max {max(cross.values()):.3f}",
            passed=bool(all(v >= factor * chance for v in cross.values())),
        ),
        Check(
            claim="cross-modal alignment (mean over text models) rises with image-model size "
            f"({' < '.join(_SHORT.get(m, m) for m in order)})",
            paper=paper.get("claim_trend", ""),
            ours=" -> ".join(f"{v:.3f}" for v in means),
            passed=bool(rising),
        ),
    ]
    plots = _plot(matrix, models, image_models, text_models, sizes, chance, Path(out_dir), config["name"])
    notes += [f"Reading of the results (written after the full run): {n}" for n in config.get("notes", [])]
    return ExperimentResult(rows=rows, checks=checks, notes=notes, plots=plots)
