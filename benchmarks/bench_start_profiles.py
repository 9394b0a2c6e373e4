"""How good is a zero-pair first dictionary? Row profiles compared on the few_and_no_pairs page's cases.

VecMap's unsupervised start describes each row by its sorted similarities to all rows of its own space
(``functional.unsupervised.sorted_similarity_dictionary``) and matches those profiles across the spaces
by CSLS. Self-learning then takes over only when enough of those matches are right (on MiniLM-L6 ->
e5-small glosses, rounds from VecMap's start, about 0.4 % right, failed on every seed; from the
neighbourhood start, about 1 % right, they succeed from some starts).

This script measures, on each case of the page (all its items, both spaces normalised as there, the
target rows shuffled), the share of source rows whose CSLS match is their own item (``hit``) and the
share among mutual matches (``mutual hit``) for these profiles of a row ``i``:

``vecmap``
    sorted row ``i`` of ``sqrt(X X^T)`` (VecMap's start; ``init="vecmap"``).
``two-hop``, ``three-hop``
    that profile next to the sorted row ``i`` of ``K^2 / n`` (and ``K^3 / n^2``), ``K = sqrt(X X^T)``:
    similarities through one or two intermediate rows, still blind to the order of the rows.
``neighbourhood n/16`` (and ``n/8``, ``n/32``)
    the ``vecmap`` profile next to the mean profile of the row's ``n/16`` nearest neighbours
    (``functional.unsupervised.neighbourhood_similarity_dictionary``; the default starts use ``n/16``
    and ``n/8``): a row is then described by its neighbourhood too.

Each profile is measured on ``--subsets`` random subsets of ``--fraction`` of the items (the matching is
permutation-equivariant, so subsets rather than shuffles give the spread). Chance is ``1 / n``.

Run::

    python benchmarks/bench_start_profiles.py --out benchmarks/results/bench_start_profiles.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_table, limit_threads, machine_summary, print_table  # noqa: E402

CASES = [
    "b-wordnet-mpnet",
    "b-wordnet-e5",
    "b-tuxpaint-mpnet",
    "c-lemmas-l6-l3",
    "d-freedict",
    "e-tuxpaint-image-caption",
]


def hop_dictionary(A: torch.Tensor, B: torch.Tensor, hops: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted rows of ``K, K^2 / n, ...`` side by side, ``K = sqrt(A A^T)`` (VecMap's similarity)."""
    from latentalign.functional.unsupervised import induce_dictionary, normalize_rows

    profiles = []
    for Z in (A, B):
        Z = normalize_rows(Z.to(torch.float64))
        evals, U = torch.linalg.eigh(Z @ Z.T)
        K = ((U * evals.clamp(min=0).sqrt()) @ U.T).to(torch.float32)
        parts, M = [], K
        for _ in range(hops):
            parts.append(normalize_rows(M.sort(dim=1).values))
            M = M @ K / K.shape[0]
        profiles.append(torch.cat(parts, dim=1))
    rows, cols, _ = induce_dictionary(*profiles, csls_k=10)  # CSLS matches both ways, as the library's starts
    return rows, cols


def starts() -> dict[str, Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]:
    from latentalign.functional.unsupervised import neighbourhood_similarity_dictionary, sorted_similarity_dictionary

    def neighbourhood(fraction: float) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        return lambda A, B: neighbourhood_similarity_dictionary(A, B, neighbours=max(1, int(fraction * len(A))))

    return {
        "vecmap": lambda A, B: sorted_similarity_dictionary(A, B),
        "two-hop": lambda A, B: hop_dictionary(A, B, 2),
        "three-hop": lambda A, B: hop_dictionary(A, B, 3),
        "neighbourhood n/32": neighbourhood(1 / 32),
        "neighbourhood n/16": neighbourhood(1 / 16),
        "neighbourhood n/8": neighbourhood(1 / 8),
    }


def match_quality(rows: torch.Tensor, cols: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Share of source rows matched to ``truth`` by a union dictionary, and the same among mutual matches."""
    n = len(truth)
    forward, backward = cols[:n], rows[n:]
    right = forward == truth
    mutual = backward[forward] == torch.arange(n)
    return float(right.float().mean()), float(right[mutual].float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--subsets", type=int, default=5)
    parser.add_argument("--fraction", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="append the table to this file")
    args = parser.parse_args()
    limit_threads(args.threads)
    from bench_page_cells import load_page_case

    rows = []
    for name in args.cases.split(","):
        data, X, Y, _ = load_page_case(name)
        X, Y = torch.as_tensor(np.asarray(X)), torch.as_tensor(np.asarray(Y))
        n = int(args.fraction * len(X))
        for profile_name, first_dictionary in starts().items():
            hits, mutual_hits, seconds = [], [], 0.0
            for subset in range(args.subsets):
                gen = torch.Generator().manual_seed(subset)
                items = torch.randperm(len(X), generator=gen)[:n]
                shuffle = torch.randperm(n, generator=gen)
                truth = torch.empty_like(shuffle)
                truth[shuffle] = torch.arange(n)  # X[items][i] is Y[items][shuffle][truth[i]]
                start = time.perf_counter()
                hit, mutual_hit = match_quality(*first_dictionary(X[items], Y[items][shuffle]), truth)
                seconds += time.perf_counter() - start
                hits.append(hit)
                mutual_hits.append(mutual_hit)
            rows.append(
                {
                    "case": data.label,
                    "rows": n,
                    "profile": profile_name,
                    "hit % (mean)": f"{100 * np.mean(hits):.2f}",
                    "hit % (min-max)": f"{100 * min(hits):.2f}-{100 * max(hits):.2f}",
                    "mutual hit %": f"{100 * np.mean(mutual_hits):.2f}",
                    "chance %": f"{100 / n:.2f}",
                    "s": f"{seconds / args.subsets:.1f}",
                }
            )
            print(rows[-1], flush=True)
    title = (
        f"Zero-pair first dictionaries, {args.subsets} subsets of {args.fraction:.0%} of the items, "
        f"{args.threads} thread(s); {machine_summary()}"
    )
    append_table(args.out, print_table(rows, list(rows[0]), title=title))


if __name__ == "__main__":
    main()
