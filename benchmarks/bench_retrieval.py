"""Exact top-10 cosine retrieval: latentalign vs faiss flat, torch mm+topk, scikit-learn and the bare GEMM.

One process, one random problem (float32, fixed seed, queries = keys + noise), every method repeated
``--repeat`` times in alternation (the machine may be shared) and the MEDIAN kept (3 repeats with
``--quick``, 2 at the full size, which keeps its 16 runs of 1.5 TFLOP each under 10 minutes). ``GEMM torch`` and
``GEMM numpy`` are ``Q @ K.T`` alone, in tiles of 1024 query rows x 2048 keys, through torch's and numpy's
BLAS (the floor of any exact search; the faster one's GFLOP/s is the machine's rate in this run). Ratios
are relative to ``latentalign knn``; the lines under the table compare each latentalign method with its
target. ``peak MiB`` is the growth of the peak resident memory during the method's first run (Linux
``VmHWM``, reset before each method): the working memory on top of the inputs. ``agree`` is the fraction of
top-10 indices equal to latentalign's. The table goes to ``benchmarks/results/bench_retrieval.txt``
(``bench_retrieval_quick.txt`` with ``--quick``).

Usage::

    python benchmarks/bench_retrieval.py            # 1e4 queries x 1e5 keys x 768 (under 10 minutes)
    python benchmarks/bench_retrieval.py --quick    # 1e3 x 1e4
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import current_rss_mb, limit_threads, machine_summary, peak_rss_mb, print_table, reset_peak_rss  # noqa: E402

K_NEIGHBOURS = 10
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench_retrieval.txt")
QUICK_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench_retrieval_quick.txt")
#: (method, reference, most time allowed relative to the reference): the targets printed under the table.
TARGETS = (
    ("latentalign knn", "faiss IndexFlatIP", 1 / 0.95),
    ("latentalign csls_knn", "latentalign knn", 1.3),
    ("latentalign retrieval_scores", "latentalign knn", 1.1),
    ("latentalign retrieval_scores csls", "latentalign knn", 1.4),
)


def methods(Q: Any, K: Any, device: str) -> dict[str, Callable[[], Any]]:
    import torch

    from latentalign.functional.retrieval import csls_knn, knn, retrieval_scores

    gold = np.arange(Q.shape[0]) % K.shape[0]

    def gemm_torch() -> None:
        for s in range(0, Q.shape[0], 1024):
            for c in range(0, K.shape[0], 2048):
                Q[s : s + 1024] @ K[c : c + 2048].T

    def gemm_numpy() -> None:
        Qn, Kn = Q.numpy(), K.numpy()
        for s in range(0, Q.shape[0], 1024):
            for c in range(0, K.shape[0], 2048):
                Qn[s : s + 1024] @ Kn[c : c + 2048].T

    def torch_topk() -> Any:
        Qn, Kn = torch.nn.functional.normalize(Q, dim=1), torch.nn.functional.normalize(K, dim=1)
        rows = max(1, 2**25 // K.shape[0])
        return torch.cat(
            [torch.topk(Qn[s : s + rows] @ Kn.T, K_NEIGHBOURS, dim=1).indices for s in range(0, len(Q), rows)]
        )

    out: dict[str, Callable[[], Any]] = {"GEMM torch": gemm_torch}
    if device == "cpu":
        out["GEMM numpy"] = gemm_numpy
    out |= {
        "latentalign knn": lambda: knn(Q, K, k=K_NEIGHBOURS)[1],
        "torch mm+topk": torch_topk,
        "latentalign csls_knn": lambda: csls_knn(Q, K, k=K_NEIGHBOURS)[1],
        "latentalign retrieval_scores": lambda: retrieval_scores(Q, K, gold=gold, k=(1, 10)),
        "latentalign retrieval_scores csls": lambda: retrieval_scores(Q, K, gold=gold, k=(1, 10), csls=True),
    }
    if device == "cpu":
        try:
            import faiss

            def faiss_flat() -> Any:
                Qn = torch.nn.functional.normalize(Q, dim=1).numpy()
                index = faiss.IndexFlatIP(K.shape[1])
                index.add(torch.nn.functional.normalize(K, dim=1).numpy())
                return torch.from_numpy(index.search(Qn, K_NEIGHBOURS)[1])

            out["faiss IndexFlatIP"] = faiss_flat
        except ImportError:
            pass
        if Q.shape[0] * K.shape[0] <= 1e8:  # scikit-learn holds whole score blocks; only at small sizes
            from sklearn.neighbors import NearestNeighbors

            def sklearn_brute() -> Any:
                nn = NearestNeighbors(n_neighbors=K_NEIGHBOURS, algorithm="brute", metric="cosine").fit(K.numpy())
                return torch.from_numpy(nn.kneighbors(Q.numpy(), return_distance=False))

            out["sklearn brute"] = sklearn_brute
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1e3 queries x 1e4 keys")
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=None, help="runs of each method (default 3 quick, 2 full)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--output", help="results file (default: results/bench_retrieval[_quick].txt)")
    args = parser.parse_args()
    if args.quick:
        args.queries, args.keys = 1_000, 10_000
    if args.repeat is None:
        args.repeat = 3 if args.quick else 2
    limit_threads(args.threads)
    import torch

    load_before = os.getloadavg()
    gen = torch.Generator().manual_seed(0)
    K = torch.randn(args.keys, args.dim, generator=gen)
    Q = K[torch.arange(args.queries) % args.keys] + 4.0 * torch.randn(args.queries, args.dim, generator=gen)
    Q, K = Q.to(args.device), K.to(args.device)
    todo = methods(Q, K, args.device)
    times: dict[str, list[float]] = {name: [] for name in todo}
    peak: dict[str, float] = {}
    found: dict[str, Any] = {}
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    for rep in range(args.repeat):
        for name, fn in todo.items():
            if rep == 0:
                reset_peak_rss()
                base = current_rss_mb()
                if args.device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            result = fn()
            sync()
            times[name].append(time.perf_counter() - start)
            if rep == 0:
                gpu = args.device == "cuda"
                peak[name] = torch.cuda.max_memory_allocated() / 2**20 if gpu else max(peak_rss_mb() - base, 0.0)
                if isinstance(result, torch.Tensor):
                    found[name] = result.cpu()
            print(f"  {name}: {times[name][-1]:.2f} s", flush=True)
    flops = 2.0 * args.queries * args.keys * args.dim
    ref = statistics.median(times["latentalign knn"])
    ref_idx = found["latentalign knn"]
    rows = []
    for name in todo:
        med = statistics.median(times[name])
        rows.append(
            {
                "method": name,
                "median s": med,
                "GFLOP/s": flops / med / 1e9,
                "/ latentalign knn": med / ref,
                "peak MiB": peak[name],
                "agree": float((found[name] == ref_idx).float().mean())
                if name in found and "csls" not in name
                else None,
            }
        )
    from latentalign.functional.cpu_blas import cpu_products, openblas_core

    versions = [
        f"torch {torch.__version__}",
        f"CPU score products: {cpu_products()} (OpenBLAS kernels: {openblas_core()})",
    ]
    try:
        import faiss

        versions.append(f"faiss {faiss.__version__}")
    except ImportError:
        versions.append("faiss not installed")
    title = (
        f"{datetime.date.today()}  {args.queries} queries x {args.keys} keys x {args.dim}, float32, top-{K_NEIGHBOURS} "
        f"cosine, device={args.device}, median of {args.repeat}\n{machine_summary()}, cpu_count={os.cpu_count()}, "
        f"{', '.join(versions)}\nload average before {', '.join(f'{x:.2f}' for x in load_before)}; after "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    text = print_table(rows, ["method", "median s", "GFLOP/s", "/ latentalign knn", "peak MiB", "agree"], title=title)
    lines = []
    for name, reference, allowed in TARGETS:
        if name in times and reference in times:
            ratio = statistics.median(times[name]) / statistics.median(times[reference])
            verdict = "met" if ratio <= allowed else "NOT met"
            lines.append(f"{name} / {reference}: {ratio:.3f} (target <= {allowed:.3f}: {verdict})")
    print("\n".join(lines))
    results = args.output or (QUICK_RESULTS if args.quick else RESULTS)
    os.makedirs(os.path.dirname(results), exist_ok=True)
    with open(results, "w") as handle:
        handle.write(text.lstrip("\n") + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
