"""Top-10 cosine retrieval: latentalign's chunked exact search vs faiss flat vs a naive full-matrix torch version.

Every (size, method) runs in a fresh subprocess on the same random data (torch.randn, float32, fixed seed), so
that peak memory is that method's alone: ``peak_extra`` is the growth of the process's peak resident memory
(CPU; ``ru_maxrss``) or of ``torch.cuda.max_memory_allocated`` (GPU) beyond the inputs. Ratios are relative to
``latentalign exact``. The naive version holds the full ``n_queries x n_keys`` score matrix and is skipped when
that matrix would not fit in half the available memory. ``agree`` is the fraction of top-10 indices equal to
``latentalign exact``'s. ``latentalign retrieval_scores`` computes the exact rank of the gold key of every
query (recall@1/10, MRR, mean and median rank) in the same blocked pass. faiss-cpu copies GPU inputs to the
host; its timing includes that copy.

Usage::

    python benchmarks/bench_retrieval.py                      # 1e4 and 1e5 queries x 1e5 keys, d = 384
    python benchmarks/bench_retrieval.py --queries 2000 --keys 20000 --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

METHODS = ("latentalign exact", "latentalign retrieval_scores", "faiss flat (IndexFlatIP)", "naive torch full matrix")
K_NEIGHBOURS = 10


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(method: str, n_q: int, n_k: int, d: int, device: str, out_path: str) -> dict:
    import torch

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from latentalign.functional.retrieval import knn, retrieval_scores

    gen = torch.Generator().manual_seed(0)
    K = torch.randn(n_k, d, generator=gen, dtype=torch.float32)
    gold = torch.arange(n_q) % n_k
    Q = torch.empty(n_q, d, dtype=torch.float32)
    for start in range(0, n_q, 4096):  # in chunks, so that no temporary raises the baseline peak
        part = gold[start : start + 4096]
        Q[start : start + 4096] = K[part] + 4.0 * torch.randn(len(part), d, generator=gen, dtype=torch.float32)
    K, Q = K.to(device), Q.to(device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.max_memory_allocated()
    else:
        base = _peak_rss_bytes()
    start = time.perf_counter()
    extra: dict = {}
    if method == "latentalign exact":
        _, idx = knn(Q, K, k=K_NEIGHBOURS, metric="cosine")
    elif method == "latentalign retrieval_scores":
        extra = retrieval_scores(Q, K, gold=gold.numpy(), k=(1, 10))
        idx = None
    elif method == "faiss flat (IndexFlatIP)":
        _, idx = knn(Q, K, k=K_NEIGHBOURS, metric="cosine", index="faiss")
    else:
        with torch.no_grad():
            S = torch.nn.functional.normalize(Q, dim=1) @ torch.nn.functional.normalize(K, dim=1).T
            idx = torch.topk(S, K_NEIGHBOURS, dim=1).indices
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if device == "cuda" else _peak_rss_bytes()) - base
    if idx is not None:
        np.save(out_path, idx.cpu().numpy() if isinstance(idx, torch.Tensor) else idx)
    return {"seconds": seconds, "peak_extra": max(peak, 0), "extra": extra}


def available_bytes(device: str) -> int:
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return free
    import psutil

    return psutil.virtual_memory().available


def run_case(n_q: int, n_k: int, d: int, device: str, tmp: str, repeat: int) -> list[dict]:
    """Run every method ``repeat`` times, interleaved (the machine may be shared): min time, max peak."""
    rows: dict[str, dict] = {}
    for _ in range(repeat):
        for j, method in enumerate(METHODS):
            if "skipped" in rows.get(method, {}):
                continue
            if method == "naive torch full matrix" and n_q * n_k * 4 * 2 > available_bytes(device):
                rows[method] = {"method": method, "skipped": f"needs {n_q * n_k * 4 / 2**30:.0f} GiB of scores"}
                continue
            out_path = os.path.join(tmp, f"{j}.npy")
            script = os.path.abspath(__file__)
            cmd = [sys.executable, script, "--worker", method, str(n_q), str(n_k), str(d), device, out_path]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                rows[method] = {"method": method, "skipped": f"failed: {proc.stderr.strip().splitlines()[-1]}"}
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            row = rows.setdefault(method, {"method": method, "seconds": math.inf, "peak_extra": 0, "times": []})
            row["times"].append(result["seconds"])
            row["seconds"] = min(row["seconds"], result["seconds"])
            row["peak_extra"] = max(row["peak_extra"], result["peak_extra"])
            row["extra"] = result["extra"]
            row["path"] = out_path if os.path.exists(out_path) else None
    ordered = [rows[m] for m in METHODS]
    ref = ordered[0]
    ref_idx = np.load(ref["path"]) if ref.get("path") else None
    for row in ordered:
        if "skipped" in row:
            continue
        row["time_ratio"] = row["seconds"] / ref["seconds"]
        row["mem_ratio"] = row["peak_extra"] / ref["peak_extra"] if ref["peak_extra"] else float("nan")
        row["agree"] = float((np.load(row["path"]) == ref_idx).mean()) if row.get("path") is not None else None
    return ordered


def print_table(results: list[tuple[int, int, int, list[dict]]], device: str) -> None:
    print(
        f"\nTop-{K_NEIGHBOURS} cosine retrieval, float32, device={device}, torch threads={_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    header = "| n_queries | n_keys | d | method | time (s) | peak extra (MiB) | time / ours | memory / ours | agree |"
    print(header)
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for n_q, n_k, d, rows in results:
        for row in rows:
            if "skipped" in row:
                print(f"| {n_q:.0e} | {n_k:.0e} | {d} | {row['method']} | skipped: {row['skipped']} | | | | |")
                continue
            agree = "-" if row["agree"] is None else f"{row['agree']:.4f}"
            print(
                f"| {n_q:.0e} | {n_k:.0e} | {d} | {row['method']} | {row['seconds']:.2f} | "
                f"{row['peak_extra'] / 2**20:.0f} | {row['time_ratio']:.2f} | {row['mem_ratio']:.2f} | {agree} |"
            )
            if row.get("extra"):
                print(f"|  |  |  |   -> {json.dumps({k: round(v, 4) for k, v in row['extra'].items()})} | | | | | |")


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        method, n_q, n_k, d, device, out_path = sys.argv[2], *map(int, sys.argv[3:6]), sys.argv[6], sys.argv[7]
        print(json.dumps(worker(method, n_q, n_k, d, device, out_path)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs per method; the minimum time is kept")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_q in args.queries:
            rows = run_case(n_q, args.keys, args.dim, args.device, tmp, args.repeat)
            results.append((n_q, args.keys, args.dim, rows))
            print_table(results[-1:], args.device)
            sys.stdout.flush()
    print_table(results, args.device)


if __name__ == "__main__":
    main()
