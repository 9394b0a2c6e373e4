"""What integrity costs when reading an embedding store: the default ``verify="read"`` against no check.

One store of ``--rows`` x ``--dim`` float32 rows (default 1e6 x 768, 3.1 GB, in a temporary directory) is
written once. Every case then runs in a fresh subprocess, so that no shard has been verified yet in that
process (the first read pays the sha256; later reads in the same process do not), with the store's files
already in the page cache (one untimed read of every file first), so that the disk's speed does not hide
the hashing. ``overhead`` is the time relative to the same read with ``verify=None``. The machine's
single-thread sha256 rate and its memory-copy rate of the same run are printed as the floors.

Usage::

    python benchmarks/bench_store.py                    # 1e6 x 768, writes benchmarks/results/bench_store.txt
    python benchmarks/bench_store.py --rows 100000 --no-save
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_time, limit_threads, machine_summary, print_table, run_isolated, worker_main  # noqa: E402

READS = ("to_numpy", "iter_batches", "get 10k random ids", "open only")
MODES = (None, "size", "read", "checksum")


def worker(case: dict) -> dict:
    from latentalign.store import EmbeddingStore

    path, mode, read = case["path"], case["verify"], case["read"]
    start = time.perf_counter()
    store = EmbeddingStore(path, verify=mode)
    if read == "to_numpy":
        store.to_numpy()
    elif read == "iter_batches":
        for _ in store.iter_batches(65536):
            pass
    elif read.startswith("get"):
        ids = store.ids  # reading the ids verifies the id files (all of them) under "read"
        picked = np.random.default_rng(0).choice(len(ids), size=min(10_000, len(ids)), replace=False)
        store.get([ids[i] for i in picked])
    first = time.perf_counter() - start
    again = None
    if read != "open only":  # the same read again in this process: shards are verified already
        t0 = time.perf_counter()
        store.to_numpy() if read == "to_numpy" else store.get(store.ids[:1000])
        again = time.perf_counter() - t0
    return {"seconds": first, "again": again}


def write_store(path: Path, rows: int, dim: int) -> float:
    from latentalign.store import write_embeddings

    rng = np.random.default_rng(0)
    X = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, 65536):
        stop = min(start + 65536, rows)
        X[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    start = time.perf_counter()
    write_embeddings(path, X, list(range(rows)))
    return time.perf_counter() - start


def warm_page_cache(path: Path) -> int:
    total = 0
    for file in sorted(path.rglob("*")):
        if file.is_file():
            with open(file, "rb") as fh:
                while block := fh.read(1 << 24):
                    total += len(block)
    return total


def floors(path: Path) -> dict[str, float]:
    first = sorted((path / "embeddings").glob("*.npy"))[:16]
    data = b"".join(f.read_bytes() for f in first)
    sha = best_time(lambda: hashlib.sha256(data).digest(), repeats=3)
    arr = np.frombuffer(data, dtype=np.uint8)
    copy = best_time(lambda: arr.copy(), repeats=3)
    return {"sha256_gbs": len(data) / sha / 1e9, "copy_gbs": len(data) / copy / 1e9}


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return float(np.median(values)) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case (median reported)")
    parser.add_argument("--dir", default=None, help="where to write the temporary store (default: a temp dir)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/bench_store.txt")
    args = parser.parse_args()
    limit_threads(args.threads)
    load_before = machine_summary()
    root = Path(tempfile.mkdtemp(prefix="bench_store_", dir=args.dir))
    try:
        store = root / "store"
        write_s = write_store(store, args.rows, args.dim)
        size = warm_page_cache(store)
        rates = floors(store)
        runs: dict[tuple[str, str | None], list[dict]] = {(r, m): [] for r in READS for m in MODES}
        for _ in range(args.repeats):  # interleaved: every case once per round, so drift hits all alike
            for read in READS:
                for mode in MODES:
                    runs[read, mode].append(run_isolated(__file__, {"path": str(store), "verify": mode, "read": read}))
        results = []
        for read in READS:
            base = _median(runs[read, None], "seconds")
            for mode in MODES:
                seconds = _median(runs[read, mode], "seconds")
                errors = [r["error"] for r in runs[read, mode] if "error" in r]
                results.append(
                    {
                        "read": read,
                        "verify": repr(mode),
                        "seconds": seconds,
                        "overhead": seconds / base if seconds is not None and base else None,
                        "again": _median(runs[read, mode], "again"),
                        "error": errors[0] if errors else None,
                    }
                )
        lines = [
            f"# bench_store  ({datetime.date.today()}; before: {load_before}; after: {machine_summary()})",
            "",
            f"Store: {args.rows} x {args.dim} float32, {size / 1e9:.2f} GB on disk (page cache warm), "
            f"written by write_embeddings in {write_s:.1f} s (sha256 while writing included).",
            f"Floors of this run: sha256 {rates['sha256_gbs']:.2f} GB/s (one thread), memory copy "
            f"{rates['copy_gbs']:.2f} GB/s. 'seconds': first read in a fresh process (open included); "
            "'again': the same read once more in that process (to_numpy; or get of 1000 ids). Medians of "
            f"{args.repeats} interleaved rounds.",
        ]
        table = print_table(
            results, ["read", "verify", "seconds", "overhead", "again", "error"], title="Reading the store"
        )
        text = "\n".join(lines) + "\n" + table + "\n"
        print("\n".join(lines))
        if not args.no_save:
            out = Path(__file__).resolve().parent / "results" / "bench_store.txt"
            out.write_text(text)
            print(f"wrote {out}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker_main(worker)
    else:
        main()
