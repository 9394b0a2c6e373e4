"""Relative projection of n = 1e5 embeddings onto k = 1000 anchors: latentalign vs one-liners.

    python benchmarks/bench_relative.py [--n 100000] [--k 1000] [--dims 384 768] [--threads 2] [--rounds 3]

Every (d, method) runs in its own subprocess (``_common.run_isolated``) on the same float32 data
(``torch.randn`` with a fixed seed, built in place; the anchors are k of its rows), after a warm-up call on
1,000 rows. ``extra MB`` is the peak resident memory the call added on top of its data (``_common.measure``;
on CUDA ``torch.cuda.max_memory_allocated``). The (n x k) float32 output is part of every method's extra
memory (381 MiB = 400 MB at the default size), so ``extra MB - output`` is the method's working memory.
Subprocesses run round robin over the methods for ``--rounds`` rounds (load from other processes on a
shared machine then spreads evenly over the methods); the best time and the median memory are kept.

Methods (all return the (n, k) matrix in float32):

* ``latentalign cosine``: :func:`latentalign.functional.relative.relative_projection` (row chunks);
* ``latentalign cosine centred``: the same with ``center=True`` (Moschella et al.'s centring);
* ``latentalign cosine top_k=10 (ASIF)``: with ASIF sparsification (top-10, unit rows);
* ``latentalign euclidean``: negative euclidean distances;
* ``latentalign project() core, cosine``: the tensor kernel without input validation (the difference to
  ``latentalign cosine`` is the cost of the checks, mostly the finiteness scan of ``X``);
* ``sklearn cosine_similarity``: ``sklearn.metrics.pairwise.cosine_similarity(X, A)`` (numpy);
* ``torch one-liner``: ``F.normalize(X) @ F.normalize(A).T``;
* ``sklearn -euclidean_distances``: ``-sklearn.metrics.pairwise.euclidean_distances(X, A)``;
* ``GEMM (same shape)``: one ``torch.mm`` of the projection's shape, (n x d) @ (d x k): the floor.

Rates are GFLOP/s of the useful work (``2 n d k``), as a fraction of the square 4096^3 float32 torch GEMM
rate measured at the start of the same run (``% GEMM``), and ``time / GEMM`` against the same-shape
product. ``time / ref`` and ``memory / ref`` compare with sklearn (``sklearn -euclidean_distances`` for
``latentalign euclidean``, ``sklearn cosine_similarity`` for the others); ``max |diff|`` is measured on the
first 500 output rows against that reference.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import (  # noqa: E402
    gemm_rate,
    limit_threads,
    machine_summary,
    measure,
    print_table,
    run_isolated,
    worker_main,
)

METHODS = (
    "latentalign cosine",
    "latentalign cosine centred",
    "latentalign cosine top_k=10 (ASIF)",
    "latentalign euclidean",
    "latentalign project() core, cosine",
    "sklearn cosine_similarity",
    "torch one-liner",
    "sklearn -euclidean_distances",
    "GEMM (same shape)",
)
COSINE_REF, EUCLIDEAN_REF = "sklearn cosine_similarity", "sklearn -euclidean_distances"
SAMPLE_ROWS = 500


# -- worker side ----------------------------------------------------------------------------------------
def run_case(case: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from latentalign.functional.relative import project, relative_projection

    limit_threads(case["threads"])
    method, n, k, d, device = case["method"], case["n"], case["k"], case["d"], case["device"]
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=gen, dtype=torch.float32).add_(0.1)  # in place: no transient copy
    A = X[torch.randperm(n, generator=gen)[:k]].clone()
    X, A = X.to(device), A.to(device)
    if method.startswith("sklearn"):
        if device != "cpu":
            return {"skipped": "sklearn runs on the CPU only"}
        from sklearn.metrics.pairwise import cosine_similarity, euclidean_distances
    F = torch.nn.functional

    def call(X: Any) -> Any:
        if method == "latentalign cosine":
            return relative_projection(X, A)
        if method == "latentalign cosine centred":
            return relative_projection(X, A, center=True)
        if method == "latentalign cosine top_k=10 (ASIF)":
            return relative_projection(X, A, top_k=10)
        if method == "latentalign euclidean":
            return relative_projection(X, A, metric="euclidean")
        if method == "latentalign project() core, cosine":
            return project(X, A, ("cosine",), shift=None, top_k=None, power=1.0, aggregate="concat")
        if method == COSINE_REF:
            return cosine_similarity(X.numpy(), A.numpy())
        if method == EUCLIDEAN_REF:
            return -euclidean_distances(X.numpy(), A.numpy())
        if method == "torch one-liner":
            return F.normalize(X, dim=1) @ F.normalize(A, dim=1).T
        if method == "GEMM (same shape)":
            return torch.mm(X, A.T)
        raise ValueError(method)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        call(X[:1000])  # warm-up: thread pools, BLAS, CUDA kernels
        sync()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()

        def timed() -> None:
            call(X)
            sync()

        result = measure(timed, repeats=1)
        if device == "cuda":
            result["extra_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        sample = call(X[:SAMPLE_ROWS])
    sample = sample.cpu().numpy() if isinstance(sample, torch.Tensor) else np.asarray(sample)
    np.save(case["sample_path"], sample.astype(np.float64))
    return {"seconds": result["seconds"], "extra_mb": result["extra_mb"], "exact_mb": result["exact_mb"]}


# -- parent side ----------------------------------------------------------------------------------------
def run_dim(n: int, k: int, d: int, args: argparse.Namespace, square_rate: float, tmp: str) -> list[dict]:
    import numpy as np

    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    for _ in range(args.rounds):
        for i, method in enumerate(METHODS):
            case = {
                "method": method,
                "n": n,
                "k": k,
                "d": d,
                "device": args.device,
                "threads": args.threads,
                "sample_path": os.path.join(tmp, f"{d}_{i}.npy"),
            }
            runs[method].append(run_isolated(__file__, case))
    rows = []
    for i, method in enumerate(METHODS):
        done = [r for r in runs[method] if "seconds" in r]
        if not done:
            first = runs[method][0]
            rows.append({"d": d, "method": method, "seconds": first.get("skipped") or first.get("error")})
            continue
        rows.append(
            {
                "d": d,
                "method": method,
                "seconds": min(r["seconds"] for r in done),
                "extra MB": float(np.median([r["extra_mb"] for r in done])),
                "sample": os.path.join(tmp, f"{d}_{i}.npy"),
            }
        )
    by_name = {r["method"]: r for r in rows}
    gemm = by_name["GEMM (same shape)"].get("seconds")
    for row in rows:
        if not isinstance(row["seconds"], float):
            continue
        row["GFLOP/s"] = 2.0 * n * d * k / row["seconds"] / 1e9
        row["% GEMM"] = 100.0 * row["GFLOP/s"] / square_rate
        row["time / GEMM"] = row["seconds"] / gemm if isinstance(gemm, float) else None
        ref = by_name.get(EUCLIDEAN_REF if "euclidean" in row["method"] else COSINE_REF)
        if row["method"].startswith(("sklearn", "GEMM")) or ref is None or not isinstance(ref["seconds"], float):
            continue
        row["time / ref"] = row["seconds"] / ref["seconds"]
        row["memory / ref"] = row["extra MB"] / ref["extra MB"] if ref["extra MB"] else None
        if "top_k" not in row["method"] and "centred" not in row["method"]:
            row["max |diff| vs ref"] = float(np.abs(np.load(row["sample"]) - np.load(ref["sample"])).max())
    return rows


def main() -> None:
    if "--worker" in sys.argv:
        worker_main(run_case)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 768])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process runs of every method (best time kept)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    limit_threads(args.threads)
    print(f"# bench_relative  ({machine_summary()})")
    square = gemm_rate("float32", backend="torch")
    print(f"square 4096^3 float32 torch GEMM: {square:.1f} GFLOP/s (CPU)")
    output_mb = args.n * args.k * 4 / 2**20
    columns = [
        "d",
        "method",
        "seconds",
        "GFLOP/s",
        "% GEMM",
        "time / GEMM",
        "extra MB",
        "time / ref",
        "memory / ref",
        "max |diff| vs ref",
    ]
    all_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for d in args.dims:
            rows = run_dim(args.n, args.k, d, args, square, tmp)
            all_rows.extend(rows)
            print_table(
                rows, columns, title=f"n={args.n}, k={args.k}, d={d}, float32, {args.device}, output {output_mb:.0f} MB"
            )
    print_table(all_rows, columns, title="## All sizes")
    print(f"\n# done ({machine_summary()})")


if __name__ == "__main__":
    main()
