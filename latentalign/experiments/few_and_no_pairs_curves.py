"""Anchor-budget curves: every aligner fitted with 0 to all known pairs, scored on held-out items.

Protocol for one case (two encoders' embeddings of the same ``n`` items) and one seed:

1. the items are permuted with the seed; the first ``n_test`` are held out, the others form the pool;
2. a budget ``b`` takes the first ``b`` pool items as known pairs (anchors); the remaining pool items are
   unpaired rows, given to the aligners in one of two ways:

   * ``"shuffled"``: the same items on both sides, the target's rows in a random order;
   * ``"disjoint"``: the free items are cut in two halves, the source sees one half and the target the
     other, so no free source row has its counterpart among the free target rows; rows of another corpus
     (``extra_rows`` of :func:`budget_curve`: a different set of items on each side, never paired) join
     both sides' free rows in this setting only;

3. every method is built with :func:`latentalign.align.make_aligner` (default parameters; ``random_state``
   is set to the seed where the aligner has one) and fitted:

   * pair-only methods (:data:`PAIR_METHODS`) on the anchors alone (unpaired rows do not enter, so their
     rows have ``unpaired="none"``), skipped at budget 0;
   * :data:`UNPAIRED_METHODS` on anchors + unpaired rows with ``pairs=``; ``"lfm"`` needs anchors
     (skipped at 0), ``"ot"`` runs at 0 too. ``OTAligner()`` with no pair takes the route of
     ``UnsupervisedAligner`` with the same seed (the same map, as the library's tests check), so when
     ``"unsupervised"`` is planned too, the ``"ot"`` record at budget 0 repeats its fit
     (``same_fit_as="unsupervised"``, 0 seconds) instead of fitting it twice;
   * :data:`ZERO_METHODS` (no ``pairs`` argument at all) at budget 0 only;

   the budget ``"all"`` gives every pool item as a pair (no unpaired rows), and Procrustes there is the
   supervised reference;
4. score: the held-out source items are mapped and each retrieves its own item among the held-out target
   items: R@1 ranked by CSLS (k = 10) and by cosine. RelativeProjection compares the two relative
   representations (``transform`` vs ``transform_target``).

Every fit is timed; ConvergenceWarnings are counted; an aligner that raises is recorded with its error
(the page lists it), not retried and not hidden.
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "PAIR_METHODS",
    "UNPAIRED_METHODS",
    "ZERO_METHODS",
    "SETTINGS",
    "split_items",
    "training_rows",
    "fit_aligner",
    "retrieval_r1",
    "budget_curve",
    "normalize_spaces",
]

#: Methods fitted on the known pairs only.
PAIR_METHODS = ("procrustes", "affine", "relative")
#: Methods fitted on known pairs plus unpaired rows (``fit(X, Y, pairs=...)``).
UNPAIRED_METHODS = ("lfm", "ot")
#: Methods that take no pairs at all (run at budget 0 only).
ZERO_METHODS = ("unsupervised",)
#: How the unpaired rows are given.
SETTINGS = ("shuffled", "disjoint")
#: Methods that cannot run without a known pair.
_NEEDS_PAIRS = ("procrustes", "affine", "relative", "lfm")


def normalize_spaces(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit length, centred, unit length (VecMap's normalisation), each space on its own rows.

    Examples
    --------
    >>> import numpy as np
    >>> X, Y = normalize_spaces(np.arange(12.0).reshape(4, 3) ** 2, np.eye(4))
    >>> bool(np.allclose(np.linalg.norm(X, axis=1), 1.0)), Y.shape
    (True, (4, 4))
    """
    from latentalign.preprocessing import make_preprocessor

    steps = ["l2", "center", "l2"]
    out = [np.asarray(make_preprocessor(steps).fit_transform(A.astype(np.float64)), np.float32) for A in (X, Y)]
    return out[0], out[1]


def split_items(n: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out items (sorted) and the pool (in the seed's random order, anchors are taken from its front).

    Examples
    --------
    >>> test, pool = split_items(10, 3, seed=0)
    >>> len(test), len(pool), sorted(np.concatenate([test, pool]).tolist()) == list(range(10))
    (3, 7, True)
    """
    if not 0 < n_test < n:
        raise ValueError(f"n_test must be between 1 and n - 1 = {n - 1} items, got {n_test}; lower n_test.")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:n_test]), order[n_test:]


def training_rows(
    pool: np.ndarray, budget: int, setting: str, seed: int, extra: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the source and of the target a fit sees, and the known pairs between them.

    Returns ``(rows_x, rows_y, pairs)``: item indices for the source and for the target, and an
    ``(budget, 2)`` array of positions in ``rows_x`` / ``rows_y`` that are the same item. ``extra``: row
    indices of unpaired rows from another corpus, appended to both sides' free rows in the ``"disjoint"``
    setting only (row ``i`` of the source and row ``i`` of the target are then different items: the
    caller puts a different draw on each side).

    Examples
    --------
    >>> import numpy as np
    >>> pool = np.arange(10)
    >>> rx, ry, pairs = training_rows(pool, 2, "disjoint", seed=0)
    >>> rx.tolist()[:2] == ry.tolist()[:2], pairs.tolist(), set(rx[2:].tolist()) & set(ry[2:].tolist())
    (True, [[0, 0], [1, 1]], set())
    >>> rx, ry, _ = training_rows(pool, 2, "shuffled", seed=0)
    >>> sorted(rx.tolist()) == sorted(ry.tolist()), rx.tolist() == ry.tolist()
    (True, False)
    >>> rx, ry, _ = training_rows(pool, 2, "disjoint", seed=0, extra=np.arange(10, 13))
    >>> rx.tolist()[-3:], len(ry)
    ([10, 11, 12], 9)
    """
    if setting not in (*SETTINGS, "none"):
        raise ValueError(f"setting must be one of {[*SETTINGS, 'none']}, got {setting!r}.")
    anchors, free = pool[:budget], pool[budget:]
    if setting == "none":
        free_x = free_y = free[:0]
    elif setting == "shuffled":
        free_x, free_y = free, np.random.default_rng(seed + 1000).permutation(free)
    else:
        half = len(free) // 2
        more = free[:0] if extra is None else np.asarray(extra, dtype=free.dtype)
        free_x, free_y = np.concatenate([free[:half], more]), np.concatenate([free[half : 2 * half], more])
    pairs = np.stack([np.arange(budget), np.arange(budget)], axis=1).astype(np.int64)
    return np.concatenate([anchors, free_x]), np.concatenate([anchors, free_y]), pairs


def fit_aligner(name: str, X: np.ndarray, Y: np.ndarray, pairs: np.ndarray, seed: int) -> Any:
    """Build ``name`` with default parameters (seeded) and fit it the way the method takes data."""
    from latentalign.align import make_aligner

    model: Any = make_aligner(name)  # the unpaired-row aligners' fit takes pairs=, the base class's does not
    if "random_state" in model.get_params():
        model.set_params(random_state=seed)
    if name in PAIR_METHODS:
        return model.fit(X[pairs[:, 0]], Y[pairs[:, 1]])
    if name in ZERO_METHODS:
        return model.fit(X, Y)
    return model.fit(X, Y, pairs=pairs if len(pairs) else None)


def retrieval_r1(model: Any, name: str, X_test: np.ndarray, Y_test: np.ndarray) -> dict[str, float]:
    """R@1 of held-out item ``i`` retrieving target item ``i``, by CSLS (k = 10) and by cosine."""
    from latentalign.functional.retrieval import retrieval_scores

    queries = np.asarray(model.transform(X_test), dtype=np.float64)
    keys = np.asarray(model.transform_target(Y_test) if name == "relative" else Y_test, dtype=np.float64)
    csls_k = min(10, len(keys) - 1)
    return {
        "r1_csls": float(retrieval_scores(queries, keys, k=1, csls=True, csls_k=csls_k)["recall@1"]),
        "r1_cosine": float(retrieval_scores(queries, keys, k=1)["recall@1"]),
    }


def fit_route(model: Any) -> dict[str, Any]:
    """The route a fit took and the scores that chose it (``history_[0]["validation"]``; OTAligner only).

    Returns ``{"route": name, "route_scores": {...}}``, or ``{"route": None}`` for a fit that chose no route.

    Examples
    --------
    >>> class Fitted:
    ...     history_ = [{"validation": {"route": "pairs alone", "pairs alone": 0.5, "n_pairs_set_aside": 2}}]
    >>> fit_route(Fitted())["route"], fit_route(object())
    ('pairs alone', {'route': None})
    """
    history = getattr(model, "history_", None) or [{}]
    scores = history[0].get("validation")
    if not scores:
        return {"route": None}
    return {"route": str(scores["route"]), "route_scores": {k: v for k, v in scores.items() if k != "route"}}


def _plan(
    budgets: Sequence[int | str], methods: Sequence[str], n_pool: int, settings: Sequence[str] = SETTINGS
) -> list[tuple[str, int, str]]:
    """(method, budget, unpaired setting) of every fit of one seed; ``"all"`` becomes ``n_pool``."""
    plan = []
    for raw in budgets:
        budget = n_pool if raw == "all" else int(raw)
        if budget > n_pool:
            continue
        for method in methods:
            if budget == 0 and method in _NEEDS_PAIRS:
                continue
            if budget > 0 and method in ZERO_METHODS:
                continue
            no_free = budget == n_pool
            if method in PAIR_METHODS or no_free:
                plan.append((method, budget, "none"))
            else:
                plan.extend((method, budget, s) for s in settings)
    return plan


def budget_curve(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    budgets: Sequence[int | str],
    methods: Sequence[str],
    seeds: Sequence[int],
    n_test: int,
    echo: Callable[[str], None] | None = None,
    done: Sequence[dict[str, Any]] = (),
    on_record: Callable[[dict[str, Any]], None] | None = None,
    settings: Sequence[str] = SETTINGS,
    extra_rows: int = 0,
) -> list[dict[str, Any]]:
    """One record per (seed, method, budget, unpaired setting): R@1 (CSLS and cosine), seconds, problems.

    ``X`` and ``Y`` hold the same items row by row (already normalised), except their last ``extra_rows``
    rows: unpaired rows of another corpus, different items on the two sides, which are never held out or
    paired and join the free rows of the ``"disjoint"`` setting (:func:`training_rows`). Budgets above
    the pool size are skipped; ``"all"`` is the whole pool. ``done`` holds records of an earlier, stopped run of the same
    curve: those fits are taken from it instead of being fitted again. ``on_record`` is called with each
    record as soon as it is made (e.g. to journal it, :func:`~latentalign.experiments.fit_cache.journaled_job`).
    ``settings``: the unpaired settings the methods that use free rows are fitted with (some of ``SETTINGS``).

    Examples
    --------
    A rotated copy is recovered by Procrustes from 25 pairs:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(120, 8))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    >>> recs = budget_curve(X, X @ Q, budgets=[25], methods=["procrustes"], seeds=[0], n_test=40)
    >>> [(r["method"], r["budget"], r["unpaired"], r["r1_csls"]) for r in recs]
    [('procrustes', 25, 'none', 1.0)]
    """
    from latentalign.align import list_aligners
    from latentalign.exceptions import ConvergenceWarning

    known = [m for m in (*PAIR_METHODS, *UNPAIRED_METHODS, *ZERO_METHODS) if m in list_aligners()]
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"methods must be among {known}, got {unknown}; fix the methods list of the config.")
    if not settings or any(s not in SETTINGS for s in settings):
        raise ValueError(
            f"settings must name one or more of {list(SETTINGS)}, got {list(settings)}; fix the unpaired settings of the config."
        )
    if isinstance(extra_rows, bool) or not isinstance(extra_rows, int) or not 0 <= extra_rows < len(X) - 1:
        raise ValueError(
            f"extra_rows must be a whole number from 0 to {len(X) - 2} (X has {len(X)} rows), got {extra_rows!r}; "
            "pass how many of the last rows of X and Y are unpaired rows of another corpus."
        )
    n_items = len(X) - extra_rows
    extra = np.arange(n_items, len(X))
    earlier = {_fit_id(record): record for record in done}
    records = []

    def add(record: dict[str, Any]) -> None:
        records.append(record)
        if on_record is not None:
            on_record(record)

    for seed in seeds:
        test, pool = split_items(n_items, n_test, seed)
        zero_pair_fits: dict[str, dict[str, Any]] = {}
        plan = _plan(budgets, methods, len(pool), settings)
        # the zero-pair fits first, so that OT at budget 0 can repeat them
        plan.sort(key=lambda step: (step[1] != 0, step[0] != "unsupervised"))
        for method, budget, setting in plan:
            if (int(seed), method, int(budget), setting) in earlier:
                journaled = earlier[(int(seed), method, int(budget), setting)]
                records.append(journaled)
                if method == "unsupervised":
                    zero_pair_fits[setting] = journaled
                continue
            if method == "ot" and budget == 0 and setting in zero_pair_fits:
                add({**zero_pair_fits[setting], "method": "ot", "seconds": 0.0, "same_fit_as": "unsupervised"})
                continue
            rows_x, rows_y, pairs = training_rows(pool, budget, setting, seed, extra)
            start = time.perf_counter()
            record: dict[str, Any] = {
                "seed": int(seed),
                "method": method,
                "budget": int(budget),
                "is_all": budget == len(pool),
                "unpaired": setting,
                "n_free_x": int(len(rows_x) - budget),
                "n_free_y": int(len(rows_y) - budget),
                "n_test": int(len(test)),
            }
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                try:
                    model = fit_aligner(method, X[rows_x], Y[rows_y], pairs, seed)
                    record.update(retrieval_r1(model, method, X[test], Y[test]))
                    record.update(fit_route(model))
                    record["error"] = None
                except Exception as exc:  # recorded on the page with its traceback's last line
                    record.update(r1_csls=None, r1_cosine=None)
                    record["error"] = f"{type(exc).__name__}: {exc}"
                    record["traceback"] = traceback.format_exc(limit=6)
            record["seconds"] = round(time.perf_counter() - start, 2)
            record["convergence_warnings"] = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
            add(record)
            if method == "unsupervised":
                zero_pair_fits[setting] = record
            if echo is not None:
                echo(
                    f"seed {seed} {method} budget {budget} {setting}: "
                    f"{record['r1_csls'] if record['error'] is None else record['error']} ({record['seconds']} s)"
                )
    return records


def _fit_id(record: dict[str, Any]) -> tuple[int, str, int, str]:
    return int(record["seed"]), str(record["method"]), int(record["budget"]), str(record["unpaired"])
