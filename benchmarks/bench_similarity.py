"""Similarity kernels (linear CKA and the moment measures, mutual kNN, CKNNA) against their peers and the GEMM.

    python benchmarks/bench_similarity.py [--quick] [--threads 2] [--repeats 3] [--skip-large-knn]

``--quick`` (1e4 x 768 CKA, 2e3 and 1e4 rows of mutual kNN; under a minute) is for development and writes
results/bench_similarity_quick.txt; the full run (1e5 x 768 CKA, 1e4 and 1e5 rows of mutual kNN) writes
results/bench_similarity.txt and takes a few minutes on a quiet machine.

One process, one interleaved run: within each size the methods are called in turn, ``--repeats`` rounds,
and each method's MEDIAN wall time is reported, so a change in machine load hits every method alike. The
load average is recorded before and after. Inputs are float32.

Peers, on equal work:
- CKA: the plain numpy formula ``Xc = X - mean; ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` (numpy
  uses BLAS syrk for ``Xc^T Xc``), and the bare float32 GEMM ``X^T Y`` timed alone in torch and in numpy:
  the faster is the machine's GEMM rate during this run. CKA's useful work is ``2 n d_x d_y + n d_x^2 +
  n d_y^2`` flops (the two Gram matrices are symmetric), reported as GFLOP/s and as a fraction of that GEMM
  rate. ``linear_cka`` (and ``mutual_knn``) also run with their block products forced into numpy's BLAS and
  into torch (``cpu_blas.CPU_PRODUCTS``), to check the library ``cpu_blas.cpu_products()`` chose for the
  machine at hand (the header names it and OpenBLAS's kernel family).
- mutual kNN / CKNNA: the faiss route, two ``IndexFlatIP`` searches of each L2-normalised space against
  itself (``k + 1`` neighbours, the row itself dropped) and a vectorised intersection of the neighbour sets.
  At the large size only latentalign runs (the faiss route takes about twice as long; ``--faiss-large``
  adds it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import limit_threads, machine_summary, print_table  # noqa: E402

SIZES = {
    "full": {"cka": (100_000, 768), "knn": 10_000, "knn_large": 100_000},
    "quick": {"cka": (10_000, 768), "knn": 2_000, "knn_large": 10_000},
}
K = 10
GEN_ROWS = 8192


def make_pair(n: int, d: int, seed: int = 0):
    """float32 ``X`` (mean 3) and a partly related ``Y`` (mean -1), built ``GEN_ROWS`` rows at a time."""
    import numpy as np

    rng = np.random.default_rng(seed)
    mix = (rng.standard_normal((d // 2, d)) / np.sqrt(d)).astype(np.float32)
    X = np.empty((n, d), dtype=np.float32)
    Y = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, GEN_ROWS):
        rows = min(GEN_ROWS, n - start)
        x = rng.standard_normal((rows, d), dtype=np.float32)
        X[start : start + rows] = x + 3.0
        Y[start : start + rows] = x[:, : d // 2] @ mix + rng.standard_normal((rows, d), dtype=np.float32) - 1.0
    return X, Y


def interleaved(methods: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Median seconds of each method over ``repeats`` rounds that call every method in turn; last values."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    values: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            values[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, values


def with_products(library: str, fn: Callable[..., float], *args: Any, **kwargs: Any) -> float:
    """``fn(*args, **kwargs)`` with the CPU block products in ``library`` ("numpy" or "torch")."""
    from latentalign.functional import cpu_blas

    default = cpu_blas.CPU_PRODUCTS
    cpu_blas.CPU_PRODUCTS = library
    try:
        return fn(*args, **kwargs)
    finally:
        cpu_blas.CPU_PRODUCTS = default


# -- CKA ----------------------------------------------------------------------------------------------------


def numpy_cka(X, Y) -> float:
    import numpy as np

    Xc = X - X.mean(0)
    Yc = Y - Y.mean(0)
    return float(np.linalg.norm(Xc.T @ Yc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)))


def bench_cka(n: int, d: int, repeats: int) -> list[dict[str, Any]]:
    import torch

    from latentalign.functional.similarity import linear_cka, similarity_scores

    X, Y = make_pair(n, d)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    moments = ("linear_cka", "unbiased_cka", "svcca", "procrustes_distance")

    methods = {
        "numpy formula": lambda: numpy_cka(X, Y),
        "bare X^T Y (torch)": lambda: float(torch.mm(Xt.T, Yt)[0, 0]),
        "bare X^T Y (numpy)": lambda: float((X.T @ Y)[0, 0]),
        "latentalign linear_cka": lambda: linear_cka(X, Y),
        "linear_cka, numpy products": lambda: with_products("numpy", linear_cka, X, Y),
        "linear_cka, torch products": lambda: with_products("torch", linear_cka, X, Y),
        "latentalign 4 moment measures": lambda: similarity_scores(X, Y, metrics=moments)["linear_cka"],
    }
    seconds, values = interleaved(methods, repeats)
    gemm_seconds = min(seconds["bare X^T Y (torch)"], seconds["bare X^T Y (numpy)"])
    gemm_rate = 2.0 * n * d * d / gemm_seconds / 1e9
    useful = 4.0 * n * d * d  # 2 n d^2 for X^T Y, n d^2 for each symmetric Gram matrix
    rows = []
    for name, s in seconds.items():
        flops = 2.0 * n * d * d if name.startswith("bare") else useful
        rows.append(
            {
                "method": name,
                "n": n,
                "d": d,
                "seconds": s,
                "GFLOP/s": flops / s / 1e9,
                "% of X^T Y rate": 100.0 * flops / s / 1e9 / gemm_rate,
                "speed vs numpy": seconds["numpy formula"] / s,
                "value": None if name.startswith("bare") else values[name],
            }
        )
    return rows


# -- mutual kNN / CKNNA -------------------------------------------------------------------------------------


def faiss_neighbours(X, k: int):
    """k nearest rows of each row of ``X`` by cosine, the row itself dropped (faiss IndexFlatIP)."""
    import faiss
    import numpy as np

    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(U.shape[1])
    index.add(U)
    D, found = index.search(U, k + 1)
    is_self = found == np.arange(len(U))[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]  # self (if found) moves to the end, dropped
    return np.take_along_axis(D, order, 1), np.take_along_axis(found, order, 1)


def faiss_mutual_knn(X, Y, k: int) -> float:
    import numpy as np

    _, a = faiss_neighbours(X, k)
    _, b = faiss_neighbours(Y, k)
    n = len(a)
    offsets = np.arange(n)[:, None] * n  # one sorted array of (row, neighbour) keys: vectorised lookup
    keys_b = np.sort((b + offsets).ravel())
    keys_a = (a + offsets).ravel()
    pos = np.minimum(np.searchsorted(keys_b, keys_a), keys_b.size - 1)
    return float((keys_b[pos] == keys_a).sum() / (n * k))


def bench_knn(n: int, d: int, repeats: int, with_faiss: bool) -> list[dict[str, Any]]:
    from latentalign.functional.similarity import cknna, mutual_knn

    X, Y = make_pair(n, d, seed=1)
    methods: dict[str, Callable[[], Any]] = {}
    if with_faiss:
        methods["faiss route mutual kNN"] = lambda: faiss_mutual_knn(X, Y, K)
    methods["latentalign mutual_knn"] = lambda: mutual_knn(X, Y, k=K)
    if with_faiss:
        methods["mutual_knn, numpy products"] = lambda: with_products("numpy", mutual_knn, X, Y, k=K)
        methods["mutual_knn, torch products"] = lambda: with_products("torch", mutual_knn, X, Y, k=K)
    if with_faiss:
        methods["latentalign cknna"] = lambda: cknna(X, Y, k=K)
    seconds, values = interleaved(methods, repeats)
    peer = seconds.get("faiss route mutual kNN")
    flops = 2.0 * n * n * d * 2  # both spaces searched against themselves (the faiss route's GEMM work)
    return [
        {
            "method": name,
            "n": n,
            "d": d,
            "k": K,
            "seconds": s,
            "GFLOP/s (full search)": flops / s / 1e9,
            "speed vs faiss": None if peer is None else peer / s,
            "value": values[name],
        }
        for name, s in seconds.items()
    ]


def versions() -> str:
    import numpy
    import scipy
    import torch

    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:  # pragma: no cover - faiss is optional
        faiss_version = "absent"
    return f"torch {torch.__version__}, numpy {numpy.__version__}, scipy {scipy.__version__}, faiss {faiss_version}"


def main() -> None:
    from latentalign.functional.cpu_blas import cpu_products, openblas_core

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large-knn", action="store_true", help="no mutual kNN at the large size")
    parser.add_argument("--faiss-large", action="store_true", help="also run the faiss route at the large size")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default: results/bench_similarity.txt, or bench_similarity_quick.txt with --quick)",
    )
    args = parser.parse_args()
    limit_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:  # pragma: no cover
        pass
    sizes = SIZES["quick" if args.quick else "full"]
    load_before = os.getloadavg()
    header = [
        f"# bench_similarity{' --quick' if args.quick else ''}  ({datetime.datetime.now().isoformat(timespec='seconds')})",
        f"# {machine_summary()}; os.cpu_count()={os.cpu_count()}",
        f"# {versions()}; threads={args.threads}; repeats={args.repeats} (median, methods interleaved)",
        f"# CPU products: moments in {cpu_products('moments')}, kNN scores in {cpu_products('scores')} "
        f"(numpy's OpenBLAS kernels: {openblas_core()})",
    ]
    print("\n".join(header), flush=True)
    started = time.perf_counter()
    n, d = sizes["cka"]
    cka_rows = bench_cka(n, d, args.repeats)
    gemm_rate = max(row["GFLOP/s"] for row in cka_rows if row["method"].startswith("bare"))
    tables = [
        print_table(
            cka_rows,
            ["method", "n", "d", "seconds", "GFLOP/s", "% of X^T Y rate", "speed vs numpy", "value"],
            title="Linear CKA, float32 (useful work 4 n d^2 flops; 'bare X^T Y' is the GEMM alone, 2 n d^2; the "
            "faster bare GEMM is 100%)",
        )
    ]
    knn_columns = ["method", "n", "d", "k", "seconds", "GFLOP/s (full search)", "speed vs faiss", "value"]
    tables.append(
        print_table(
            bench_knn(sizes["knn"], 768, args.repeats, with_faiss=True),
            knn_columns,
            title="Mutual kNN and CKNNA, cosine, float32 (GFLOP/s counts two full n x n searches)",
        )
    )
    if not args.skip_large_knn:
        n_large = sizes["knn_large"]
        large = bench_knn(n_large, 768, 1, with_faiss=args.faiss_large)
        # the symmetric search multiplies each pair of row blocks once: n^2 d flops per space
        floor = 2.0 * n_large * n_large * 768 / (gemm_rate * 1e9)
        ours = next(row["seconds"] for row in large if row["method"] == "latentalign mutual_knn")
        table = print_table(large, knn_columns, title="Mutual kNN at the large size (one run)")
        floor_line = (
            f"\nGEMM floor of the symmetric search (n^2 d flops per space, both spaces) at this run's bare "
            f"X^T Y rate ({gemm_rate:.0f} GFLOP/s): {floor:.0f} s; latentalign mutual_knn {ours:.0f} s = "
            f"{ours / floor:.2f}x the floor"
        )
        print(floor_line, flush=True)
        tables.append(table + floor_line)
    load_after = os.getloadavg()
    footer = (
        f"\nload average before {', '.join(f'{x:.2f}' for x in load_before)}; after "
        f"{', '.join(f'{x:.2f}' for x in load_after)}; total {time.perf_counter() - started:.0f} s"
    )
    print(footer, flush=True)
    out = args.out or HERE / "results" / ("bench_similarity_quick.txt" if args.quick else "bench_similarity.txt")
    out.write_text("\n".join(header) + "\n" + "\n".join(tables) + "\n" + footer + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
