"""Each soft-matching route of the route check on its own, on cells of the few_and_no_pairs page.

``OTAligner`` with known pairs tries the routes of
``latentalign.functional.self_learning.TRANSPORT_ROUTES`` (and self-learning, and the pairs alone) and
keeps the one that ranks set-aside pairs best. This script fits every route alone on all the known pairs
of a page cell (the case's embeddings normalised as there, the seed's held-out split and training rows,
Procrustes maps as ``OTAligner`` fits them) and prints the R@1 (CSLS) of each on the held-out items, so
routes can be compared without the noise of the judge. ``--routes`` adds routes written
``start:start_reg:reg:n_rounds`` (``start_reg`` ``-`` for none; one equal to a route of
``TRANSPORT_ROUTES`` is not fitted twice), e.g. the relative routes before their blur was raised:
``relative:-:0.1:1,relative:-:0.1:6``.

Run, for example::

    python benchmarks/bench_transport_routes.py b-wordnet-e5 --budget 50 --setting disjoint --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import datetime
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import append_table, limit_threads, machine_summary, print_table  # noqa: E402

BEFORE = "relative:-:0.1:1,relative:-:0.1:6"


def parse_routes(text: str) -> dict[str, dict[str, object]]:
    """``start:start_reg:reg:n_rounds,...`` -> {label: keyword arguments of transport_refined_map}."""
    routes: dict[str, dict[str, object]] = {}
    for item in filter(None, text.split(",")):
        start, start_reg, reg, n_rounds = item.split(":")
        routes[item] = {
            "start": start,
            "start_reg": None if start_reg == "-" else float(start_reg),
            "reg": float(reg),
            "n_rounds": int(n_rounds),
        }
    return routes


def route_r1(case: str, budget: int, setting: str, seeds: list[int], routes: dict[str, dict[str, object]]) -> list:
    """One row per (route, seed): R@1 (CSLS) on the held-out items of the map of that route alone."""
    import torch
    from bench_page_cells import load_page_case

    from latentalign.align.ot import make_map
    from latentalign.experiments.few_and_no_pairs_curves import split_items, training_rows
    from latentalign.functional.retrieval import retrieval_scores
    from latentalign.functional.transport_refine import transport_refined_map

    _, X, Y, n_test = load_page_case(case)

    def fitter(few_pairs: bool):
        def fit(A, B):
            model = make_map("procrustes", few_pairs=few_pairs).fit(A, B)
            return model._transform, model

        return fit

    rows = []
    for seed in seeds:
        test, pool = split_items(len(X), n_test, seed)
        rows_x, rows_y, pairs = training_rows(pool, budget, setting, seed)
        Xt = torch.as_tensor(np.asarray(X[rows_x]), dtype=torch.float64)
        Yt = torch.as_tensor(np.asarray(Y[rows_y]), dtype=torch.float64)
        P = torch.as_tensor(pairs, dtype=torch.int64)
        free_x, free_y = torch.arange(budget, len(rows_x)), torch.arange(budget, len(rows_y))
        for label, options in routes.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the rounds' intermediate maps are fitted on few rows
                transform, _ = transport_refined_map(
                    Xt, Yt, fitter(options["start"] == "pairs"), pairs=P, rows_x=free_x, rows_y=free_y, **options
                )
            mapped = transform(torch.as_tensor(np.asarray(X[test]), dtype=torch.float64)).numpy()
            r1 = retrieval_scores(mapped, np.asarray(Y[test]), k=1, csls=True, csls_k=10)["recall@1"]
            rows.append({"route": label, "seed": seed, "R@1": float(r1)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    from latentalign.functional.self_learning import TRANSPORT_ROUTES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", help="a case name of the page's config, e.g. b-wordnet-e5")
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--setting", default="disjoint", choices=["disjoint", "shuffled"])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--routes", default=BEFORE, help="routes besides TRANSPORT_ROUTES (default: the earlier ones)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="append the table to this file")
    args = parser.parse_args()
    limit_threads(args.threads)
    routes = {name: dict(route._asdict()) for name, route in TRANSPORT_ROUTES.items()}
    routes.update((label, extra) for label, extra in parse_routes(args.routes).items() if extra not in routes.values())
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = route_r1(args.case, args.budget, args.setting, seeds, routes)
    table = []
    for label in routes:
        scores = [row["R@1"] for row in rows if row["route"] == label]
        table.append(
            {"route": label, "mean R@1": float(np.mean(scores)), "per seed": ", ".join(f"{s:.3f}" for s in scores)}
        )
    title = (
        f"{args.case}, {args.budget} pairs, {args.setting} free rows, seeds {args.seeds}; "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}; {machine_summary()}"
    )
    append_table(args.out, print_table(table, ["route", "mean R@1", "per seed"], title=title))


if __name__ == "__main__":
    main()
