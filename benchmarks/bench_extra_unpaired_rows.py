"""Known pairs plus unpaired rows of *another corpus*: the page's Tux Paint captions case with WordNet glosses added.

On the ``few_and_no_pairs`` page, MiniLM-L6 -> MPNet on 633 Tux Paint captions with 50 known pairs and
disjoint unpaired captions (about 210 per side) reaches 70 % of the supervised R@1, and there are no
more captions to add. This script adds WordNet glosses embedded by the same two models as further
unpaired rows: the source side gets ``n`` glosses from one half of the glosses, the target side ``n``
from the other half, so no gloss has a counterpart and none is paired. Everything else is the page's
cell (the seed's held-out captions and training rows, ``disjoint`` setting, ``make_aligner("ot")``
seeded); each side is normalised as on the page (unit length, centred, unit length) on its captions plus
its glosses. It prints, per fit, R@1 (CSLS) of the held-out captions against the other model's held-out
captions, the page's supervised R@1 (Procrustes on every pool caption pair, no glosses), the route
``OTAligner`` took, the fit's seconds and its ConvergenceWarnings. It never writes a page.

Run, for example::

    python benchmarks/bench_extra_unpaired_rows.py --extra 0,1000,4000 --seeds 0,1

``--out FILE`` appends the table to FILE (e.g. ``benchmarks/results/bench_extra_unpaired_rows.txt``).
Glosses not yet in the embedding store are embedded first (several minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import append_table, limit_threads, machine_summary, print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extra", default="0,1000,4000", help="unpaired glosses added to each side")
    parser.add_argument("--budget", type=int, default=50, help="known caption pairs")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--per-category", type=int, default=200, help="glosses drawn per WordNet category")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (the page uses 1)")
    parser.add_argument("--out", type=Path, help="append the table to this file")
    args = parser.parse_args()
    limit_threads(args.threads)
    from bench_page_cells import load_page_case, page_config, refit

    from latentalign.exceptions import ConvergenceWarning
    from latentalign.experiments.few_and_no_pairs_curves import (
        fit_aligner,
        fit_route,
        normalize_spaces,
        retrieval_r1,
        split_items,
        training_rows,
    )
    from latentalign.experiments.few_and_no_pairs_data import extra_row_draw, load_case

    setup = page_config()["setup"]
    cases = {case["name"]: case for case in setup["cases"]}
    captions, Xc, Yc, n_test = load_page_case("b-tuxpaint-mpnet")
    glosses_case = cases["b-wordnet-mpnet"]
    captions_case = cases["b-tuxpaint-mpnet"]
    if (glosses_case["source"], glosses_case["target"]) != (captions_case["source"], captions_case["target"]):
        raise SystemExit("the glosses case must embed with the captions case's two models")
    grown = copy.deepcopy(setup)
    grown["glosses_per_category"] = args.per_category
    glosses = load_case(glosses_case, grown)
    extras = [int(n) for n in args.extra.split(",")]
    half = len(glosses.X) // 2
    if max(extras) > half:
        raise SystemExit(
            f"--extra is at most {half} (half of the {len(glosses.X)} glosses per side), got {max(extras)}."
        )
    n_captions = len(captions.X)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        supervised = refit(Xc, Yc, n_test, "procrustes", n_captions - n_test, "none", seed)["r1"]
        test, pool = split_items(n_captions, n_test, seed)
        for n in extras:
            # the page's draw (few_and_no_pairs_other_corpus): a different half of the glosses on each side
            source_glosses, target_glosses = (
                extra_row_draw(len(glosses.X), n, seed) if n else (np.empty(0, np.int64),) * 2
            )
            X, Y = normalize_spaces(
                np.concatenate([captions.X, glosses.X[source_glosses]]),
                np.concatenate([captions.Y, glosses.Y[target_glosses]]),
            )
            fit_x, fit_y, pairs = training_rows(pool, args.budget, "disjoint", seed, n_captions + np.arange(n))
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model = fit_aligner("ot", X[fit_x], Y[fit_y], pairs, seed)
            seconds = time.perf_counter() - start
            r1 = retrieval_r1(model, "ot", X[test], Y[test])["r1_csls"]
            rows.append(
                {
                    "seed": seed,
                    "extra glosses per side": n,
                    "free rows per side": len(fit_x) - args.budget,
                    "R@1": r1,
                    "supervised R@1": supervised,
                    "share": r1 / supervised,
                    "route": fit_route(model)["route"],
                    "fit s": seconds,
                    "warnings": sum(issubclass(w.category, ConvergenceWarning) for w in caught),
                }
            )
            print(rows[-1], flush=True)
    title = (
        f"MiniLM-L6 -> MPNet, Tux Paint captions, {args.budget} pairs + disjoint captions + WordNet glosses "
        f"({args.per_category} per category) as extra unpaired rows, {n_test} held-out captions; "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}; {machine_summary()}"
    )
    append_table(args.out, print_table(rows, list(rows[0]), title=title))


if __name__ == "__main__":
    main()
