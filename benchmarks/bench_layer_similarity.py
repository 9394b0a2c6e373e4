"""Layer-by-layer linear CKA: ``similarity_matrix`` against the naive loop of pairwise ``linear_cka`` calls.

    python benchmarks/bench_layer_similarity.py [--quick] [--threads 2] [--n 10000] [--d 768] [--layers 12]

The full run scores 12 x 12 layers of 10,000 x 768 float32 (two "models" of 12 layers each, 737 MB of
inputs) and writes results/bench_layer_similarity.txt; target: at most 60 s and 2 GB on a quiet 2-core
machine. ``--quick`` (2,000 rows, 4 x 4 layers, a few seconds) checks that the script works and writes
results/bench_layer_similarity_quick.txt.

Inputs: model A's layers drift from a random start (each layer is the previous one times a random
near-orthogonal mix, plus noise, plus a per-layer offset); model B's layer ``j`` is A's layer ``j``
times another mix, plus noise. So the table has a planted diagonal band, and the values are checked
against the naive loop (largest absolute difference reported).

Each method runs in its own process (for honest peak memory): ``seconds`` is its wall time, ``extra MB``
the peak resident memory it adds on top of the inputs (``_common.measure``), ``peak MB`` inputs plus that.

- ``similarity_matrix``: each layer's centred Gram matrix once (24 ``syrk``), each pair's cross product
  once (144 GEMMs ``X_a^T X_b``), arrays read in place (one chunk).
- ``similarity_matrix, chunk_rows=2048`` (500 at the quick size): the streamed path used for layered stores
  (per chunk, B's 12 layers side by side and one product per layer of A into float64 sums; A's layers in
  groups whose sums fit in ``CROSS_BYTES``, 256 MiB: 3 passes over the rows at d = 768).
- naive loop: ``linear_cka(A[i], B[j])`` for every pair (each call recomputes both Gram matrices).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import limit_threads, machine_summary, measure, print_table, run_isolated, worker_main  # noqa: E402

SIZES = {"full": {"n": 10_000, "d": 768, "layers": 12}, "quick": {"n": 2_000, "d": 768, "layers": 4}}


def make_models(n: int, d: int, layers: int, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two models' float32 layers with planted, decreasing correlations (see the module docstring)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    A: dict[str, Any] = {}
    x = rng.standard_normal((n, d), dtype=np.float32)
    for i in range(layers):
        mix = (rng.standard_normal((d, d), dtype=np.float32) / np.float32(np.sqrt(d))).astype(np.float32)
        x = x @ mix + np.float32(0.5) * rng.standard_normal((n, d), dtype=np.float32) + np.float32(i)
        A[f"layer.{i}"] = x
    B: dict[str, Any] = {}
    for j in range(layers):
        mix = (rng.standard_normal((d, d), dtype=np.float32) / np.float32(np.sqrt(d))).astype(np.float32)
        source = A[f"layer.{j}"]
        B[f"layer.{j}"] = source @ mix + np.float32(0.7) * rng.standard_normal((n, d), dtype=np.float32)
    return A, B


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    limit_threads(case["threads"])
    from latentalign.evaluation import similarity_matrix
    from latentalign.functional.similarity import linear_cka

    A, B = make_models(case["n"], case["d"], case["layers"])
    values: list[list[float]] = []

    def ours() -> None:
        values[:] = similarity_matrix(A, B, chunk_rows=case.get("chunk_rows")).values.tolist()

    def naive() -> None:
        values[:] = [[linear_cka(A[a], B[b]) for b in B] for a in A]

    result = measure(naive if case["method"] == "naive" else ours, repeats=1)
    return {**result, "values": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int)
    parser.add_argument("--d", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--skip-naive", action="store_true", help="leave out the naive loop")
    args = parser.parse_args()
    size = dict(SIZES["quick" if args.quick else "full"])
    for key in ("n", "d", "layers"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    limit_threads(args.threads)
    base = {**size, "threads": args.threads}
    chunk_rows = max(1, min(2048, size["n"] // 4))  # several chunks even at the quick size
    cases = [
        {**base, "method": "ours", "label": "similarity_matrix"},
        {**base, "method": "ours", "chunk_rows": chunk_rows, "label": f"similarity_matrix, chunk_rows={chunk_rows}"},
    ]
    if not args.skip_naive:
        cases.append({**base, "method": "naive", "label": f"naive loop of {size['layers'] ** 2} linear_cka"})
    load_before = os.getloadavg()
    rows = [run_isolated(__file__, case) for case in cases]
    input_mb = 2 * size["layers"] * size["n"] * size["d"] * 4 / 2**20
    reference = rows[-1].get("values")
    for row in rows:
        if "error" in row:
            continue
        row["peak MB"] = input_mb + row["extra_mb"]
        if reference and row.get("values"):
            import numpy as np

            row["max |diff| vs last"] = float(np.abs(np.array(row["values"]) - np.array(reference)).max())
    fastest_naive = next((r["seconds"] for r in rows if r.get("method") == "naive" and "seconds" in r), None)
    for row in rows:
        if fastest_naive and "seconds" in row:
            row["speed vs naive"] = fastest_naive / row["seconds"]
    header = [
        f"# bench_layer_similarity{' --quick' if args.quick else ''}  "
        f"({datetime.datetime.now().isoformat(timespec='seconds')})",
        f"# {machine_summary()}; load average before {', '.join(f'{x:.2f}' for x in load_before)}",
        f"# {size['layers']} x {size['layers']} layers of {size['n']} x {size['d']} float32 per model "
        f"(inputs {input_mb:.0f} MB); one process per method",
    ]
    print("\n".join(header))
    table = print_table(
        rows,
        ["label", "seconds", "extra_mb", "peak MB", "speed vs naive", "max |diff| vs last", "error"],
        title="Linear CKA, every layer of A against every layer of B",
    )
    name = "bench_layer_similarity_quick.txt" if args.quick else "bench_layer_similarity.txt"
    out = HERE / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(header) + "\n" + table + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker_main(run_case)
    else:
        main()
