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

None of these scores is a probability of being right as it stands; :func:`calibration_result` fits
:func:`latentalign.evaluation.calibrate_confidence` on a seeded half of the held-out queries
(:func:`calibration_split`) and measures the ECE of the calibrated probabilities on the other half, which
:func:`calibration_check` compares with a threshold fixed in the config.

The Tux Paint pair leaves only about a hundred evaluation queries, too few to decide that threshold; a larger
setting (:func:`gloss_sample`, :func:`gloss_pairs`) embeds WordNet definitions with the same encoders, fits Procrustes on a few
hundred pairs and applies the same checks to about a thousand evaluation queries.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from latentalign.experiments.runner import Check, ExperimentResult

__all__ = [
    "run",
    "caption_pairs",
    "gloss_sample",
    "gloss_pairs",
    "confidence_rows",
    "wrong_matches",
    "informative_check",
    "calibration_split",
    "calibration_result",
    "calibration_check",
]

logger = logging.getLogger(__name__)

_LABELS = {"margin": "cosine margin", "csls_margin": "CSLS margin", "coupling": "OT coupling mass"}
_METHODS = ("sigmoid", "isotonic")


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


def gloss_sample(per_category: int, extra: int, seed: int) -> list[tuple[list[str], list[str], str]]:
    """The WordNet definitions of the larger setting, as (ids, texts, store dataset name) parts.

    First the text_stitching page's stratified sample (``per_category`` synsets of each category, same
    ``seed``, same dataset name, so the store's cached embeddings are reused), then ``extra`` synsets drawn,
    seeded, from the remaining ones (a part of its own, with its own dataset name); ids never repeat.

    Examples
    --------
    >>> parts = gloss_sample(2, 5, seed=0)
    >>> [(len(ids), name) for ids, _, name in parts]
    [(90, 'wordnet/definitions-2pc-seed0'), (5, 'wordnet/definitions-extra5-after2pc-seed0')]
    """
    from latentalign.datasets import load_wordnet_glosses
    from latentalign.experiments.text_stitching import definition, wordnet_sample

    ids, texts, _, _ = wordnet_sample(per_category, seed)
    parts = [(ids, texts, f"wordnet/definitions-{per_category}pc-seed{seed}")]
    if extra > 0:
        wn = load_wordnet_glosses()
        taken = set(ids)
        rest = np.array([i for i, sid in enumerate(wn.ids) if sid not in taken])
        pick = np.sort(np.random.default_rng([seed, 2]).choice(rest, size=min(extra, len(rest)), replace=False))
        parts.append(
            (
                [wn.ids[i] for i in pick],
                [definition(wn.glosses[i]) for i in pick],
                f"wordnet/definitions-extra{extra}-after{per_category}pc-seed{seed}",
            )
        )
    return parts


def gloss_pairs(
    encoders: list[str], per_category: int, extra: int, seed: int
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Ids and embeddings (one array per encoder, rows paired) of :func:`gloss_sample`'s WordNet definitions.

    Embeddings come from (and go to) the embedding store's cache, one dataset name per part.
    """
    from latentalign.encoders import load_encoder
    from latentalign.store import embed

    parts = gloss_sample(per_category, extra, seed)
    spaces = {}
    for name in encoders:
        start = time.perf_counter()
        encoder = load_encoder(name)
        blocks = []
        for part_ids, part_texts, dataset in parts:
            store = embed(encoder, part_texts, part_ids, dataset=dataset, shard_size=256, progress=False)
            blocks.append(np.asarray(store.get(part_ids), dtype=np.float64))
        spaces[name] = np.ascontiguousarray(np.concatenate(blocks))
        logger.info(
            "%s: %d definitions in %.0f s (cached after the first run)",
            name,
            len(spaces[name]),
            time.perf_counter() - start,
        )
    return [i for part_ids, _, _ in parts for i in part_ids], spaces


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


def _scores(Q: np.ndarray, K: np.ndarray, setup: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Confidence and right/wrong flag of every query, per kind, for queries whose right key is the same row of K."""
    from latentalign.evaluation import match_confidence

    gold = np.arange(len(Q))
    scores = {}
    for kind in ("margin", "csls_margin", "coupling"):
        match, conf = match_confidence(Q, K, kind=kind, csls_k=int(setup["csls_k"]), reg=float(setup["coupling_reg"]))
        scores[kind] = (np.asarray(conf), np.asarray(match) == gold)
    return scores


def _curves(scores: dict[str, tuple[np.ndarray, np.ndarray]], n_bins: int) -> dict[str, Any]:
    """The reliability curve of each confidence kind."""
    from latentalign.evaluation import reliability_curve

    return {
        kind: reliability_curve(conf, correct, n_bins=n_bins, probabilities=kind == "coupling")
        for kind, (conf, correct) in scores.items()
    }


def calibration_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of a calibration half and an evaluation half of ``n`` queries (seeded permutation).

    The calibration half gets ``n // 2`` queries; the generator is seeded apart from the train/test split's.

    Examples
    --------
    >>> calibrate, evaluate = calibration_split(5, seed=0)
    >>> len(calibrate), len(evaluate), sorted(calibrate.tolist() + evaluate.tolist())
    (2, 3, [0, 1, 2, 3, 4])
    """
    order = np.random.default_rng([seed, 1]).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def calibration_result(
    confidence: np.ndarray,
    correct: np.ndarray,
    calibrate: np.ndarray,
    evaluate: np.ndarray,
    *,
    n_bins: int,
    floor_method: str = "sigmoid",
    n_floor_draws: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """ECE on the ``evaluate`` rows before and after calibrators fitted on the ``calibrate`` rows.

    Returns a JSON-ready dict: ``n_calibration``, ``wrong_calibration``, ``n_evaluation``,
    ``wrong_evaluation``; ``ece_before`` (the raw score read as a probability; None when it leaves
    ``[0, 1]``); ``ece_after`` (one entry per method, None when the calibration rows are all right or all
    wrong); ``probabilities`` and ``mean_probability`` (per method, the evaluation rows' calibrated
    probabilities and their mean, or None); and
    ``ece_floor_mean`` / ``ece_floor_95`` (with ``n_floor_draws``: the ECE that right/wrong flags drawn from
    ``floor_method``'s own probabilities show, i.e. the ECE of a perfectly calibrated score at this size),
    and ``ece_floor_share_above``, the share of those draws whose ECE is at least the observed one.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> conf = rng.normal(size=400)
    >>> correct = rng.random(400) < 1 / (1 + np.exp(-3 * conf))
    >>> res = calibration_result(conf, correct, np.arange(200), np.arange(200, 400), n_bins=10)
    >>> res["ece_before"] is None, bool(res["ece_after"]["sigmoid"] < 0.1)
    (True, True)
    """
    from latentalign.evaluation import calibrate_confidence, reliability_curve

    conf_c, right_c = confidence[calibrate], correct[calibrate]
    conf_e, right_e = confidence[evaluate], correct[evaluate]
    raw_probability = conf_e.min() >= 0.0 and conf_e.max() <= 1.0
    out: dict[str, Any] = {
        "n_calibration": int(len(calibrate)),
        "wrong_calibration": int((~right_c).sum()),
        "n_evaluation": int(len(evaluate)),
        "wrong_evaluation": int((~right_e).sum()),
        "ece_before": reliability_curve(conf_e, right_e, n_bins, probabilities=True).ece if raw_probability else None,
        "ece_after": {},
        "probabilities": {},
        "mean_probability": {},
        "ece_floor_mean": None,
        "ece_floor_95": None,
        "ece_floor_share_above": None,
    }
    calibratable = 0 < out["wrong_calibration"] < len(calibrate)
    for method in _METHODS:
        if not calibratable:
            out["ece_after"][method] = out["probabilities"][method] = out["mean_probability"][method] = None
            continue
        p = np.asarray(calibrate_confidence(conf_c, right_c, method=method).predict(conf_e))
        out["probabilities"][method] = p.tolist()
        out["mean_probability"][method] = float(p.mean())
        out["ece_after"][method] = reliability_curve(p, right_e, n_bins, probabilities=True).ece
    if out["probabilities"].get(floor_method) is not None and n_floor_draws > 0:
        p_floor = np.asarray(out["probabilities"][floor_method])
        rng = np.random.default_rng(seed)
        draws = np.array(
            [
                reliability_curve(p_floor, rng.random(p_floor.size) < p_floor, n_bins, probabilities=True).ece
                for _ in range(n_floor_draws)
            ],
            dtype=np.float64,
        )
        out["ece_floor_mean"], out["ece_floor_95"] = float(np.mean(draws)), float(np.quantile(draws, 0.95))
        # how often a perfectly calibrated score shows an ECE at least as large as the one observed
        out["ece_floor_share_above"] = float(np.mean(draws >= out["ece_after"][floor_method]))
    return out


def calibration_check(result: dict[str, Any], label: str, *, method: str, max_ece: float, min_errors: int) -> Check:
    """The check "after calibration, ECE <= max_ece on the held-out evaluation half" on one score.

    Not evaluable (``passed=None``) when the evaluation half holds fewer than ``min_errors`` wrong matches
    (or none right), or when the calibration half is all right or all wrong (nothing to fit).

    Examples
    --------
    >>> res = {"n_calibration": 50, "wrong_calibration": 9, "n_evaluation": 50, "wrong_evaluation": 8,
    ...        "ece_before": None, "ece_after": {"sigmoid": 0.04}, "ece_floor_mean": None}
    >>> calibration_check(res, "toy", method="sigmoid", max_ece=0.05, min_errors=3).verdict
    'pass'
    >>> calibration_check({**res, "wrong_evaluation": 2}, "toy", method="sigmoid", max_ece=0.05, min_errors=3).verdict
    'not evaluable'
    """
    after = result["ece_after"].get(method)
    before = "undefined (not in [0, 1])" if result["ece_before"] is None else f"{result['ece_before']:.3f}"
    wrong, n = result["wrong_evaluation"], result["n_evaluation"]
    wrong_c, n_c = result["wrong_calibration"], result["n_calibration"]
    if after is None:
        ours = (
            f"cannot be calibrated: {wrong_c} of {n_c} calibration matches wrong (needs both right and wrong); "
            f"{wrong} of {n} evaluation matches wrong"
        )
    else:
        ours = f"ECE {after:.3f} after, {before} before; {wrong} of {n} evaluation matches wrong ({wrong_c} of {n_c} "
        ours += "in the calibration half)"
        if result.get("ece_floor_mean") is not None:
            ours += (
                f"; a perfectly calibrated score would show ECE {result['ece_floor_mean']:.3f} on average at this size "
                f"(95 % of draws below {result['ece_floor_95']:.3f}"
                + (
                    f", {100 * result['ece_floor_share_above']:.0f} % of them at least {after:.3f})"
                    if result.get("ece_floor_share_above") is not None
                    else ")"
                )
            )
    evaluable = after is not None and min_errors <= wrong < n
    if after is not None and not evaluable:
        ours += f" (fewer than {min_errors} wrong: too few errors to judge)" if wrong < min_errors else " (all wrong)"
    return Check(
        claim=f"{label}: after {method} calibration on half of the held-out queries, ECE <= {max_ece} on the "
        "other half",
        paper="calibrated probability (ECE as in Guo et al. 2017; the threshold is ours, fixed before the run)",
        ours=ours,
        passed=bool(after <= max_ece) if evaluable and after is not None else None,
    )


def _calibrate_each(
    scores: dict[str, tuple[np.ndarray, np.ndarray]],
    calibrate: np.ndarray,
    evaluate: np.ndarray,
    setup: dict[str, Any],
    seed: int,
) -> dict[str, dict[str, Any]]:
    """:func:`calibration_result` of every confidence kind of one fit, with the page's settings."""
    return {
        kind: calibration_result(
            conf,
            correct,
            calibrate,
            evaluate,
            n_bins=int(setup["n_bins"]),
            floor_method=str(setup["calibration_method"]),
            n_floor_draws=int(setup["n_floor_draws"]),
            seed=seed,
        )
        for kind, (conf, correct) in scores.items()
    }


def _rows_with_calibration(
    curves: dict[str, Any], calibration: dict[str, dict[str, Any]], setting: str
) -> list[dict[str, Any]]:
    """The page's rows of one fit: :func:`confidence_rows` plus the ECE before and after calibration."""
    rows = confidence_rows(curves, setting)
    for row, kind in zip(rows, curves, strict=True):
        res = calibration[kind]
        row["wrong, evaluation half"] = res["wrong_evaluation"]
        row["ECE before, evaluation half"] = res["ece_before"]
        row.update({f"ECE after {m}, evaluation half": res["ece_after"][m] for m in _METHODS})
    return rows


def _calibrated_plot(
    scores: dict[str, tuple[np.ndarray, np.ndarray]],
    calibration: dict[str, dict[str, Any]],
    evaluate: np.ndarray,
    setup: dict[str, Any],
    path: Path,
    title: str,
) -> Path | None:
    """Reliability plot of the calibrated probabilities of one fit on its evaluation half."""
    from latentalign.evaluation import reliability_curve
    from latentalign.reports import plot_reliability

    method = str(setup["calibration_method"])
    calibrated = {
        f"{_LABELS[k]}, {method}-calibrated": reliability_curve(
            res["probabilities"][method], scores[k][1][evaluate], n_bins=int(setup["n_bins"]), probabilities=True
        )
        for k, res in calibration.items()
        if res["probabilities"][method] is not None
    }
    return plot_reliability(calibrated, path, title=title)


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
    scores = {name: _scores(np.asarray(aligner.transform(X[test])), K, setup) for name, (_, aligner) in fits.items()}
    curves = {name: _curves(scores[name], n_bins) for name in fits}
    # Calibration: fitted on one half of the held-out queries, its ECE measured on the other half only.
    method = str(setup["calibration_method"])
    calibrate, evaluate = calibration_split(len(test), seed)
    calibration = {name: _calibrate_each(scores[name], calibrate, evaluate, setup, seed) for name in fits}
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
    rows = [
        row
        for name in ("all", "hard")
        for row in _rows_with_calibration(curves[name], calibration[name], setting[name])
    ]
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
        figure = _calibrated_plot(
            scores[name],
            calibration[name],
            evaluate,
            setup,
            out_dir / f"{config['name']}{suffix}_calibrated.png",
            title=f"{source} -> {target}, {setting[name]}: {method}-calibrated probabilities on {len(evaluate)} "
            f"held-out queries (calibrated on {len(calibrate)} others)",
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
    max_ece = float(setup["max_calibrated_ece"])
    notes.append(
        f"Calibration: the {len(test)} held-out queries are split by a seeded permutation into {len(calibrate)} "
        f"calibration and {len(evaluate)} evaluation queries. The map never saw either half; the calibrator "
        "(latentalign.evaluation.calibrate_confidence) is fitted on the calibration half's confidences and "
        "right/wrong flags only, and the ECE columns are computed on the evaluation half only "
        f"({n_bins} equal-width bins). The confidences themselves are computed once for all held-out queries "
        "(the CSLS neighbourhoods and the OT coupling span every held-out query and key), so both halves share "
        f"the same key set. The check uses {method} calibration (fixed before its first run); the other method "
        "is reported beside it. 'ECE before' reads the raw score as a probability: for the margins, which are "
        "not probabilities, that is the error of taking the gap at face value."
    )
    notes.append(
        "The ECE of a finite sample is positive even for a perfectly calibrated score: each check states the "
        f"ECE that right/wrong flags drawn from the calibrated probabilities themselves show ({setup['n_floor_draws']} "
        f"draws, same {len(evaluate)} queries and bins). A calibrated score whose floor is near {max_ece} can "
        "fail the check from sampling noise alone; the threshold was not moved for it."
    )
    for name in ("all", "hard"):
        for kind, res in calibration[name].items():
            if res["mean_probability"][method] is None or res["wrong_evaluation"] < min_errors:
                continue
            n_c, n_e = res["n_calibration"], res["n_evaluation"]
            notes.append(
                f"{_LABELS[kind]}, {setting[name]}: {method}-calibrated probabilities average "
                f"{res['mean_probability'][method]:.3f} on the evaluation half, whose accuracy is "
                f"{1 - res['wrong_evaluation'] / n_e:.3f}; the calibration half's accuracy was "
                f"{1 - res['wrong_calibration'] / n_c:.3f}. ECE after isotonic calibration: "
                f"{res['ece_after']['isotonic']:.3f} (reported, not the checked method)."
            )
    larger = _wordnet_setting(config, out_dir) if int(setup.get("wordnet_per_category", 0)) > 0 else None
    if larger is not None:
        notes += larger["notes"]
    notes += [f"Reading of the results (written after the full run): {n}" for n in config.get("notes", [])]
    checks = [
        informative_check(curve, f"{_LABELS[kind]}, {setting[name]}", min_auroc=min_auroc, min_errors=min_errors)
        for name in ("all", "hard")
        for kind, curve in curves[name].items()
    ]
    checks += [
        calibration_check(
            res, f"{_LABELS[kind]}, {setting[name]}", method=method, max_ece=max_ece, min_errors=min_errors
        )
        for name in ("all", "hard")
        for kind, res in calibration[name].items()
    ]
    details: dict[str, Any] = {}
    if larger is not None:
        # appended after the Tux Paint rows and checks, so those keep their positions
        rows += larger["rows"]
        checks += larger["checks"]
        plots += larger["plots"]
        details["wordnet"] = larger["details"]
    return ExperimentResult(
        rows=rows,
        checks=checks,
        notes=notes,
        plots=plots,
        details={
            **details,
            "curves": {k: c.to_dict() for k, c in curves["all"].items()},
            "curves_harder": {k: c.to_dict() for k, c in curves["hard"].items()},
            "bootstrap": boot.to_dict(),
            "n_train": int(len(train)),
            "n_train_harder": int(n_hard),
            "n_test": int(len(test)),
            "calibration": {
                name: {kind: {k: v for k, v in res.items() if k != "probabilities"} for kind, res in by_kind.items()}
                for name, by_kind in calibration.items()
            },
            "calibration_split": {"calibrate": calibrate.tolist(), "evaluate": evaluate.tolist()},
        },
    )


def _wordnet_setting(config: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """The larger setting: Procrustes on a few hundred WordNet definition pairs, about 2,000 held-out queries.

    Same confidences, bins, calibration split and checks as the Tux Paint settings; returns its table rows,
    checks, notes, plots and details.
    """
    from latentalign.align import Procrustes
    from latentalign.anchors import distinct_rows
    from latentalign.reports import plot_reliability

    setup = config["setup"]
    seed, n_bins = int(setup["seed"]), int(setup["n_bins"])
    source, target = str(setup["source"]), str(setup["target"])
    per_category, extra = int(setup["wordnet_per_category"]), int(setup.get("wordnet_extra", 0))
    ids, spaces = gloss_pairs([source, target], per_category, extra, seed)
    keep = distinct_rows(spaces[source], spaces[target])
    X, Y = spaces[source][keep], spaces[target][keep]
    order = np.random.default_rng(seed).permutation(len(keep))
    n_train = min(int(setup["wordnet_n_train"]), len(keep) - 2)
    train, test = np.sort(order[:n_train]), np.sort(order[n_train:])
    aligner = Procrustes().fit(X[train], Y[train])
    scores = _scores(np.asarray(aligner.transform(X[test])), Y[test], setup)
    curves = _curves(scores, n_bins)
    method = str(setup["calibration_method"])
    calibrate, evaluate = calibration_split(len(test), seed)
    calibration = _calibrate_each(scores, calibrate, evaluate, setup, seed)
    setting = f"WordNet definitions, Procrustes on {n_train} pairs"
    rows = _rows_with_calibration(curves, calibration, setting)
    min_auroc, min_errors = float(setup["min_auroc"]), int(setup["min_errors"])
    max_ece = float(setup["max_calibrated_ece"])
    labels = {kind: f"{_LABELS[kind]}, {setting}" for kind in curves}
    checks = [
        informative_check(curve, labels[kind], min_auroc=min_auroc, min_errors=min_errors)
        for kind, curve in curves.items()
    ]
    checks += [
        calibration_check(res, labels[kind], method=method, max_ece=max_ece, min_errors=min_errors)
        for kind, res in calibration.items()
    ]
    plots = []
    figure = plot_reliability(
        {_LABELS[k]: c for k, c in curves.items()},
        out_dir / f"{config['name']}_wordnet.png",
        title=f"{source} -> {target}, {setting}, {len(test)} held-out queries",
    )
    if figure is not None:
        plots.append(figure)
    figure = _calibrated_plot(
        scores,
        calibration,
        evaluate,
        setup,
        out_dir / f"{config['name']}_wordnet_calibrated.png",
        title=f"{source} -> {target}, {setting}: {method}-calibrated probabilities on {len(evaluate)} "
        f"held-out queries (calibrated on {len(calibrate)} others)",
    )
    if figure is not None:
        plots.append(figure)
    notes = [
        f"Larger setting: {len(ids)} WordNet definitions ({per_category} synsets of each category, the "
        f"text_stitching page's sample, then {extra} drawn from the remaining synsets)"
        + (f", {len(ids) - len(keep)} dropped as repeated embeddings" if len(keep) < len(ids) else "")
        + f"; Procrustes on {n_train} seeded pairs (fewer than {source}'s {X.shape[1]} dimensions), the other "
        f"{len(test)} definitions retrieve among each other (chance recall@1 {1 / len(test):.4f}); split into "
        f"{len(calibrate)} calibration and {len(evaluate)} evaluation queries as above. Sizes and pass rules were "
        "fixed in the config before its first run.",
    ]
    for kind, res in calibration.items():
        if res["mean_probability"][method] is None:
            continue
        n_c, n_e = res["n_calibration"], res["n_evaluation"]
        notes.append(
            f"{labels[kind]}: {method}-calibrated probabilities average {res['mean_probability'][method]:.3f} on "
            f"the evaluation half, whose accuracy is {1 - res['wrong_evaluation'] / n_e:.3f}; the calibration "
            f"half's accuracy was {1 - res['wrong_calibration'] / n_c:.3f}. ECE after isotonic calibration: "
            f"{res['ece_after']['isotonic']:.3f} (reported, not the checked method)."
        )
    details = {
        "n": len(ids),
        "n_train": int(n_train),
        "n_test": int(len(test)),
        "curves": {k: c.to_dict() for k, c in curves.items()},
        "calibration": {
            kind: {k: v for k, v in res.items() if k != "probabilities"} for kind, res in calibration.items()
        },
    }
    return {"rows": rows, "checks": checks, "notes": notes, "plots": plots, "details": details}
