"""Where the time of one few_and_no_pairs fit goes: a profile of one page cell, SVDs counted by shape.

``OTAligner`` with known pairs spends most of a fit in its route check (self-learning trials and
soft-matching routes, each fold after another), and those refit Procrustes maps many times. This script
refits one cell of the page exactly as ``bench_page_cells.py`` does, under ``cProfile``, and prints

* the fit's seconds, R@1 (CSLS) and route,
* the singular value decompositions it ran (``latentalign.functional.linalg.svd`` and
  ``torch.linalg.svdvals``), grouped by matrix shape: count and seconds,
* the library functions with the largest cumulative time.

It never writes the page. Timings share the machine with whatever else runs: compare shares within one
profile, not seconds across machines.

Run, for example::

    python benchmarks/profile_page_cell.py b-wordnet-e5 --budget 50 --setting disjoint --seed 0
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import append_table, limit_threads, machine_summary, print_table  # noqa: E402


def _timed(function: Any, counts: dict[tuple[str, tuple[int, ...]], list[float]], name: str) -> Any:
    """``function`` wrapped to add each call's seconds under (name, shape of its first argument)."""

    def wrapper(matrix: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = function(matrix, *args, **kwargs)
        entry = counts[(name, tuple(matrix.shape))]
        entry[0] += 1
        entry[1] += time.perf_counter() - start
        return out

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", help="a case name of the config, e.g. b-wordnet-e5")
    parser.add_argument("--method", default="ot")
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--setting", default="disjoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (the page uses 1)")
    parser.add_argument("--top", type=int, default=15, help="library functions listed by cumulative time")
    parser.add_argument("--out", type=Path, help="append the tables to this file")
    args = parser.parse_args()
    limit_threads(args.threads)
    import torch
    from bench_page_cells import load_page_case, refit

    import latentalign.functional.procrustes as procrustes

    counts: dict[tuple[str, tuple[int, ...]], list[float]] = collections.defaultdict(lambda: [0, 0.0])
    procrustes.svd = _timed(procrustes.svd, counts, "svd")  # the module's own name for the solver it calls
    svdvals = torch.linalg.svdvals
    torch.linalg.svdvals = _timed(svdvals, counts, "svdvals")
    _, X, Y, n_test = load_page_case(args.case)
    profile = cProfile.Profile()
    profile.enable()
    cell = refit(X, Y, n_test, args.method, args.budget, args.setting, args.seed)
    profile.disable()
    torch.linalg.svdvals = svdvals
    total = cell["seconds"]
    print(f"R@1 {cell['r1']:.3f}, route {cell['route']}, {total:.1f} s, {cell['warnings']} warnings")
    rows = [
        {"call": name, "shape": "x".join(map(str, shape)), "count": n, "seconds": s, "share of fit": s / total}
        for (name, shape), (n, s) in sorted(counts.items(), key=lambda kv: -kv[1][1])
        if s >= 0.005 * total
    ]
    svd_seconds = sum(s for _, s in counts.values())
    title = (
        f"{args.case}, {args.method}, {args.budget} pairs, {args.setting}, seed {args.seed}: {total:.1f} s, "
        f"R@1 {cell['r1']:.3f}, route {cell['route']}; SVDs {svd_seconds:.1f} s ({svd_seconds / total:.0%}) in "
        f"{sum(int(n) for n, _ in counts.values())} calls (shapes under 0.5 % of the fit left out); "
        f"{machine_summary()}"
    )
    table = print_table(rows, list(rows[0]) if rows else ["call"], title=title)
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.sort_stats("cumulative").print_stats("latentalign", args.top)
    listing = stream.getvalue().replace(str(HERE.parent) + "/", "")  # paths relative to the source tree
    print(listing)
    append_table(args.out, table + "\n" + listing)


if __name__ == "__main__":
    main()
