"""How well a few_and_no_pairs record's ConvergenceWarnings tell failed fits from good ones.

Every fit of the page counts the ConvergenceWarnings it raised. A warning is meant for a fit that failed;
this sorts the fits of the chosen methods (by default OTAligner and UnsupervisedAligner, the ones that
judge themselves) by their R@1 (CSLS) as a share of the case's supervised Procrustes R@1 (same seed) and
by whether they warned, and lists the false alarms (warned, at least ``--good`` of supervised) and the
silent failures (no warning, below ``--failed``), with the route OTAligner took and the score that chose
it where the record names them. It reads the record only; it fits nothing.

Run, for example::

    python benchmarks/page_warnings.py experiments/results/few_and_no_pairs.json
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_page_cells import record_setup, recorded_fits  # noqa: E402

Fits = dict[tuple[str, str, int, str, int], dict[str, Any]]


def supervised_r1(fits: Fits) -> dict[tuple[str, int], float]:
    """Procrustes on every pool pair, per (case name, seed)."""
    return {
        (case, seed): float(r["r1_csls"])
        for (case, method, _budget, _setting, seed), r in fits.items()
        if method == "procrustes" and r["is_all"] and r["r1_csls"] is not None
    }


def route_score(record: dict[str, Any]) -> str:
    """The route OTAligner took and the score that chose it (``-`` when the record has none)."""
    route, scores = record.get("route"), record.get("route_scores") or {}
    if not route:
        return "-"
    score = scores.get(route)
    return f"{route} ({score:.2f})" if isinstance(score, (int, float)) else str(route)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("record", type=Path, help="a page record (JSON)")
    parser.add_argument("--methods", default="ot,unsupervised")
    parser.add_argument("--good", type=float, default=0.8, help="share of supervised R@1 that counts as good")
    parser.add_argument("--failed", type=float, default=0.5, help="share of supervised R@1 below which a fit failed")
    args = parser.parse_args()
    fits = recorded_fits(record_setup(args.record), args.record)
    supervised = supervised_r1(fits)
    methods = set(args.methods.split(","))
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    false_alarms, silent_failures = [], []
    for (case, _method, _budget, _setting, seed), r in sorted(fits.items(), key=str):
        if r["method"] not in methods or r["is_all"] or r["r1_csls"] is None or r.get("same_fit_as"):
            continue
        share = float(r["r1_csls"]) / supervised[(case, seed)]
        quality = "good" if share >= args.good else "failed" if share < args.failed else "between"
        warned = "warned" if r["convergence_warnings"] else "silent"
        counts[(quality, warned)] += 1
        line = (
            f"  {case} {r['method']} {r['budget']} pairs {r['unpaired']} seed {r['seed']}: R@1 "
            f"{r['r1_csls']:.3f} = {share:.0%} of supervised; route {route_score(r)}"
        )
        if warned == "warned" and quality == "good":
            false_alarms.append(line)
        if warned == "silent" and quality == "failed":
            silent_failures.append(line)
    print(f"fits of {sorted(methods)} below all pairs, by R@1 against supervised Procrustes (same case and seed):")
    for quality in ("good", "between", "failed"):
        print(f"  {quality:8s} warned {counts[(quality, 'warned')]:4d}  silent {counts[(quality, 'silent')]:4d}")
    for title, lines in (
        (f"false alarms (warned, >= {args.good:.0%} of supervised)", false_alarms),
        (f"silent failures (no warning, < {args.failed:.0%} of supervised)", silent_failures),
    ):
        print(f"{title}: {len(lines)}", *lines, sep="\n")


if __name__ == "__main__":
    main()
