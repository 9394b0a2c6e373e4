"""Time and peak memory of latentalign's OT couplings beside POT called directly on the same data.

Every measurement runs in a fresh subprocess (so peak memory is its own): the worker builds float32
torch data ``X, Y`` of shape ``(n, d)`` (seeded), records its resident memory, runs one solve, and
reports the wall time and the peak resident memory above that baseline (``ru_maxrss``). Both sides solve
the same problem: the same cost (squared Euclidean divided by its mean), the same POT solver with the same
``reg``, iteration cap and stopping tolerance. The ratio column is latentalign / POT (target < 1.10).

Cases
-----
* ``sinkhorn``      classic Sinkhorn, ``reg=0.1`` (kernel representable in float32), solved to tol 1e-6.
* ``sinkhorn-log``  log-domain Sinkhorn, ``reg=0.01`` (the classic kernel would underflow), 50 iterations.
* ``sinkhorn-lazy`` POT's lazy ``empirical_sinkhorn`` in 1024-row blocks (no n x n matrix), 20 iterations.
* ``emd``           exact OT (POT's network simplex, float64 inside).
* ``gw``            exact Gromov-Wasserstein (n <= 2000; OTAligner samples 2000 rows above that).

Usage::

    python benchmarks/bench_ot.py                      # n = 1000, 5000, 10000
    python benchmarks/bench_ot.py --sizes 1000 --cases sinkhorn emd
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

D = 64
SEED = 0
CASES = ("sinkhorn", "sinkhorn-log", "sinkhorn-lazy", "emd", "gw")
GW_MAX_N = 2000


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _settings(case: str) -> dict:
    return {
        "sinkhorn": {"reg": 0.1, "max_iter": 10_000, "tol": 1e-6, "log": False},
        "sinkhorn-log": {"reg": 0.01, "max_iter": 50, "tol": 1e-30, "log": True},
        "sinkhorn-lazy": {"reg": 0.1, "max_iter": 20, "tol": 1e-30, "batch": 1024},
        "emd": {},
        "gw": {},
    }[case]


def worker(impl: str, case: str, n: int) -> dict:
    import ot
    import torch

    from latentalign.functional.ot import _mean_cost, gw_plan, ot_plan, sinkhorn_projection

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    g = torch.Generator().manual_seed(SEED)
    X = torch.randn(n, D, generator=g)
    Y = torch.randn(n, D, generator=g) * 1.2 + 0.3
    s = _settings(case)
    base = _rss_mb()
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    if impl == "pot":
        a = torch.full((n,), 1.0 / n)
        if case.startswith("sinkhorn") and case != "sinkhorn-lazy":
            M = ot.dist(X, Y)
            M /= M.mean()
            method = "sinkhorn_log" if s["log"] else "sinkhorn"
            out = ot.sinkhorn(a, a, M, s["reg"], method=method, numItermax=s["max_iter"], stopThr=s["tol"])
        elif case == "sinkhorn-lazy":
            reg = s["reg"] * _mean_cost(X, Y, "sqeuclidean")
            f, gpot = ot.bregman.empirical_sinkhorn(
                X, Y, reg, a=a, b=a, numIterMax=s["max_iter"], stopThr=s["tol"], isLazy=True, batchSize=s["batch"]
            )
            out = torch.empty(n, D)  # barycentric projection, block by block, from the potentials
            for i in range(0, n, s["batch"]):
                logits = f[i : i + s["batch"], None] + gpot[None, :] - ot.dist(X[i : i + s["batch"]], Y) / reg
                w = (logits - logits.max(1, keepdim=True).values).exp()
                out[i : i + s["batch"]] = (w @ Y) / w.sum(1, keepdim=True)
        elif case == "emd":
            M = ot.dist(X, Y)
            M /= M.mean()
            out = ot.emd(a, a, M, numItermax=max(100_000, 10 * n * n))
        else:
            C1, C2 = ot.dist(X.double(), X.double()), ot.dist(Y.double(), Y.double())
            C1, C2 = C1 / C1.mean(), C2 / C2.mean()
            out = ot.gromov.gromov_wasserstein(
                C1, C2, a.double(), a.double(), symmetric=True, tol_rel=1e-8, tol_abs=1e-8
            )
    else:
        if case.startswith("sinkhorn") and case != "sinkhorn-lazy":
            out = ot_plan(X, Y, reg=s["reg"], max_iter=s["max_iter"], tol=s["tol"], log_domain=s["log"])
        elif case == "sinkhorn-lazy":
            out = sinkhorn_projection(X, Y, reg=s["reg"], max_iter=s["max_iter"], tol=s["tol"], batch_size=s["batch"])
        elif case == "emd":
            out = ot_plan(X, Y, method="emd")
        else:
            out = gw_plan(X.double(), Y.double())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del out
    return {"seconds": seconds, "peak_mb": max(peak - base, 0.0)}


def run(impl: str, case: str, n: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, case, str(n)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.environ.get("PYTHONPATH", "")]
        ),
    }
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"rc {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--repeats", type=int, default=2, help="best-of repeats per cell (1 above n=5000)")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "CASE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, case, n = args.worker
        print(json.dumps(worker(impl, case, int(n))))
        return
    header = (
        f"{'case':<14}{'n':>7}  {'POT s':>9}{'latentalign s':>15}{'ratio':>7}  "
        f"{'POT MB':>9}{'latentalign MB':>16}{'ratio':>7}"
    )
    print(
        f"OT couplings, float32 data (n x {D}), torch threads={os.environ.get('BENCH_THREADS', '2')}; "
        "time = best of repeats, memory = peak RSS above the data"
    )
    print(header)
    print("-" * len(header))
    for case in args.cases:
        for n in args.sizes:
            if case == "gw" and n > GW_MAX_N:
                print(f"{case:<14}{n:>7}  skipped: GW is O(n^3) per iteration; OTAligner samples {GW_MAX_N} rows")
                continue
            repeats = args.repeats if n <= 5000 else 1
            cells = {}
            for impl in ("pot", "latentalign"):
                results = [run(impl, case, n) for _ in range(repeats)]
                errors = [r["error"] for r in results if "error" in r]
                if errors:
                    cells[impl] = {"error": errors[0]}
                    continue
                cells[impl] = {
                    "seconds": min(r["seconds"] for r in results),
                    "peak_mb": min(r["peak_mb"] for r in results),
                }
            if any("error" in c for c in cells.values()):
                failed = "; ".join(f"{k}: {c['error']}" for k, c in cells.items() if "error" in c)
                print(f"{case:<14}{n:>7}  failed: {failed}")
                continue
            pot, ours = cells["pot"], cells["latentalign"]
            print(
                f"{case:<14}{n:>7}  {pot['seconds']:>9.2f}{ours['seconds']:>15.2f}{ours['seconds'] / pot['seconds']:>7.2f}  "
                f"{pot['peak_mb']:>9.0f}{ours['peak_mb']:>16.0f}{ours['peak_mb'] / max(pot['peak_mb'], 1.0):>7.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
