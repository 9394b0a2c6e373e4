"""Procrustes from few pairs in many dimensions: latentalign's reduced solve against dense solutions.

    python benchmarks/bench_few_pair_procrustes.py [--dims 384 1280 2048] [--pairs 10 50 300] [--threads 1]

With ``n`` pairs in ``d`` dimensions (``n`` below about ``d / 3``) latentalign solves the completion
closest to the identity and the shrunk rotation on the ``2 (n - 1)`` dimensions (square maps; at most
``3 (n - 1)``) the pairs and the identity reach (``functional.procrustes.pair_subspaces``). Per case
(float64 rows of a noisy rotated copy), the best of 3 times of:

- ``Procrustes().fit`` (completion), ``Procrustes(shrinkage=1.0).fit`` and ``Procrustes(shrinkage="cv").fit``
  (5 folds x 8 shrinkage values);
- peers on the same centred data: ``scipy.linalg.orthogonal_procrustes`` (a dense thin SVD, no
  completion: the usual cost of a Procrustes fit) and the dense completion from numpy's full SVDs (the
  definition, as the tests' reference);
- the machine: one ``d x d`` float64 GEMM (torch), the unit of the "GEMMs" columns.

``max diff vs dense`` is the largest entry difference between latentalign's completion and the dense one.
Prints a table and appends it to ``--out`` (default ``benchmarks/results/bench_few_pair_procrustes.txt``).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import append_table, best_time, limit_threads, machine_summary, print_table  # noqa: E402


def noisy_rotated_pairs(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.linspace(2.0, 0.2, d)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return X, X @ Q + 0.1 * rng.standard_normal((n, d))


def dense_completion(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The optimal rotation closest to the identity from full SVDs of ``A^T B`` (centred rows, rank n - 1)."""
    rank = A.shape[0] - 1
    U, _, Vh = np.linalg.svd(A.T @ B)
    Uc, Vc = U[:, rank:], Vh.T[:, rank:]
    P, _, Qh = np.linalg.svd(Uc.T @ Vc)
    return U[:, :rank] @ Vh[:rank] + Uc @ (P @ Qh) @ Vc.T


def run_case(n: int, d: int) -> dict[str, Any]:
    import torch
    from scipy.linalg import orthogonal_procrustes

    from latentalign.align.procrustes import Procrustes

    X, Y = noisy_rotated_pairs(n, d)
    A, B = X - X.mean(0), Y - Y.mean(0)
    G = torch.randn(d, d, dtype=torch.float64)
    gemm = best_time(lambda: G @ G)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # under-determined on purpose
        times = {
            "completion": best_time(lambda: Procrustes().fit(X, Y)),
            "shrinkage 1": best_time(lambda: Procrustes(shrinkage=1.0).fit(X, Y)),
            "shrinkage cv": best_time(lambda: Procrustes(shrinkage="cv").fit(X, Y), repeats=1),
        }
        ours = Procrustes().fit(X, Y).rotation_.numpy()
    scipy_s = best_time(lambda: orthogonal_procrustes(A, B))
    dense_s = best_time(lambda: dense_completion(A, B))
    return {
        "d": d,
        "pairs": n,
        "completion s": times["completion"],
        "shrinkage 1 s": times["shrinkage 1"],
        "cv s": times["shrinkage cv"],
        "scipy s": scipy_s,
        "dense completion s": dense_s,
        "dense / ours": dense_s / times["completion"],
        "scipy / ours": scipy_s / times["completion"],
        "completion GEMMs": times["completion"] / gemm,
        "max diff vs dense": float(np.abs(ours - dense_completion(A, B)).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 1280, 2048])
    parser.add_argument("--pairs", type=int, nargs="+", default=[10, 50, 300])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_few_pair_procrustes.txt")
    args = parser.parse_args()
    limit_threads(args.threads)
    rows = []
    for d in args.dims:
        for n in args.pairs:
            rows.append(run_case(n, d))
            print(rows[-1], flush=True)
    title = f"Procrustes from few pairs; {datetime.datetime.now().isoformat(timespec='seconds')}; {machine_summary()}"
    append_table(args.out, print_table(rows, list(rows[0]), title=title))


if __name__ == "__main__":
    main()
