"""Forward time of a Stitcher against the same map written by hand as ``nn.Linear``, and the old path.

    python benchmarks/bench_stitcher.py [--quick] [--threads 2]

Cases: no encoder (the input is A's embeddings), a Procrustes or an Affine map 768 -> 768 fitted on
random float32 data, and a ``nn.Linear(768, 10)`` head; batch sizes 1, 64 and 4096, float32, all under
``torch.no_grad()``. Per case, three forwards are timed *interleaved* in one loop (so a change of machine
load hits all three alike) and the median of each is reported:

- "nn.Linear + head": ``head(linear(x))`` with ``linear`` an ``nn.Linear`` holding the same ``W`` and ``b``
  (the hand-written floor);
- "Stitcher": ``Stitcher(None, aligner, head)(x)`` (the map is a ``LinearMap`` submodule: one addmm);
- "transform + head": ``head(aligner.transform(x))``, what the Stitcher did before its map became a module
  (input validation and the map rebuilt from the fitted state on every call).

"ratio" is the median over iterations of Stitcher time / nn.Linear time within the same iteration
(paired, so that a burst of machine load hits both sides; target <= 1.1). "GFLOP/s" is the map's useful work ``2 n d^2`` over the
Stitcher's median time, next to the machine's square float32 GEMM rate measured at the start.
The table goes to ``benchmarks/results/bench_stitcher.txt`` with the machine and its load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import gemm_rate, limit_threads, machine_summary, print_table  # noqa: E402

DIM = 768
N_CLASSES = 10
BATCHES = (1, 64, 4096)
RUNS = {1: 3000, 64: 1000, 4096: 40}


def interleaved_medians(fns: dict, runs: int, warmup: int = 20) -> dict[str, float]:
    """Median wall time (seconds) of each function, calling them in turn (rotating order) ``runs`` times."""
    import torch

    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.no_grad():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        items = list(fns.items())
        for i in range(runs):
            # rotate the order, so that no function always runs right after the same other one
            for name, fn in items[i % len(items) :] + items[: i % len(items)]:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    # paired ratios: calls of one iteration run back to back, so a burst of load hits both sides of a pair
    names = list(fns)
    for other in names[1:]:
        medians[f"{other}/{names[0]}"] = statistics.median(b / a for a, b in zip(times[names[0]], times[other]))
    return medians


def build(method: str):
    """The fitted aligner, the Stitcher, and the hand-written ``nn.Linear`` + head of the same map."""
    import torch

    from latentalign import Affine, Procrustes
    from latentalign.stitching import Stitcher

    g = torch.Generator().manual_seed(0)
    X = torch.randn(4 * DIM, DIM, generator=g)
    Y = X @ torch.linalg.qr(torch.randn(DIM, DIM, generator=g))[0] + 0.1 * torch.randn(4 * DIM, DIM, generator=g)
    aligner = (Procrustes() if method == "Procrustes" else Affine()).fit(X, Y)
    head = torch.nn.Linear(DIM, N_CLASSES)
    stitcher = Stitcher(None, aligner, head)
    linear = torch.nn.Linear(DIM, DIM)
    with torch.no_grad():
        linear.weight.copy_(stitcher.map.weight)
        linear.bias.copy_(stitcher.map.bias)
    return aligner, stitcher, linear, head


def fixed_overhead(quick: bool) -> dict[str, float]:
    """Median per-call times with a 4-dimensional map, where the arithmetic is negligible."""
    import torch

    from latentalign import Affine
    from latentalign.stitching import Stitcher

    g = torch.Generator().manual_seed(0)
    X = torch.randn(100, 4, generator=g)
    head = torch.nn.Linear(4, 3)
    stitcher = Stitcher(None, Affine().fit(X, 2 * X + 1), head)
    linear = torch.nn.Linear(4, 4)
    x = torch.randn(1, 4)
    med = interleaved_medians(
        {
            "linear": lambda: head(linear(x)),
            "map": lambda: head(stitcher.map(x)),
            "stitcher": lambda: stitcher(x),
        },
        2000 if quick else 20000,
    )
    return {
        "nn.Linear + head (us)": med["linear"] * 1e6,
        "map module + head (us)": med["map"] * 1e6,
        "Stitcher (us)": med["stitcher"] * 1e6,
        "Stitcher - (map + head) (us)": (med["stitcher"] - med["map"]) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test, noisier)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    limit_threads(args.threads)
    import torch

    load_at_start = ", ".join(f"{x:.2f}" for x in os.getloadavg())

    rate = gemm_rate("float32", size=2048, backend="torch")
    rows = []
    for method in ("Procrustes", "Affine"):
        aligner, stitcher, linear, head = build(method)
        for n in BATCHES:
            x = torch.randn(n, DIM)
            torch.testing.assert_close(stitcher(x), head(linear(x)), atol=1e-4, rtol=1e-4)
            runs = max(5, RUNS[n] // 10) if args.quick else RUNS[n]
            med = interleaved_medians(
                {
                    "linear": lambda h=head, m=linear, x=x: h(m(x)),
                    "stitcher": lambda s=stitcher, x=x: s(x),
                    "transform": lambda h=head, a=aligner, x=x: h(a.transform(x)),
                },
                runs,
            )
            rows.append(
                {
                    "map": method,
                    "batch": n,
                    "runs": runs,
                    "nn.Linear + head (us)": med["linear"] * 1e6,
                    "Stitcher (us)": med["stitcher"] * 1e6,
                    "ratio": med["stitcher/linear"],
                    "transform + head (us)": med["transform"] * 1e6,
                    "GFLOP/s": 2.0 * n * DIM * DIM / med["stitcher"] / 1e9,
                }
            )
    overhead = fixed_overhead(args.quick)
    columns = list(rows[0])
    title = (
        f"Stitcher forward vs hand-written nn.Linear (float32, {DIM} -> {DIM}, head {DIM} -> {N_CLASSES}, "
        f"no_grad, medians of interleaved runs)"
    )
    table = print_table(rows, columns, title=title)
    table += "\n" + print_table(
        [overhead],
        list(overhead),
        title="Fixed per-call cost of the Stitcher (map 4 -> 4, head 4 -> 3, batch 1: Python, not arithmetic)",
    )
    footer = (
        f"\nMachine: {machine_summary()} (at the end; at the start: {load_at_start})\nSquare float32 GEMM (2048^3, torch): {rate:.1f} GFLOP/s\n"
        f"torch {torch.__version__}{' (--quick)' if args.quick else ''}\n"
        "The Stitcher's map runs the same kernel as nn.Linear (torch.nn.functional.linear on the same weight "
        "layout);\nits only systematic extra cost is the fixed per-call time of the second table (module call, "
        "dtype/device check).\nWith a load average above the core count, medians move by tens of percent between "
        "runs: read the ratios with the load.\n"
    )
    print(footer)
    out = HERE / "results" / "bench_stitcher.txt"
    out.write_text(table.lstrip("\n") + "\n" + footer)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
