"""Known pairs plus *disjoint* unpaired rows as the unpaired rows grow: a glosses case of few_and_no_pairs, enlarged.

On the ``few_and_no_pairs`` page the WordNet glosses cases draw 40 glosses per category (1,799 items), so
with 50 known pairs each side holds 649 unpaired glosses of its own. This script draws more glosses per
category (the same stratified sample, larger), keeps the page's number of held-out items (450), fits each
method exactly as the page does (``make_aligner(method)`` seeded, the seed's split and ``disjoint``
training rows: the free rows of the two sides are different items) and prints, per fit, the free rows
per side, R@1 (CSLS) on the held-out items, the same against Procrustes on every pool pair
(supervised), the route ``OTAligner`` took, the fit's seconds and its ConvergenceWarnings. The first
size (40 per category) is the page's own cell; it never writes the page.

Run, for example::

    python benchmarks/bench_disjoint_pool_size.py b-wordnet-e5 --per-category 40,100,200 --seeds 0,1,2

``--out FILE`` appends the table to FILE (e.g. ``benchmarks/results/bench_disjoint_pool_size.txt``).
Glosses not yet in the embedding store are embedded first (a few minutes on 2 cores for 9,000).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import append_table, limit_threads, machine_summary, print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", nargs="?", default="b-wordnet-e5", help="a WordNet glosses case of the page")
    parser.add_argument("--per-category", default="40,100,200", help="glosses drawn per WordNet category")
    parser.add_argument("--budget", type=int, default=50, help="known pairs")
    parser.add_argument("--methods", default="ot")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n-test", type=int, default=450, help="held-out items (the page's quarter of 1,799)")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (the page uses 1)")
    parser.add_argument("--out", type=Path, help="append the table to this file")
    args = parser.parse_args()
    limit_threads(args.threads)
    from bench_page_cells import page_config, refit

    from latentalign.experiments.few_and_no_pairs_curves import normalize_spaces
    from latentalign.experiments.few_and_no_pairs_data import load_case

    setup = page_config()["setup"]
    cases = {case["name"]: case for case in setup["cases"]}
    if cases.get(args.case, {}).get("data") != "wordnet-glosses":
        glosses = sorted(name for name, case in cases.items() if case["data"] == "wordnet-glosses")
        raise SystemExit(f"case must be a WordNet glosses case of the page, one of {glosses}; got {args.case!r}.")
    rows, label = [], args.case
    for per_category in (int(n) for n in args.per_category.split(",")):
        grown = copy.deepcopy(setup)
        grown["glosses_per_category"] = per_category
        data = load_case(cases[args.case], grown)
        label = data.label.rsplit(" (", 1)[0]
        X, Y = normalize_spaces(data.X, data.Y)
        free = (len(X) - args.n_test - args.budget) // 2
        for seed in (int(s) for s in args.seeds.split(",")):
            supervised = refit(X, Y, args.n_test, "procrustes", len(X) - args.n_test, "none", seed)["r1"]
            for method in args.methods.split(","):
                cell = refit(X, Y, args.n_test, method, args.budget, "disjoint", seed)
                rows.append(
                    {
                        "per category": per_category,
                        "items": len(X),
                        "free rows per side": free,
                        "seed": seed,
                        "method": method,
                        "R@1": cell["r1"],
                        "supervised R@1": supervised,
                        "share": cell["r1"] / supervised,
                        "route": cell["route"],
                        "fit s": cell["seconds"],
                        "warnings": cell["warnings"],
                    }
                )
                print(rows[-1], flush=True)
    title = (
        f"{label}, {args.budget} pairs + disjoint free rows, {args.n_test} held-out items; "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}; {machine_summary()}"
    )
    append_table(args.out, print_table(rows, list(rows[0]), title=title))


if __name__ == "__main__":
    main()
