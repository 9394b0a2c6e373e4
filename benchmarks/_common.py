"""Shared benchmark helpers: thread pinning, the machine's GEMM rate, timing, one subprocess per case
(for honest peak memory) and a plain-text table printer.

Reuse from any benchmark script::

    from _common import limit_threads, gemm_rate, run_isolated, print_table
    limit_threads(2)                         # before the heavy work; env vars also reach subprocesses
    rate = gemm_rate("float32", backend="torch")
    result = run_isolated(__file__, {"case": "mine", "n": 100_000})   # calls this script with --worker
    print_table(rows, columns)

A worker is the same script run as ``python script.py --worker '<json>'``: it must call
:func:`worker_main` with a function ``case -> dict`` that builds its data, then calls
:func:`measure` on the operation to time. The worker reports the best wall time and the peak resident
memory the operation added on top of its data (the peak-RSS mark, reset just before the first run, minus
the RSS then; so memory held by torch allocators, BLAS buffers and copies made by the peers is counted).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "limit_threads",
    "gemm_rate",
    "best_time",
    "measure",
    "peak_rss_mb",
    "reset_peak_rss",
    "current_rss_mb",
    "run_isolated",
    "worker_main",
    "print_table",
    "append_table",
    "machine_summary",
]

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def limit_threads(n: int) -> None:
    """Use ``n`` threads in numpy/scipy BLAS, torch and any subprocess started afterwards."""
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover - threadpoolctl is in the dev extra
        pass
    import torch

    torch.set_num_threads(n)


def best_time(fn: Callable[[], Any], repeats: int = 3, warmup: int = 0) -> float:
    """Smallest wall time of ``repeats`` calls of ``fn`` (seconds), after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def gemm_rate(dtype: str = "float32", *, size: int = 4096, backend: str = "numpy", repeats: int = 3) -> float:
    """The machine's dense GEMM rate in GFLOP/s: best of ``repeats`` square ``size``^3 products."""
    import numpy as np

    rng = np.random.default_rng(0)
    A = rng.standard_normal((size, size), dtype=np.float64).astype(dtype)
    B = rng.standard_normal((size, size), dtype=np.float64).astype(dtype)
    if backend == "torch":
        import torch

        A, B = torch.from_numpy(A), torch.from_numpy(B)
    elif backend != "numpy":
        raise ValueError(f"backend={backend!r} is not supported; choose one of ['numpy', 'torch'].")
    seconds = best_time(lambda: A @ B, repeats=repeats, warmup=1)
    return 2.0 * size**3 / seconds / 1e9


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:  # pragma: no cover - non-Linux
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process since start or :func:`reset_peak_rss` (MB).

    Linux's ``VmHWM`` (per address space: not inherited from the parent, unlike ``ru_maxrss``, which
    starts at the parent's size after fork/exec); ``getrusage`` elsewhere.
    """
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # pragma: no cover - non-Linux
    return kb / 1024.0 if platform.system() != "Darwin" else kb / 2**20  # pragma: no cover


def reset_peak_rss() -> bool:
    """Reset the peak-RSS mark to the current RSS (Linux ``/proc/self/clear_refs``); return success."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:  # pragma: no cover - non-Linux or not permitted
        return False


def current_rss_mb() -> float:
    """Current resident memory of this process (MB)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - non-Linux
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def measure(fn: Callable[[], Any], repeats: int = 3) -> dict[str, float]:
    """Time ``fn`` and the peak memory its first call adds; call this once per worker process.

    Returns ``{"seconds": best wall time, "first_seconds": first call, "extra_mb": peak RSS during the
    first call minus RSS before it, "base_mb": RSS before it, "exact_mb": whether extra_mb is exact}``.
    The peak mark is reset first where Linux allows it; where it cannot be reset, ``extra_mb`` is exact
    only when the call set a new peak, and an upper bound otherwise (``exact_mb`` False): then build the
    inputs without a transient peak above their own size, e.g. chunk by chunk into preallocated arrays.
    """
    reset_peak_rss()
    base_peak = peak_rss_mb()
    base_now = current_rss_mb()
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    peak = peak_rss_mb()
    exact = peak > base_peak or base_peak <= base_now + 1.0
    extra = max(peak - base_now, 0.0)
    seconds = min([first] + [best_time(fn, repeats=1) for _ in range(max(repeats - 1, 0))])
    return {
        "seconds": seconds,
        "first_seconds": first,
        "extra_mb": extra,
        "base_mb": base_now,
        "exact_mb": exact,
    }


def run_isolated(script: str, case: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
    """Run ``python script --worker '<case json>'`` and return the JSON dict it prints last."""
    proc = subprocess.run(
        [sys.executable, script, "--worker", json.dumps(case)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )
    if proc.returncode != 0:
        return {**case, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return {**case, **json.loads(lines[-1])}


def worker_main(run_case: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Entry point of a worker: parse the case JSON from argv, run it, print the result as JSON."""
    index = sys.argv.index("--worker")
    case = json.loads(sys.argv[index + 1])
    print(json.dumps(run_case(case)), flush=True)


def machine_summary() -> str:
    """One line: CPU, cores, threads used, load average."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    return f"{cpu}, {os.cpu_count()} cores, threads={threads}, load average {load}"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        if value == 0:
            return "0"
        return f"{value:.3g}"
    return str(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, title: str | None = None) -> str:
    """Print (and return) a GitHub-markdown table of ``rows`` restricted to ``columns``."""
    cells = [[_fmt(row.get(col)) for col in columns] for row in rows]
    widths = [max([len(col)] + [len(r[i]) for r in cells]) for i, col in enumerate(columns)]
    lines = []
    if title:
        lines.append(f"\n{title}\n")
    lines.append("| " + " | ".join(col.ljust(w) for col, w in zip(columns, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        lines.append("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def append_table(path: os.PathLike[str] | str | None, table: str) -> None:
    """Append a printed table (and a blank line) to a results file; nothing when ``path`` is None."""
    if path is not None:
        with open(path, "a") as handle:
            handle.write(table + "\n\n")
