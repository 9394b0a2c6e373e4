"""Alignment with few or no known pairs: anchor-budget curves of every aligner on five pairs of encoders.

Cases (``setup.cases``; ``setup.run_cases`` picks the ones a run computes, the others are listed as not
run): (a) EfficientNet-Lite images, (b) sentence encoders on texts, (c) MiniLM-L6 vs MiniLM-L3 on words,
(d) GloVe-50 vs fastText-fr on dictionary word pairs, (e) EfficientNet images vs MiniLM captions. The data
and embeddings come from :mod:`~latentalign.experiments.few_and_no_pairs_data` (cached in the embedding
store), the protocol (budgets, unpaired rows "shuffled" or "disjoint", methods, R@1 with CSLS on held-out
items) from :mod:`~latentalign.experiments.few_and_no_pairs_curves`, and the figure from
:mod:`~latentalign.experiments.few_and_no_pairs_plot`. Every aligner is built by
:func:`latentalign.align.make_aligner` with its default parameters, so the page follows the library.

A case may also name unpaired rows of another corpus (``extra_unpaired = { data = ..., per_side = N }``,
:func:`~latentalign.experiments.few_and_no_pairs_data.load_extra_rows`): each seed gives each side ``N``
rows of a different half of that corpus, which join the free rows of the disjoint setting only; the
held-out items, the known pairs and the scores stay the case's (the page ``few_and_no_pairs_other_corpus``).

Run it with ``latentalign run few_and_no_pairs`` (``--reduced``: case (c) on 300 lemmas, one seed). With
``setup.reuse_fits`` (on in the full config, off in the reduced one) every finished case-and-seed job is kept
in the fit cache (:mod:`~latentalign.experiments.fit_cache`), so an interrupted run resumes, and a rerun
with the same library code and data only renders the page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentalign.experiments.common import restore_threads, set_threads
from latentalign.experiments.few_and_no_pairs_curves import (
    PAIR_METHODS,
    SETTINGS,
    UNPAIRED_METHODS,
    ZERO_METHODS,
    budget_curve,
    normalize_spaces,
    retrieval_r1,
    split_items,
    training_rows,
)
from latentalign.experiments.few_and_no_pairs_data import (
    SHORT_NAMES,
    CaseData,
    extra_row_draw,
    load_case,
    load_extra_rows,
)
from latentalign.experiments.few_and_no_pairs_plot import plot_curves
from latentalign.experiments.fit_cache import array_digest, code_fingerprint, job_key, journaled_job
from latentalign.experiments.runner import Check, ExperimentResult

__all__ = [
    "run",
    "compute_runs",
    "build_result",
    "curve_table",
    "summarize",
    "held_out_items",
    "unpaired_settings",
    "identity_r1",
    "true_map_matches_r1",
]

logger = logging.getLogger(__name__)

#: The experiment's name (its folder in the fit cache).
EXPERIMENT = "few_and_no_pairs"


def identity_r1(X: np.ndarray, Y: np.ndarray, seeds: list[int], n_test: int) -> float | None:
    """Mean over seeds of the held-out R@1 (CSLS) with no map at all; ``None`` when dimensions differ.

    A baseline for spaces that already share coordinates (two distillations of one model may).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(60, 5))
    >>> identity_r1(X, X, [0, 1], 20), identity_r1(X, X[:, :3], [0], 20)
    (1.0, None)
    """
    from latentalign.functional.retrieval import retrieval_scores

    if X.shape[1] != Y.shape[1]:
        return None
    scores = []
    for seed in seeds:
        test, _ = split_items(len(X), n_test, seed)
        scores.append(retrieval_scores(X[test], Y[test], k=1, csls=True, csls_k=min(10, n_test - 1))["recall@1"])
    return float(np.mean(scores))


def true_map_matches_r1(
    X: np.ndarray, Y: np.ndarray, seeds: list[int], n_test: int, budget: int, extra_rows: int = 0
) -> list[float]:
    """Per-seed held-out R@1 (CSLS) of Procrustes on ``budget`` pairs plus the disjoint rows matched by the true map.

    A reference for the disjoint setting, not a method: the supervised map (Procrustes on every pool
    pair, which no fit of the page sees) matches the free source rows with the free target rows (mutual
    CSLS nearest neighbours; the two halves are different items, so each match is a near neighbour at
    best), and Procrustes is refitted on the known pairs plus those matches. It shows how far a map fitted
    on pairs plus matches of the disjoint rows gets when the matching itself is as good as the true map
    makes it. The last ``extra_rows`` rows of ``X`` and ``Y`` are unpaired rows of another corpus
    (different items on the two sides, as in :func:`~latentalign.experiments.few_and_no_pairs_curves.budget_curve`):
    they are free rows to match, never pool pairs.

    Examples
    --------
    Even between a space and itself, matching different items (near neighbours) costs the refitted map:

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(80, 4))
    >>> [round(v, 2) for v in true_map_matches_r1(X, X, [0], 20, budget=10)]
    [0.95]
    """
    import warnings

    from latentalign.align import Procrustes
    from latentalign.exceptions import IllConditionedWarning
    from latentalign.functional.self_learning import mutual_csls_matches

    n_items = len(X) - extra_rows
    scores = []
    for seed in seeds:
        test, pool = split_items(n_items, n_test, seed)
        rows_x, rows_y, _ = training_rows(pool, budget, "disjoint", seed, np.arange(n_items, len(X)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IllConditionedWarning)
            truth = Procrustes().fit(X[pool], Y[pool])
            free_x, free_y = X[rows_x[budget:]], Y[rows_y[budget:]]
            i, j, _ = mutual_csls_matches(np.asarray(truth.transform(free_x)), free_y, k=min(10, len(free_y) - 1))
            refit = Procrustes().fit(
                np.concatenate([X[rows_x[:budget]], free_x[np.asarray(i)]]),
                np.concatenate([Y[rows_y[:budget]], free_y[np.asarray(j)]]),
            )
        scores.append(retrieval_r1(refit, "procrustes", X[test], Y[test])["r1_csls"])
    return scores


def summarize(records: list[dict[str, Any]], method: str, unpaired: str, budget: int) -> list[float]:
    """Per-seed R@1 (CSLS) of one method / unpaired setting / budget (failed fits left out).

    Examples
    --------
    >>> recs = [{"method": "ot", "unpaired": "shuffled", "budget": 0, "r1_csls": v} for v in (0.5, None, 0.7)]
    >>> summarize(recs, "ot", "shuffled", 0)
    [0.5, 0.7]
    """
    return [
        float(r["r1_csls"])
        for r in records
        if r["method"] == method and r["unpaired"] == unpaired and r["budget"] == budget and r["r1_csls"] is not None
    ]


def _cell(values: list[float]) -> str | None:
    if not values:
        return None
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


_SETTING_ORDER = ("none", "shuffled", "disjoint")


def _ordered_methods(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(method, unpaired setting) pairs: pair-only, then unpaired-row, then zero-pair methods; settings
    none / shuffled / disjoint."""
    order = (*PAIR_METHODS, *UNPAIRED_METHODS, *ZERO_METHODS)
    methods = sorted(
        dict.fromkeys(r["method"] for r in records), key=lambda m: order.index(m) if m in order else len(order)
    )
    found = {(r["method"], r["unpaired"]) for r in records}
    return [(m, s) for m in methods for s in _SETTING_ORDER if (m, s) in found]


def curve_table(label: str, records: list[dict[str, Any]], columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of the page: one per method and unpaired setting, one column per budget ("mean [min-max]").

    Examples
    --------
    >>> recs = [
    ...     {"method": "procrustes", "unpaired": "none", "budget": b, "is_all": b == 9, "seed": s, "r1_csls": v,
    ...      "r1_cosine": v, "error": None}
    ...     for b, s, v in [(5, 0, 0.5), (5, 1, 0.7), (9, 0, 1.0)]
    ... ]
    >>> row = curve_table("(x)", recs)[0]
    >>> row["5"], row["all"]
    ('0.600 [0.500-0.700]', '1.000')
    """
    budgets = sorted({(r["budget"], r["is_all"]) for r in records})
    rows = []
    for method, unpaired in _ordered_methods(records):
        row: dict[str, Any] = {"case": label, "method": method, "unpaired rows": unpaired}
        row.update(dict.fromkeys(columns or []))
        for budget, is_all in budgets:
            row["all" if is_all else str(budget)] = _cell(summarize(records, method, unpaired, budget))
        errors = [r for r in records if r["method"] == method and r["unpaired"] == unpaired and r["error"]]
        row["failed fits"] = len(errors)
        rows.append(row)
    return rows


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def _supervised(records: list[dict[str, Any]]) -> float:
    values = [r["r1_csls"] for r in records if r["method"] == "procrustes" and r["is_all"] and r["r1_csls"] is not None]
    return float(np.mean(values)) if values else float("nan")


def _zero_pair_check(label: str, records: list[dict[str, Any]], ratio: float, floor: float) -> Check:
    supervised = _supervised(records)
    candidates = {
        (m, s): summarize(records, m, s, 0)
        for m in ("ot", "unsupervised")
        for s in ("shuffled",)
        if summarize(records, m, s, 0)
    }
    if not candidates:
        return Check(f"{label}: zero pairs", "zero-pair methods ran", "no zero-pair fit succeeded", False)
    (method, _), values = max(candidates.items(), key=lambda kv: _median(kv[1]))
    med = _median(values)
    ok_ratio = med >= ratio * supervised
    ok_seeds = min(values) >= floor * med
    return Check(
        claim=f"{label}: zero pairs (same items shuffled) reach >= {ratio:.0%} of supervised Procrustes R@1 "
        f"(CSLS), every seed >= {floor:g} x the median seed",
        paper="MUSE / VecMap / GW: unsupervised alignment comparable to supervised on word embeddings",
        ours=f"best {method}: median {med:.3f} vs supervised {supervised:.3f} ({med / supervised:.0%}); seeds "
        + ", ".join(f"{v:.3f}" for v in values),
        passed=bool(ok_ratio and ok_seeds),
    )


def _fifty_pair_check(label: str, records: list[dict[str, Any]], budget: int, ratio: float) -> Check:
    supervised = _supervised(records)
    means = {
        (m, s): float(np.mean(v))
        for m, s in dict.fromkeys((r["method"], r["unpaired"]) for r in records)
        if s in ("disjoint", "none") and (v := summarize(records, m, s, budget))
    }
    if not means:
        return Check(f"{label}: {budget} pairs + disjoint rows", "-", f"budget {budget} not run", False)
    (method, setting), best = max(means.items(), key=lambda kv: kv[1])
    return Check(
        claim=f"{label}: {budget} pairs + disjoint unpaired rows reach >= {ratio:.0%} of supervised Procrustes R@1",
        paper="a few pairs plus unpaired data come close to full supervision (Artetxe et al. 2017; LFM; OT)",
        ours=f"best {method} ({setting}): {best:.3f} vs {supervised:.3f} ({best / supervised:.0%})",
        passed=bool(best >= ratio * supervised),
    )


def _few_pair_check(label: str, records: list[dict[str, Any]], max_budget: int) -> Check:
    budgets = sorted({r["budget"] for r in records if 0 < r["budget"] <= max_budget and not r["is_all"]})
    ahead, details = [], []
    for b in budgets:
        ours = max((np.mean(v) for m in ("lfm", "ot") if (v := summarize(records, m, "shuffled", b))), default=np.nan)
        base = max(
            (np.mean(v) for m in ("procrustes", "relative") if (v := summarize(records, m, "none", b))), default=np.nan
        )
        ahead.append(bool(ours > base))
        details.append(f"{b}: {ours:.3f} vs {base:.3f}")
    return Check(
        claim=f"{label}: LFM or OT (shuffled unpaired rows) ahead of Procrustes and relative at every budget <= {max_budget}",
        paper="unpaired rows help when pairs are few (Fumero et al. 2024, latent functional maps)",
        ours=f"ahead at {sum(ahead)}/{len(ahead)} budgets (best LFM/OT vs best Procrustes/relative, mean R@1): "
        + "; ".join(details),
        passed=bool(ahead) and all(ahead),
    )


def _checks(runs: list[dict[str, Any]], setup: dict[str, Any]) -> list[Check]:
    zero = {str(k): float(v) for k, v in setup["zero_pair_min_ratio"].items()}
    fifty_keys = [str(k) for k in setup["few_pair_cases"]]
    checks: list[Check] = []
    for run in runs:
        key, label, recs = run["key"], run["label"], run["records"]
        if key in zero:
            checks.append(_zero_pair_check(label, recs, zero[key], float(setup["seed_floor"])))
        if key in fifty_keys:
            checks.append(
                _fifty_pair_check(label, recs, int(setup["few_pair_budget"]), float(setup["few_pair_min_ratio"]))
            )
        if run["same_modality"] and "shuffled" in unpaired_settings(setup):  # the check compares shuffled rows
            checks.append(_few_pair_check(label, recs, int(setup["few_pair_budget"])))
    return checks


def _progress(label: str) -> Callable[[str], None]:
    """A progress callback that logs one line per fit, prefixed with the case."""

    def echo(line: str) -> None:
        logger.info("%s: %s", label, line)

    return echo


def _selected(case: dict[str, Any], run_keys: list[str]) -> bool:
    """Whether ``run_cases`` names the case (by its letter, e.g. "b", or its name, e.g. "b-tuxpaint-mpnet")."""
    return str(case["key"]) in run_keys or str(case.get("name")) in run_keys


def _case_label(case: dict[str, Any]) -> str:
    return f"({case['key']}) {SHORT_NAMES.get(case['source'], case['source'])} -> {SHORT_NAMES.get(case['target'], case['target'])}"


#: One case and one seed: its spaces (case items, then any extra unpaired rows), the setup, the seed, the
#: held-out count, the case's label and the number of extra rows.
_Job = tuple[np.ndarray, np.ndarray, dict[str, Any], int, int, str, int]


def _curve_job(job: _Job) -> list[dict[str, Any]]:
    """The fits of one case and one seed (one task of :func:`compute_runs`'s worker processes)."""
    X, Y, setup, seed, n_test, label, extra_rows = job

    def fit_all(
        done: Sequence[dict[str, Any]] = (), keep: Callable[[dict[str, Any]], None] | None = None
    ) -> list[dict[str, Any]]:
        threads = set_threads(setup)
        try:
            records = budget_curve(
                X,
                Y,
                budgets=list(setup["budgets"]),
                methods=list(setup["methods"]),
                seeds=[seed],
                n_test=n_test,
                echo=_progress(label),
                done=done,
                on_record=keep,
                settings=unpaired_settings(setup),
                extra_rows=extra_rows,
            )
        finally:
            restore_threads(threads)
        journaled = {id(record) for record in done}
        for record in records:
            record["reused"] = id(record) in journaled
        return records

    if not setup.get("reuse_fits", False):
        return fit_all()
    settings = {"budgets": setup["budgets"], "methods": setup["methods"], "seed": seed, "n_test": n_test}
    if tuple(unpaired_settings(setup)) != SETTINGS:  # the key of a job with every setting stays as it was
        settings["unpaired"] = unpaired_settings(setup)
    if extra_rows:
        settings["extra_rows"] = extra_rows
    records, reused = journaled_job(EXPERIMENT, job_key([X, Y], settings), fit_all)
    if reused:
        for record in records:
            record["reused"] = True
    return list(records)


def _run_jobs(jobs: list[_Job], workers: int) -> list[list[dict[str, Any]]]:
    """Each job's records, in the jobs' order: in this process, or in ``workers`` forked processes."""
    if workers <= 1 or len(jobs) <= 1:
        return [_curve_job(job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers inherit the loaded arrays and the logging set-up of the command (progress lines)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        return list(pool.map(_curve_job, jobs))


def compute_runs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The expensive part: embeddings (cached) and every fit of the cases in ``run_cases``.

    ``setup.workers`` (default 1) sets how many processes share the fits, one case and seed at a time;
    every fit is the same whatever the number of processes (each seeds its own split and aligners).
    Returns one dict per case run (label, sizes, the SHA-256 of each side's embeddings, identity baseline,
    the fit records, ``seconds``: loading plus the fits' summed wall time), what :func:`build_result` turns
    into the page; the JSON record keeps them under ``details``.
    """
    setup = config["setup"]
    seeds = [int(s) for s in setup["seeds"]]
    run_keys = [str(k) for k in setup["run_cases"]]
    workers = int(setup.get("workers", 1))
    if workers < 1:
        raise ValueError(f"setup.workers must be a positive number of processes, got {workers}; set it to 1 or more.")
    unpaired_settings(setup)  # a bad list fails here, before any embedding or fit
    if setup.get("reuse_fits", False):
        code_fingerprint()  # once, before the workers fork: every job of the run is keyed to the same code
    threads = set_threads(setup)
    runs: list[dict[str, Any]] = []
    jobs: list[_Job] = []
    try:
        for case in setup["cases"]:
            if not _selected(case, run_keys):
                continue
            if case.get("extra_unpaired") is not None and "disjoint" not in unpaired_settings(setup):
                raise ValueError(
                    f"case {case.get('name', case['key'])!r}: extra_unpaired rows join the disjoint setting only, "
                    f'but setup.unpaired is {unpaired_settings(setup)}; add "disjoint" to it or drop extra_unpaired.'
                )
            start = time.perf_counter()
            extra = load_extra_rows(case, setup)  # first: a bad table is refused before any embedding
            data = load_case(case, setup)
            n_items, n_extra = len(data.X), 0 if extra is None else extra[1]
            n_test = held_out_items(setup, n_items)
            spaces = _seed_spaces(data, extra, seeds)
            label = (
                data.label if extra is None else f"{data.label} + {n_extra:,} unpaired {extra[0].description} per side"
            )
            jobs += [(*spaces[seed], setup, seed, n_test, label, n_extra) for seed in seeds]
            identity = [identity_r1(X[:n_items], Y[:n_items], [seed], n_test) for seed, (X, Y) in spaces.items()]
            runs.append(
                {
                    "key": data.key,
                    "label": label,
                    "source": data.source,
                    "target": data.target,
                    "n_items": int(n_items),
                    # which embeddings the fits saw, so that two records can tell a change of inputs from one of code
                    "embeddings_sha256": _embeddings_sha256(data),
                    "extra_unpaired": None if extra is None else _extra_summary(*extra),
                    "n_test": n_test,
                    "same_modality": bool(case.get("same_modality", True)),
                    "identity": None if None in identity else float(np.mean([v for v in identity if v is not None])),
                    "true_map_matches": [
                        v
                        for seed, (X, Y) in spaces.items()
                        for v in true_map_matches_r1(X, Y, [seed], n_test, int(setup["few_pair_budget"]), n_extra)
                    ],
                    "records": [],
                    "seconds": time.perf_counter() - start,
                }
            )
        results = _run_jobs(jobs, workers)
    finally:
        restore_threads(threads)
    for i, run in enumerate(runs):
        for records in results[i * len(seeds) : (i + 1) * len(seeds)]:
            for r in records:
                r["case"] = run["key"]
            run["records"] += records
        run["seconds"] = round(run["seconds"] + sum(r["seconds"] for r in run["records"]), 1)
    return runs


def _seed_spaces(
    data: CaseData, extra: tuple[CaseData, int] | None, seeds: list[int]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each seed's normalised spaces: the case's items, then the seed's extra unpaired rows on each side.

    Each side is normalised on all the rows it holds, its extra rows included. Without extra rows every
    seed shares one pair of arrays.
    """
    if extra is None:
        shared = normalize_spaces(data.X, data.Y)
        return dict.fromkeys(seeds, shared)
    other, per_side = extra
    spaces = {}
    for seed in seeds:
        rows_x, rows_y = extra_row_draw(len(other.X), per_side, seed)
        spaces[seed] = normalize_spaces(
            np.concatenate([data.X, other.X[rows_x]]), np.concatenate([data.Y, other.Y[rows_y]])
        )
    return spaces


def _extra_summary(other: CaseData, per_side: int) -> dict[str, Any]:
    """What a record keeps of a case's extra unpaired rows: their source, count and embeddings' SHA-256."""
    return {
        "data": other.data,
        "description": other.description,
        "per_side": int(per_side),
        "embeddings_sha256": _embeddings_sha256(other),
    }


def _embeddings_sha256(data: CaseData) -> dict[str, str]:
    """SHA-256 of each side's embeddings (:func:`~latentalign.experiments.fit_cache.array_digest`)."""
    return {"source": array_digest([np.asarray(data.X)]), "target": array_digest([np.asarray(data.Y)])}


def unpaired_settings(setup: dict[str, Any]) -> list[str]:
    """The unpaired settings the page fits (``setup.unpaired``; default every one of ``SETTINGS``).

    Examples
    --------
    >>> unpaired_settings({}), unpaired_settings({"unpaired": ["disjoint"]})
    (['shuffled', 'disjoint'], ['disjoint'])
    """
    settings = setup.get("unpaired", list(SETTINGS))
    if not isinstance(settings, list) or not settings or any(s not in SETTINGS for s in settings):
        raise ValueError(
            f"setup.unpaired must list one or more of {list(SETTINGS)}, got {settings!r}. Fix it in the config, or "
            "leave it out to fit both."
        )
    return [str(s) for s in settings]


def held_out_items(setup: dict[str, Any], n_items: int) -> int:
    """How many of a case's ``n_items`` each seed holds out: ``setup.n_test`` if set, else ``test_fraction`` of them.

    A fixed number keeps retrieval among as many candidates when a case draws more items, so that only the
    pool of training rows grows.

    Examples
    --------
    >>> held_out_items({"test_fraction": 0.25}, 1799), held_out_items({"test_fraction": 0.25, "n_test": 450}, 8999)
    (450, 450)
    """
    if setup.get("n_test") is None:
        return int(round(float(setup["test_fraction"]) * n_items))
    n_test = setup["n_test"]
    if isinstance(n_test, bool) or not isinstance(n_test, int) or not 2 <= n_test < n_items:
        raise ValueError(
            f"setup.n_test must be a whole number of held-out items from 2 to {n_items - 1} (the case has {n_items} "
            f"items), got {n_test!r}. Lower it, or leave it out to hold out test_fraction of the items."
        )
    return n_test


def _extra_note(extra: dict[str, Any]) -> str:
    return (
        f"; plus {extra['per_side']:,} unpaired rows per side from {extra['description']}, a different half on "
        "each side drawn with the seed, in the disjoint setting only (never held out or paired; each side "
        "normalised on its rows including them)"
    )


def _budget_labels(runs: list[dict[str, Any]]) -> list[str]:
    budgets = sorted({r["budget"] for run in runs for r in run["records"] if not r["is_all"]})
    return [str(b) for b in budgets] + ["all"]


def build_result(config: dict[str, Any], runs: list[dict[str, Any]], out_dir: str | Path) -> ExperimentResult:
    """The table, checks, notes and figure of the cases in ``runs`` (what :func:`compute_runs` returned)."""
    setup = config["setup"]
    seeds = [int(s) for s in setup["seeds"]]
    run_keys = [str(k) for k in setup["run_cases"]]
    planned = list(setup["cases"])
    notes: list[str] = []
    columns = _budget_labels(runs)
    rows: list[dict[str, Any]] = []
    for r in runs:
        rows += curve_table(r["label"], r["records"], columns)
        if r["identity"] is not None and "0" in columns:  # a zero-pair figure; the notes give it in any case
            rows.append(
                {
                    "case": r["label"],
                    "method": "identity map (no fit)",
                    "unpaired rows": "-",
                    **dict.fromkeys(columns),
                    "0": f"{r['identity']:.3f}",
                }
            )
        if r.get("true_map_matches"):
            v = r["true_map_matches"]
            rows.append(
                {
                    "case": r["label"],
                    "method": "reference: pairs + disjoint rows matched by the true map",
                    "unpaired rows": "disjoint",
                    **dict.fromkeys(columns),
                    str(setup["few_pair_budget"]): f"{np.mean(v):.3f} [{min(v):.3f}-{max(v):.3f}]",
                }
            )
    not_run = [c for c in planned if not _selected(c, run_keys)]
    rows += [
        {"case": _case_label(c) + f", {c['data']}", "method": "not run", "unpaired rows": "-", **dict.fromkeys(columns)}
        for c in not_run
    ]

    plots = []
    plot = plot_curves(runs, Path(out_dir) / f"{config['name']}.png", n_seeds=len(seeds), title=config["title"])
    if plot is not None:
        plots.append(plot)

    notes.append(
        f"Cases run: {', '.join(r['label'] for r in runs) or 'none'}; seeds {seeds} each. Not run in this record: "
        + (", ".join(f"{_case_label(c)} ({c['data']})" for c in not_run) or "none")
        + ". A case not run has no numbers here; nothing is extrapolated."
    )
    for r in runs:
        sup = _supervised(r["records"])
        notes.append(
            f"{r['label']}: {r['n_items']} items, {r['n_test']} held out per seed (chance R@1 {1 / r['n_test']:.4f}); "
            f"supervised Procrustes on all {r['n_items'] - r['n_test']} pool pairs R@1 {sup:.3f}"
            + (f"; identity map (no fit) {r['identity']:.3f}" if r["identity"] is not None else "")
            + (_extra_note(r["extra_unpaired"]) if r.get("extra_unpaired") else "")
            + f"; {r['seconds']:.0f} s."
        )
    notes.append(
        f"The reference row 'pairs + disjoint rows matched by the true map' (at {setup['few_pair_budget']} pairs) is "
        "not a method: the supervised map, which no fit sees, matches the free rows of the two halves (mutual "
        "CSLS), and Procrustes is refitted on the known pairs plus those matches. The halves are different "
        "items, so a match is a near neighbour at best; the row shows how far pairs plus matched disjoint rows "
        "take a Procrustes map when the matching is as good as the true map makes it."
    )
    failures = [rec for r in runs for rec in r["records"] if rec["error"]]
    for rec in failures[:10]:
        notes.append(
            f"Failed fit: case ({rec['case']}) {rec['method']} budget {rec['budget']} {rec['unpaired']} seed "
            f"{rec['seed']}: {rec['error']} (traceback in the JSON record)."
        )
    warned = sum(rec["convergence_warnings"] > 0 for r in runs for rec in r["records"])
    reused = sum(bool(rec.get("reused")) for r in runs for rec in r["records"])
    if reused:
        n_records = sum(len(r["records"]) for r in runs)
        notes.append(
            f"Fits read from the fit cache: {reused} of {n_records} (computed by an earlier run of the same library "
            "code on the same embeddings; their seconds are that run's)."
        )
    notes.append(f"Fits that raised a ConvergenceWarning: {warned} (per fit in the JSON record).")
    notes += [str(n) for n in config["paper"].get("published_claims", [])]
    notes += [f"Reading of the results (written after the full run): {n}" for n in config.get("notes", [])]
    details = {
        "cases": [{k: v for k, v in r.items() if k != "records"} for r in runs],
        "not_run": [{k: c[k] for k in ("key", "data", "source", "target")} for c in not_run],
        "records": [rec for r in runs for rec in r["records"]],
    }
    return ExperimentResult(rows=rows, checks=_checks(runs, setup), notes=notes, plots=plots, details=details)


def run(config: dict[str, Any], *, out_dir: str | Path) -> ExperimentResult:
    """Runner: the budget curves of the cases in ``run_cases``, the checks, the table, notes and figure."""
    return build_result(config, compute_runs(config), out_dir)
