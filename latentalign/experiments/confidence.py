"""Is a match's confidence informative? MiniLM -> MPNet on Tux Paint captions, Procrustes, held-out retrieval.

The English captions of the Tux Paint stamps (unique captions only) are embedded by MiniLM-L6 and by
MPNet; Procrustes is fitted on a seeded 70 % of the pairs and every held-out caption's MiniLM embedding,
mapped into MPNet's space, retrieves among the held-out MPNet embeddings. Each query gets a match and a
confidence from :func:`latentalign.evaluation.match_confidence` (cosine margin, CSLS margin, OT coupling
mass); :func:`latentalign.evaluation.reliability_curve` bins the queries by confidence rank. The
confidence is informative when the accuracy rises from the least to the most confident bins (and the
AUROC of confidence for correctness is well above 0.5). The held-out recall@1 gets a bootstrap interval
over the training pairs (:func:`latentalign.evaluation.bootstrap`).

With all the training pairs almost every match is right, so a confidence may have too few errors to
rank: a harder setting fits Procrustes on fewer pairs (``hard_n_train``) and scores the same queries, and
a check with fewer than ``min_errors`` wrong matches is reported as not evaluable
(:func:`informative_check`).
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from latentalign.experiments.runner import Check, ExperimentResult

__all__ = ["run", "caption_pairs", "confidence_rows", "wrong_matches", "informative_check"]

logger = logging.getLogger(__name__)

_LABELS = {"margin": "cosine margin", "csls_margin": "CSLS margin", "coupling": "OT coupling mass"}


def caption_pairs(encoders: list[str], limit: int | None, seed: int) -> tuple[list[str], dict[str, np.ndarray]]:
    """Ids and embeddings (one array per encoder, rows paired) of the Tux Paint stamps with unique English captions.

    With ``limit``, a seeded subset of that many stamps. Embeddings come from (and go to) the embedding
    store's cache, shared with the other experiments that embed ``tuxpaint/en``.
    """
    from latentalign.datasets import load_tuxpaint
    from latentalign.encoders import load_encoder
    from latentalign.experiments.common import unique_caption_rows
    from latentalign.store import embed

    tux = load_tuxpaint(languages=("en",), image_format="png")
    unique = unique_caption_rows(tux.captions["en"])
    n = len(unique) if limit is None else min(int(limit), len(unique))
    keep = np.sort(np.random.default_rng(seed).permutation(unique)[:n])
    ids = [tux.ids[i] for i in keep]
    texts = [tux.captions["en"][i] for i in keep]
    spaces = {}
    for name in encoders:
        start = time.perf_counter()
        store = embed(load_encoder(name), texts, ids, dataset="tuxpaint/en", shard_size=256, progress=False)
        spaces[name] = np.ascontiguousarray(store.get(ids), dtype=np.float64)
        logger.info("%s: %d captions in %.0f s (cached after the first run)", name, n, time.perf_counter() - start)
    return ids, spaces


def confidence_rows(curves: dict[str, Any], setting: str | None = None) -> list[dict[str, Any]]:
    """One table row per confidence score: accuracy, AUROC, accuracy of the least and most confident bins, ECE.

    With ``setting``, each row starts with it (a page comparing several fits).
    """
    rows = []
    for kind, curve in curves.items():
        rows.append(
            {
                **({"setting": setting} if setting is not None else {}),
                "confidence": _LABELS.get(kind, kind),
                "queries": curve.n,
                "wrong matches": wrong_matches(curve),
                "accuracy of its matches": curve.accuracy,
                "AUROC": curve.auroc,
                "accuracy, least confident bin": curve.bins[0]["accuracy"],
                "accuracy, most confident bin": curve.bins[-1]["accuracy"],
                "ECE": curve.ece,
            }
        )
    return rows


def wrong_matches(curve: Any) -> int:
    """How many of a reliability curve's matches are wrong."""
    return int(round((1.0 - curve.accuracy) * curve.n))


def informative_check(curve: Any, label: str, *, min_auroc: float, min_errors: int) -> Check:
    """The check "accuracy rises with confidence" on one curve; not evaluable with fewer than ``min_errors`` errors.

    Passes when the least confident bin is less accurate than the most confident one and the AUROC of
    confidence for correctness is at least ``min_auroc``. With fewer wrong matches than ``min_errors`` the
    ranking of so few errors decides nothing, and the check says so (``passed=None``).

    Examples
    --------
    >>> from latentalign.evaluation import reliability_curve
    >>> conf = np.linspace(0.0, 1.0, 40)
    >>> informative_check(reliability_curve(conf, conf > 0.25, n_bins=4), "toy", min_auroc=0.65, min_errors=3).passed
    True
    >>> informative_check(reliability_curve(conf, conf > 0.03, n_bins=4), "toy", min_auroc=0.65, min_errors=3).verdict
    'not evaluable'
    """
    low, high = curve.bins[0]["accuracy"], curve.bins[-1]["accuracy"]
    auroc = "undefined (every match right or every match wrong)" if curve.auroc is None else f"{curve.auroc:.3f}"
    wrong = wrong_matches(curve)
    ours = f"least confident bin {low:.3f}, most {high:.3f}; AUROC {auroc}; {wrong} of {curve.n} matches wrong"
    evaluable = min_errors <= wrong < curve.n
    if not evaluable:
        ours += f" (fewer than {min_errors} wrong: too few errors to rank)" if wrong < min_errors else " (all wrong)"
    return Check(
        claim=f"{label}: accuracy rises with confidence (least confident bin below the most confident one, "
        f"AUROC >= {min_auroc})",
        paper="informative confidence (the property checked; no published number)",
        ours=ours,
        passed=bool(low < high and curve.auroc is not None and curve.auroc >= min_auroc) if evaluable else None,
    )


def _curves(Q: np.ndarray, K: np.ndarray, setup: dict[str, Any]) -> dict[str, Any]:
    """The reliability curve of each confidence kind for queries ``Q`` whose right key is the same row of ``K``."""
    from latentalign.evaluation import match_confidence, reliability_curve

    gold = np.arange(len(Q))
    curves = {}
    for kind in ("margin", "csls_margin", "coupling"):
        match, conf = match_confidence(Q, K, kind=kind, csls_k=int(setup["csls_k"]), reg=float(setup["coupling_reg"]))
        curves[kind] = reliability_curve(
            conf, match == gold, n_bins=int(setup["n_bins"]), probabilities=kind == "coupling"
        )
    return curves


def run(config: dict[str, Any], *, out_dir: Path) -> ExperimentResult:
    """Fit Procrustes on 70 % of the caption pairs, score each held-out match's confidence, check it informs."""
    from latentalign.experiments.common import restore_threads, set_threads

    previous = set_threads(config["setup"])
    try:
        return _run(config, out_dir)
    finally:
        restore_threads(previous)


def _run(config: dict[str, Any], out_dir: Path) -> ExperimentResult:
    from latentalign.align import Procrustes
    from latentalign.anchors import distinct_rows
    from latentalign.evaluation import bootstrap
    from latentalign.reports import plot_reliability

    setup = config["setup"]
    seed, n_bins = int(setup["seed"]), int(setup["n_bins"])
    source, target = str(setup["source"]), str(setup["target"])
    ids, spaces = caption_pairs([source, target], setup.get("limit"), seed)
    keep = distinct_rows(spaces[source], spaces[target])
    X, Y = spaces[source][keep], spaces[target][keep]
    order = np.random.default_rng(seed).permutation(len(keep))
    cut = int(round(float(setup["train_fraction"]) * len(keep)))
    train, test = np.sort(order[:cut]), np.sort(order[cut:])
    # The harder fit: the first hard_n_train pairs of the same seeded order, the same held-out queries.
    n_hard = min(int(setup["hard_n_train"]), len(train))
    hard_train = np.sort(order[:n_hard])
    K = Y[test]
    fits = {"all": (train, Procrustes().fit(X[train], Y[train]))}
    fits["hard"] = (hard_train, Procrustes().fit(X[hard_train], Y[hard_train]))
    curves = {name: _curves(np.asarray(aligner.transform(X[test])), K, setup) for name, (_, aligner) in fits.items()}
    setting = {
        "all": f"Procrustes on {len(train)} pairs",
        "hard": f"Procrustes on {n_hard} pairs (harder)",
    }
    with warnings.catch_warnings():
        # the estimate may lie above the interval; the notes say so with the numbers
        warnings.filterwarnings("ignore", message=".*lies outside its", category=UserWarning)
        boot = bootstrap(
            Procrustes(),
            X[train],
            Y[train],
            "recall@1",
            n=int(setup["n_bootstrap"]),
            test=(X[test], Y[test]),
            random_state=seed,
        )
    rows = confidence_rows(curves["all"], setting["all"]) + confidence_rows(curves["hard"], setting["hard"])
    rows[0].update({k: v for k, v in boot.as_row().items() if k != "recall@1_interval"})

    plots = []
    for name, suffix in (("all", ""), ("hard", "_harder")):
        figure = plot_reliability(
            {_LABELS[k]: c for k, c in curves[name].items()},
            out_dir / f"{config['name']}{suffix}.png",
            title=f"{source} -> {target}, {setting[name]} of Tux Paint captions, {len(test)} held-out queries",
        )
        if figure is not None:
            plots.append(figure)

    min_auroc, min_errors = float(setup["min_auroc"]), int(setup["min_errors"])
    notes = [
        f"{len(ids)} stamps with a unique English caption"
        + (f" ({len(ids) - len(keep)} dropped: an embedding repeats an earlier one)" if len(keep) < len(ids) else "")
        + f"; {len(train)} pairs fit Procrustes, {len(test)} held-out captions retrieve among each other "
        f"(chance recall@1 {1 / len(test):.4f}); {n_bins} bins of equal size by confidence rank.",
        f"Harder setting: Procrustes fitted on {n_hard} of those {len(train)} training pairs (fewer than {source}'s "
        f"{X.shape[1]} dimensions, so the rotation is under-determined and more matches go wrong), scored on the same "
        f"{len(test)} held-out queries, so that every confidence has errors to rank; the size was fixed before its "
        "first run.",
        f"A check is not evaluable when fewer than {min_errors} of its matches are wrong: a bin of "
        f"{len(test) // n_bins} queries then holds at most that many errors, and the bin comparison is decided by "
        "where those few fall (the rule itself, AUROC and bins, is the same in both settings).",
        f"Held-out recall@1 (cosine nearest neighbour) {boot.estimate:.3f}, {boot.describe()}: "
        f"[{boot.low:.3f}, {boot.high:.3f}]. The test captions are held fixed, so the interval is the "
        "uncertainty from the choice of training pairs only, not the sampling noise of the "
        f"{len(test)} queries. "
        + (
            f"The estimate lies outside the interval: the refits score {boot.bias:+.3f} on average against the "
            f"map fitted on all {len(train)} pairs, because a resample holds only about "
            f"{len(train) * (1 - (1 - 1 / len(train)) ** len(train)):.0f} distinct pairs, fewer than {source}'s "
            f"{X.shape[1]} dimensions, so each refit's rotation is under-determined. The interval describes maps "
            "fitted on fewer distinct pairs, a pessimistic range for this one."
            if not boot.low <= boot.estimate <= boot.high
            else f"Replicates average {boot.bias:+.3f} from the estimate."
        ),
        "Margins are gaps between the best and second-best score, not probabilities: their ECE is not defined. "
        "The OT coupling mass is the share of a query's mass sent to its chosen key by an entropic coupling "
        "of all held-out queries and keys (reg "
        f"{setup['coupling_reg']} of the mean cosine cost); its ECE says how far it is from a probability "
        "of being right.",
    ]
    for name in ("all", "hard"):
        curve = curves[name]["coupling"]
        mean_conf = sum(b["mean_confidence"] * b["count"] for b in curve.bins) / curve.n
        side = "under-confident" if mean_conf < curve.accuracy else "over-confident"
        notes.append(
            f"OT coupling mass read as the probability of a right match, {setting[name]}: {side} (mean "
            f"confidence {mean_conf:.3f} against accuracy {curve.accuracy:.3f}, ECE {curve.ece:.3f}); whether it "
            "ranks matches well is what the AUROC and the bins say, a probability it is not unless the ECE is small."
        )
    notes += [f"Reading of the results (written after the full run): {n}" for n in config.get("notes", [])]
    checks = [
        informative_check(curve, f"{_LABELS[kind]}, {setting[name]}", min_auroc=min_auroc, min_errors=min_errors)
        for name in ("all", "hard")
        for kind, curve in curves[name].items()
    ]
    return ExperimentResult(
        rows=rows,
        checks=checks,
        notes=notes,
        plots=plots,
        details={
            "curves": {k: c.to_dict() for k, c in curves["all"].items()},
            "curves_harder": {k: c.to_dict() for k, c in curves["hard"].items()},
            "bootstrap": boot.to_dict(),
            "n_train": int(len(train)),
            "n_train_harder": int(n_hard),
            "n_test": int(len(test)),
        },
    )
