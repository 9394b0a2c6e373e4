"""Refit cells of the few_and_no_pairs page with the installed code and compare them with its record.

The full page takes about two and a half hours on 2 cores. When a change touches only some of its fits
(e.g. OTAligner below 25 pairs), this script refits those cells exactly as the page does (the case's
embeddings normalised as there, the seed's held-out split and training rows, ``make_aligner(method)``
with ``random_state`` set to the seed) and prints, per fit, the R@1 (CSLS) now, the one in the committed
record (``experiments/results/few_and_no_pairs.json``), the route ``OTAligner`` took, the fit's seconds
and the ConvergenceWarnings it raised. It never writes the page: only a full run does.

Run, for example::

    python benchmarks/bench_page_cells.py d-freedict --budgets 5,10 --settings shuffled --seeds 0,1,2,3,4

Cases are named as in the config (``b-wordnet-e5``, ``b-tuxpaint-mpnet``, ``d-freedict``, ...).
``--out FILE`` appends the table to FILE (e.g. ``benchmarks/results/bench_page_cells.txt``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import append_table, limit_threads, machine_summary, print_table  # noqa: E402

RECORD = HERE.parent / "experiments" / "results" / "few_and_no_pairs.json"


def page_config(name: str = "few_and_no_pairs") -> dict[str, Any]:
    """A page's config, as the package ships it (few_and_no_pairs or a config that extends it)."""
    from latentalign.experiments.runner import load_config

    return load_config(name)


def record_setup(path: Path) -> dict[str, Any]:
    """The ``[setup]`` of the config that wrote the page record at ``path`` (its ``kind`` names it)."""
    kind = str(json.loads(path.read_text())["kind"])
    prefix = "experiment:"
    if not kind.startswith(prefix):
        raise SystemExit(f"{path} is not an experiment record: its kind is {kind!r}, expected {prefix}<name>.")
    return page_config(kind[len(prefix) :])["setup"]


def load_page_case(name: str) -> tuple[Any, np.ndarray, np.ndarray, int]:
    """A case of the page as its fits see it: the loaded data, both spaces normalised, the held-out count."""
    from latentalign.experiments.few_and_no_pairs_curves import normalize_spaces
    from latentalign.experiments.few_and_no_pairs_data import load_case

    setup = page_config()["setup"]
    cases = {case["name"]: case for case in setup["cases"]}
    if name not in cases:
        raise SystemExit(f"case must be one of {sorted(cases)}, got {name!r}.")
    data = load_case(cases[name], setup)
    X, Y = normalize_spaces(data.X, data.Y)
    return data, X, Y, int(round(float(setup["test_fraction"]) * len(X)))


def recorded_fits(setup: dict[str, Any], path: Path = RECORD) -> dict[tuple[str, str, int, str, int], dict[str, Any]]:
    """Every fit of a page record, by (case name, method, budget, setting, seed).

    The record lists each case's fits in the order of ``run_cases`` among the config's cases, seed by
    seed; a case starts again at the first seed.
    """
    record = json.loads(path.read_text())
    run = [str(key) for key in setup["run_cases"]]
    names = [case["name"] for case in setup["cases"] if case["key"] in run or case["name"] in run]
    first_seed = int(setup["seeds"][0])
    found: dict[tuple[str, str, int, str, int], dict[str, Any]] = {}
    index, previous = -1, None
    for entry in record["details"]["records"]:
        if entry["seed"] == first_seed and previous != first_seed:
            index += 1
        previous = entry["seed"]
        found[(names[index], entry["method"], entry["budget"], entry["unpaired"], entry["seed"])] = entry
    return found


def recorded_r1(setup: dict[str, Any]) -> dict[tuple[str, str, int, str, int], float | None]:
    """R@1 (CSLS) of every fit in the committed record, keyed as :func:`recorded_fits`."""
    return {key: entry["r1_csls"] for key, entry in recorded_fits(setup).items()}


def refit(
    X: np.ndarray, Y: np.ndarray, n_test: int, method: str, budget: int, setting: str, seed: int
) -> dict[str, Any]:
    """One cell of the page: R@1 (CSLS), the route, seconds and ConvergenceWarnings."""
    from latentalign.exceptions import ConvergenceWarning
    from latentalign.experiments.few_and_no_pairs_curves import (
        fit_aligner,
        fit_route,
        retrieval_r1,
        split_items,
        training_rows,
    )

    test, pool = split_items(len(X), n_test, seed)
    rows_x, rows_y, pairs = training_rows(pool, budget, setting, seed)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = fit_aligner(method, X[rows_x], Y[rows_y], pairs, seed)
    seconds = time.perf_counter() - start
    return {
        "r1": retrieval_r1(model, method, X[test], Y[test])["r1_csls"],
        "route": fit_route(model)["route"] or getattr(model, "method_", "-"),
        "seconds": seconds,
        "warnings": sum(issubclass(w.category, ConvergenceWarning) for w in caught),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", help="a case name of the config, e.g. d-freedict")
    parser.add_argument("--method", default="ot")
    parser.add_argument("--budgets", default="5,10")
    parser.add_argument("--settings", default="shuffled,disjoint")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (the page uses 1)")
    parser.add_argument("--out", type=Path, help="append the table to this file")
    args = parser.parse_args()
    limit_threads(args.threads)
    setup = page_config()["setup"]
    data, X, Y, n_test = load_page_case(args.case)
    before = recorded_r1(setup)
    rows = []
    for setting in args.settings.split(","):
        for budget in (int(b) for b in args.budgets.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                cell = refit(X, Y, n_test, args.method, budget, setting, seed)
                rows.append(
                    {
                        "setting": setting,
                        "pairs": budget,
                        "seed": seed,
                        "R@1 now": cell["r1"],
                        "R@1 record": before.get((args.case, args.method, budget, setting, seed)),
                        "route": cell["route"],
                        "fit s": cell["seconds"],
                        "warnings": cell["warnings"],
                    }
                )
                print(rows[-1], flush=True)
    title = f"{data.label}, {args.method}; {datetime.datetime.now().isoformat(timespec='seconds')}; {machine_summary()}"
    append_table(args.out, print_table(rows, list(rows[0]), title=title))


if __name__ == "__main__":
    main()
