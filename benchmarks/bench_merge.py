"""Weight matching on ResNet-20 (CIFAR-style, 3 stages of 3 basic blocks) at growing widths.

Two cases per width, both on randomly initialised networks (matching costs the same for trained ones):

* ``planted``: B is A with every permutation of the spec shuffled; the shuffle must be recovered exactly.
* ``independent``: A and B initialised from different seeds (the realistic case: more sweeps).

Reported: best wall time of ``weight_matching``, sweeps, the floating-point work of the assignment
matrices (``2 n * numel`` per (weight, axis) a permutation touches, per sweep) as a rate beside the
machine's float64 GEMM rate, and the time spent in ``scipy.optimize.linear_sum_assignment``.

One torch thread by default: the products are small (a few hundred rows), and on a loaded 2-core machine
two threads made the same call about 50 times slower (16.4 s instead of 0.28 s at width 1, load average 17).
Run:

    .venv/bin/python benchmarks/bench_merge.py            # widths 1, 2, 4
    .venv/bin/python benchmarks/bench_merge.py --quick    # widths 1, 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.optimize
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import best_time, gemm_rate, limit_threads, machine_summary, print_table  # noqa: E402

import latentalign.merge.matching as matching  # noqa: E402
from latentalign.merge import ResNet, permute_model, random_permutations, resnet_spec, weight_matching  # noqa: E402


def _flops_per_sweep(model: torch.nn.Module, spec) -> float:
    params = dict(model.named_parameters())
    total = 0.0
    for axes in spec.perm_to_axes.values():
        for key, axis in axes:
            if key in params:
                total += 2.0 * params[key].shape[axis] * params[key].numel()
    return total


def _timed_assignment():
    """Wrap the assignment solver the matching module uses, accumulating its time."""
    spent = [0.0]
    original = scipy.optimize.linear_sum_assignment

    def wrapped(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    return spent, original, wrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    limit_threads(args.threads)
    widths = [1, 2] if args.quick else [1, 2, 4]
    rate = gemm_rate("float64", size=2048, backend="torch")
    spec = resnet_spec(3)
    rows = []
    for width in widths:
        torch.manual_seed(0)
        model_a = ResNet(20, width, 10)
        n_params = sum(p.numel() for p in model_a.parameters())
        planted = random_permutations(spec, model_a, seed=1)
        cases = {"planted": permute_model(model_a, spec, planted), "independent": ResNet(20, width, 10)}
        for case, model_b in cases.items():
            result = weight_matching(model_a, model_b, spec, seed=0)
            seconds = best_time(lambda a=model_a, b=model_b: weight_matching(a, b, spec, seed=0), repeats=2)
            spent, original, wrapped = _timed_assignment()
            matching.linear_sum_assignment = wrapped
            try:
                weight_matching(model_a, model_b, spec, seed=0)
            finally:
                matching.linear_sum_assignment = original
            sweeps = len(result.objective) - 1
            flops = sweeps * _flops_per_sweep(model_a, spec)
            recovered = (
                all(np.array_equal(result.perms[k], np.argsort(planted[k])) for k in planted)
                if case == "planted"
                else None
            )
            rows.append(
                {
                    "width": width,
                    "params": f"{n_params / 1e6:.2f} M",
                    "case": case,
                    "sweeps": sweeps,
                    "time s": seconds,
                    "assignment s": spent[0],
                    "GFLOP/s": flops / seconds / 1e9,
                    "GEMM GFLOP/s": rate,
                    "recovered": {True: "yes", False: "NO", None: "-"}[recovered],
                }
            )
            print_table(rows[-1:], list(rows[-1]))
    print(f"\n{machine_summary()}")
    print_table(
        rows,
        ["width", "params", "case", "sweeps", "time s", "assignment s", "GFLOP/s", "GEMM GFLOP/s", "recovered"],
        title=f"weight_matching on ResNet-20 (random init), float64, torch threads={args.threads}; time = best of 2",
    )


if __name__ == "__main__":
    main()
