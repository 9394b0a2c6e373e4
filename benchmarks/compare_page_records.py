"""Compare two records of the few_and_no_pairs page fit by fit: what a code change moved.

A full run replaces ``experiments/results/few_and_no_pairs.json``; the previous record is in git. This
prints every fit whose R@1 (CSLS) or ConvergenceWarning count changed, the totals of both records (fits,
warnings, fit seconds) and, where the newer record names the route each OTAligner fit took, how often
each route was taken per budget and setting. It reads the records only; it fits nothing.

Run, for example::

    git show HEAD~1:experiments/results/few_and_no_pairs.json > /tmp/old.json
    python benchmarks/compare_page_records.py /tmp/old.json experiments/results/few_and_no_pairs.json
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_page_cells import record_setup, recorded_fits  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path, help="the earlier record (JSON)")
    parser.add_argument("new", type=Path, help="the later record (JSON)")
    parser.add_argument("--tol", type=float, default=1e-9, help="smallest R@1 change reported")
    args = parser.parse_args()
    old, new = recorded_fits(record_setup(args.old), args.old), recorded_fits(record_setup(args.new), args.new)
    moved = []
    for key in sorted(set(old) & set(new), key=str):
        a, b = old[key], new[key]
        r_a, r_b = a["r1_csls"], b["r1_csls"]
        differs = (r_a is None) != (r_b is None) or (r_a is not None and abs(r_a - r_b) > args.tol)
        if differs or a["convergence_warnings"] != b["convergence_warnings"]:
            moved.append((key, a, b))
    print(f"fits: {len(old)} old, {len(new)} new, {len(set(old) ^ set(new))} in one record only")
    up = sum((b["r1_csls"] or 0) > (a["r1_csls"] or 0) + args.tol for _, a, b in moved)
    down = sum((b["r1_csls"] or 0) < (a["r1_csls"] or 0) - args.tol for _, a, b in moved)
    print(f"changed: {len(moved)} fits (R@1 up {up}, down {down}, the rest warnings only)")
    for (case, method, budget, setting, seed), a, b in moved:
        route = f" route {b['route']}" if b.get("route") else ""
        print(
            f"  {case} {method} {budget} {setting} seed {seed}: R@1 {a['r1_csls']} -> {b['r1_csls']}, "
            f"warnings {a['convergence_warnings']} -> {b['convergence_warnings']}{route}"
        )
    for name, fits in (("old", old), ("new", new)):
        warned = sum(fit["convergence_warnings"] > 0 for fit in fits.values())
        seconds = sum(fit["seconds"] or 0 for fit in fits.values())
        print(f"{name}: {warned} fits warned, {seconds:.0f} fit seconds in all")
    routes: collections.Counter[tuple[str, int, str, str]] = collections.Counter()
    for (case, _method, budget, setting, _seed), fit in new.items():
        if fit.get("route"):
            routes[(case, budget, setting, fit["route"])] += 1
    if routes:
        print("routes taken (new record; fits of 5 seeds):")
        for (case, budget, setting, route), count in sorted(routes.items(), key=str):
            print(f"  {case} {budget} {setting}: {route} x{count}")


if __name__ == "__main__":
    main()
