"""The main job (``latentalign demo``): real offline models on real data, every method side by side.

Retrieval (Tux Paint stamps: clip-art images, each captioned in many languages; fixed seeded split, the
maps are fitted on the training pairs and evaluated on held-out pairs):

* MiniLM (384-d) -> MPNet (768-d): text to text, different dimensions;
* MiniLM on English captions -> multilingual e5 on French captions: cross-lingual;
* EfficientNet-Lite0 images -> MiniLM captions: cross-modal, models never trained together.

Stitching (Fashion-MNIST): a logistic-regression head trained on EfficientNet-Lite1 embeddings is fed
EfficientNet-Lite0 embeddings, mapped zero-shot by each method.

Methods: ``absolute`` (no map; only where dimensions agree), ``relative`` (cosine relative
representations to the training anchors), ``procrustes``, ``affine`` (ridge), ``ot`` (optimal transport
matching from only a few known pairs, refined by self-learning). Embeddings are cached in the embedding store,
so a re-run only refits the maps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from latentalign._progress import progress_enabled
from latentalign.anchors import distinct_rows
from latentalign.experiments.common import unique_caption_rows

__all__ = ["run_demo", "DemoConfig", "retrieval_rows", "stitching_rows"]

logger = logging.getLogger(__name__)

RETRIEVAL_METHODS = ("absolute", "relative", "procrustes", "affine", "ot")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and seeds of the demo (``quick`` shrinks them for tests)."""

    seed: int = 0
    train_fraction: float = 0.7
    tux_limit: int | None = None
    fmnist_train: int = 1000
    fmnist_test: int = 500
    fmnist_anchors: int = 500
    ot_pairs: int = 20
    ridge_alpha: float = 1.0

    @classmethod
    def quick(cls, seed: int = 0) -> DemoConfig:
        return cls(seed=seed, tux_limit=240, fmnist_train=300, fmnist_test=200, fmnist_anchors=150, ot_pairs=20)


def _embed(name: str, inputs: Any, ids: list[str], dataset: str) -> np.ndarray:
    from latentalign.encoders import load_encoder
    from latentalign.store import embed

    start = time.perf_counter()
    logger.info("embedding %s with %s (read from the store cache when already done)", dataset, name)
    store = embed(load_encoder(name), inputs, ids, dataset=dataset, progress=progress_enabled())
    X = store.get(ids)
    logger.info(
        "  %-18s %-24s %5d x %-4d (%5.1f s)  %s",
        name,
        dataset,
        X.shape[0],
        X.shape[1],
        time.perf_counter() - start,
        store.path,
    )
    return np.ascontiguousarray(X, dtype=np.float32)


def _fit_method(method: str, X: np.ndarray, Y: np.ndarray, config: DemoConfig, rng: np.random.Generator):
    """Fit one method on paired training rows; returns a fitted aligner (or None for ``absolute``)."""
    from latentalign.align import Affine, OTAligner, Procrustes, RelativeProjection

    if method == "absolute":
        return None
    if method == "relative":
        return RelativeProjection(metric="cosine").fit(X, Y)
    if method == "procrustes":
        return Procrustes(center=True).fit(X, Y)
    if method == "affine":
        return Affine(alpha=config.ridge_alpha).fit(X, Y)
    if method == "ot":
        known = rng.choice(X.shape[0], size=min(config.ot_pairs, X.shape[0]), replace=False)
        pairs = np.stack([known, known], axis=1)
        return OTAligner(method="sinkhorn", n_iter=20).fit(X, Y, pairs=pairs)
    raise ValueError(f"unknown demo method {method!r}")


def _queries_and_keys(aligner: Any, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if aligner is None:
        return (X, Y) if X.shape[1] == Y.shape[1] else None
    return aligner.transform(X), aligner.transform_target(Y)


def retrieval_rows(
    pair: str, X: np.ndarray, Y: np.ndarray, train: np.ndarray, test: np.ndarray, config: DemoConfig
) -> list[dict[str, Any]]:
    """Fit every method on the ``train`` rows and score retrieval of ``test`` rows (query i -> key i)."""
    from latentalign.evaluation import retrieval_scores

    rows = []
    for method in RETRIEVAL_METHODS:
        rng = np.random.default_rng(config.seed)
        aligner = _fit_method(method, X[train], Y[train], config, rng)
        qk = _queries_and_keys(aligner, X[test], Y[test])
        row: dict[str, Any] = {"task": "retrieval", "pair": pair, "method": method, "n_test": int(len(test))}
        if qk is None:
            row.update({"recall@1": None, "recall@5": None, "mrr": None, "note": "dimensions differ"})
        else:
            scores = retrieval_scores(qk[0], qk[1], k=(1, 5))
            row.update({"recall@1": scores["recall@1"], "recall@5": scores["recall@5"], "mrr": scores["mrr"]})
        rows.append(row)
    return rows


def stitching_rows(
    pair: str,
    X_train: np.ndarray,
    Y_train: np.ndarray,
    labels_train: np.ndarray,
    X_test: np.ndarray,
    Y_test: np.ndarray,
    labels_test: np.ndarray,
    anchors: np.ndarray,
    config: DemoConfig,
) -> list[dict[str, Any]]:
    """Train B's head on B's training embeddings, then feed it A's test embeddings through each map."""
    from sklearn.linear_model import LogisticRegression

    from latentalign.evaluation.stitching import evaluate_stitching

    def head(features: np.ndarray) -> LogisticRegression:
        return LogisticRegression(max_iter=2000, C=1.0).fit(features, labels_train)

    absolute_head = head(Y_train)
    rows = []
    for method in RETRIEVAL_METHODS:
        rng = np.random.default_rng(config.seed)
        aligner = _fit_method(method, X_train[anchors], Y_train[anchors], config, rng)
        features = Y_train if aligner is None else aligner.transform_target(Y_train)
        # maps into B's own space return Y_train itself: B's head is the one already trained
        clf = absolute_head if features is Y_train else head(features)
        scores = evaluate_stitching(clf, X_test, Y_test, labels_test, aligner)
        picked = scores["absolute"] if method == "absolute" else scores["stitched"]
        rows.append(
            {
                "task": "stitching",
                "pair": pair,
                "method": method,
                "n_test": int(len(labels_test)),
                "accuracy": picked["accuracy"] if picked else None,
                # evaluate_stitching always scores the native head; only "absolute" may be None
                "native_accuracy": cast("dict[str, float]", scores["native"])["accuracy"],
            }
        )
    return rows


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(fraction * n))
    return np.sort(order[:cut]), np.sort(order[cut:])


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    quick: bool = False,
    seed: int = 0,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the demo; write the run record ``demo-<time>-<hash>.json``, ``report.md``, ``report.csv`` and plots.

    Progress goes to ``logging.getLogger("latentalign")``; the results table, its notes and the paths
    written go to ``echo`` (default: the same logger at INFO). Returns the run record.
    """
    say: Callable[[str], None] = echo if echo is not None else logger.info
    from latentalign.datasets import load_fashion_mnist, load_rgb, load_tuxpaint
    from latentalign.reports import make_record, rows_to_markdown, write_record, write_report

    config = DemoConfig.quick(seed) if quick else DemoConfig(seed=seed)
    started = time.perf_counter()
    logger.info("latentalign demo: loading data and embedding (cached after the first run)")

    tux = load_tuxpaint(languages=("en", "fr"), image_format="png")
    unique = unique_caption_rows(tux.captions["en"], tux.captions["fr"])
    n_tux = len(unique) if config.tux_limit is None else min(config.tux_limit, len(unique))
    keep = np.sort(np.random.default_rng(seed).permutation(unique)[:n_tux])
    ids = [tux.ids[i] for i in keep]
    english = [tux.captions["en"][i] for i in keep]
    french = [tux.captions["fr"][i] for i in keep]
    images = [load_rgb(tux.image_paths[i]) for i in keep]

    minilm_en = _embed("minilm", english, ids, "tuxpaint/en")
    mpnet_en = _embed("mpnet", english, ids, "tuxpaint/en")
    e5_fr = _embed("e5-small", french, ids, "tuxpaint/fr")
    effnet_img = _embed("efficientnet-lite0", images, ids, "tuxpaint/png")
    distinct = distinct_rows(minilm_en, mpnet_en, e5_fr, effnet_img)
    if len(distinct) < n_tux:
        logger.info("  dropped %d stamps whose embedding repeats another's in some model", n_tux - len(distinct))
        minilm_en, mpnet_en, e5_fr, effnet_img = (m[distinct] for m in (minilm_en, mpnet_en, e5_fr, effnet_img))
        n_tux = len(distinct)

    train, test = _split(n_tux, config.train_fraction, seed)
    rows = []
    rows += retrieval_rows("MiniLM -> MPNet (en)", minilm_en, mpnet_en, train, test, config)
    rows += retrieval_rows("MiniLM en -> e5 fr", minilm_en, e5_fr, train, test, config)
    rows += retrieval_rows("EffNet-L0 image -> MiniLM caption", effnet_img, minilm_en, train, test, config)

    fm_train, fm_test = load_fashion_mnist("train"), load_fashion_mnist("test")
    rng = np.random.default_rng(seed)
    tr = np.sort(rng.choice(len(fm_train.ids), config.fmnist_train, replace=False))
    te = np.sort(rng.choice(len(fm_test.ids), config.fmnist_test, replace=False))
    tr_ids, te_ids = [fm_train.ids[i] for i in tr], [fm_test.ids[i] for i in te]
    a_train = _embed("efficientnet-lite0", fm_train.images[tr], tr_ids, "fashion_mnist/train")
    b_train = _embed("efficientnet-lite1", fm_train.images[tr], tr_ids, "fashion_mnist/train")
    a_test = _embed("efficientnet-lite0", fm_test.images[te], te_ids, "fashion_mnist/test")
    b_test = _embed("efficientnet-lite1", fm_test.images[te], te_ids, "fashion_mnist/test")
    candidates = distinct_rows(a_train, b_train)  # F-MNIST repeats a few images; anchors must be distinct
    anchors = np.sort(rng.choice(candidates, config.fmnist_anchors, replace=False))
    rows += stitching_rows(
        "EffNet-L0 -> EffNet-L1 head (F-MNIST)",
        a_train,
        b_train,
        fm_train.labels[tr],
        a_test,
        b_test,
        fm_test.labels[te],
        anchors,
        config,
    )

    elapsed = time.perf_counter() - started
    columns = ["task", "pair", "method", "n_test", "recall@1", "recall@5", "mrr", "accuracy", "native_accuracy"]
    say("")
    say(rows_to_markdown(rows, columns))
    say(
        f"\nchance recall@1 on the held-out Tux Paint pairs: {1 / len(test):.4f}; "
        f"stitching: B's head on B's own embeddings is 'native_accuracy'."
    )
    say(
        f"'ot' knows only {config.ot_pairs} of the training pairs; optimal transport matches the other rows "
        "(unpaired) and the map is refined on those matches. The other methods use every training pair."
    )
    record = make_record(
        "demo",
        rows,
        seed=seed,
        settings={k: getattr(config, k) for k in config.__dataclass_fields__},
        inputs={
            "tuxpaint_pairs": n_tux,
            "tux_train": int(len(train)),
            "tux_test": int(len(test)),
            "fashion_mnist_train": config.fmnist_train,
            "fashion_mnist_test": config.fmnist_test,
        },
        extra={"elapsed_s": round(elapsed, 1)},
        started=started,
    )
    out = Path(out_dir)
    paths = write_report([record], out, metric="recall@1")
    record["outputs"] = [str(p) for p in paths.values()]
    record_path = write_record(record, out, "demo")
    say(f"\nfinished in {elapsed:.0f} s")
    say(f"run record: {record_path}")
    for kind, path in paths.items():
        say(f"{kind}: {path}")
    return record
