"""Why a zero-pair fit fails on one seed of a page case and succeeds on the others.

On a cell of the few_and_no_pairs page with no known pair and the same items shuffled (its case, the
seed's pool of training items, both spaces normalised as there), this prints, per seed:

1. for each of the default starts (``functional.unsupervised.candidate_starts``), the share of its
   first matches that are right, and where self-learning from it ends with the page's screening settings
   (``self_learning_map`` on up to 2,000 rows): the share of source rows whose nearest target under the
   map is their own item (``nn right``) and the unsupervised score that ranks the starts (``--patience``
   10 gives the schedule of the aligner's extra starts, with twice the rounds);
2. *planted* starts: the first start's matches with a share of the rows replaced by their right match
   (each row independently, ``--repeats`` draws per share), and how many of those draws self-learning
   turns into a right map (``nn right`` above one half; the table's ``nn right`` is the best draw's).
   The share a seed needs is how wide the basin of the right map is on that seed's rows; comparing it
   with the share the real starts reach says whether a better start or a better self-learning loop is
   missing.

It changes nothing and is not part of the page. Run, for example::

    python benchmarks/diagnose_zero_pair_seeds.py b-wordnet-e5 --seeds 0,2 --shares 0.02,0.04 \\
        --out benchmarks/results/diagnose_zero_pair_seeds.txt
    python benchmarks/diagnose_zero_pair_seeds.py b-wordnet-e5 --seeds 2 --starts 16 --shares '' \\
        --patience 10 --out benchmarks/results/diagnose_zero_pair_seeds.txt
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import append_table, limit_threads, machine_summary, print_table  # noqa: E402

#: Screening settings of the first starts of the page's zero-pair fits (UnsupervisedAligner defaults).
SCREEN: dict[str, Any] = {"vocab_cutoff": 2000, "max_iter": 100, "patience": 5}


def seed_rows(X: np.ndarray, Y: np.ndarray, n_test: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The seed's zero-pair training rows of each side, normalised, and each source row's own target row."""
    from latentalign.experiments.few_and_no_pairs_curves import split_items, training_rows
    from latentalign.functional.unsupervised import normalize_rows

    _, pool = split_items(len(X), n_test, seed)
    rows_x, rows_y, _ = training_rows(pool, 0, "shuffled", seed)
    position = {int(item): j for j, item in enumerate(rows_y)}
    truth = torch.tensor([position[int(item)] for item in rows_x])
    A = normalize_rows(torch.as_tensor(X[rows_x], dtype=torch.float64))
    B = normalize_rows(torch.as_tensor(Y[rows_y], dtype=torch.float64))
    return A, B, truth


def nn_right(A: torch.Tensor, B: torch.Tensor, W: torch.Tensor, truth: torch.Tensor) -> float:
    """Share of source rows whose nearest target row (cosine) under ``W`` is their own item."""
    nearest = ((A.float() @ W.float()) @ B.float().T).argmax(1)
    return float((nearest == truth).float().mean())


def diagnose(
    A: torch.Tensor, B: torch.Tensor, truth: torch.Tensor, seed: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Parts 1 and 2 of the module docstring for one seed: one row per start and per planted share."""
    from latentalign.functional.unsupervised import candidate_starts, self_learning_map

    n = A.shape[0]
    out = []
    starts = candidate_starts(A, B, n_init=args.starts, random_state=seed)
    # a slower keep_prob schedule needs proportionally more rounds (as the aligner's extra starts get)
    pace = args.patience / SCREEN["patience"]
    schedule = {**SCREEN, "patience": args.patience, "max_iter": round(SCREEN["max_iter"] * pace)}
    for i, (rows, cols, info) in enumerate(starts):
        began = time.perf_counter()
        fit = self_learning_map(A, B, rows, cols, random_state=seed + i, **schedule)
        out.append(
            {
                "seed": seed,
                "start": info["start"].split(",")[0],
                "right first matches": float((truth[rows] == cols).float().mean()),
                "nn right": nn_right(A, B, fit.W, truth),
                "score": fit.score,
                "successes": "-",
                "patience": args.patience,
                "s": time.perf_counter() - began,
            }
        )
        print(out[-1], flush=True)
    first_cols = starts[0][1][:n]  # the first start's match of every source row (its forward half)
    for share in (float(s) for s in args.shares.split(",") if s):
        began = time.perf_counter()
        results = []
        for rep in range(args.repeats):
            gen = torch.Generator().manual_seed(100 * rep + seed)
            planted = torch.where(torch.rand(n, generator=gen) < share, truth, first_cols)
            fit = self_learning_map(A, B, torch.arange(n), planted, random_state=seed + rep, **SCREEN)
            results.append(nn_right(A, B, fit.W, truth))
        out.append(
            {
                "seed": seed,
                "start": f"planted {share:.0%} right",
                "right first matches": share,
                "nn right": max(results),
                "score": float("nan"),
                "successes": f"{sum(r > 0.5 for r in results)} of {args.repeats}",
                "patience": SCREEN["patience"],
                "s": time.perf_counter() - began,
            }
        )
        print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", help="a case name of the page's config, e.g. b-wordnet-e5")
    parser.add_argument("--seeds", default="0,2")
    parser.add_argument("--starts", type=int, default=3, help="default starts measured per seed")
    parser.add_argument("--shares", default="0.02,0.04", help="shares of right matches planted ('' for none)")
    parser.add_argument(
        "--patience", type=int, default=5, help="patience of the default starts' rounds (5: the first starts')"
    )
    parser.add_argument("--repeats", type=int, default=3, help="planted draws per share")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="append the table to this file")
    args = parser.parse_args()
    limit_threads(args.threads)
    from bench_page_cells import load_page_case

    data, X, Y, n_test = load_page_case(args.case)
    rows: list[dict[str, Any]] = []
    for seed in (int(s) for s in args.seeds.split(",")):
        A, B, truth = seed_rows(X, Y, n_test, seed)
        rows += diagnose(A, B, truth, seed, args)
    title = f"{data.label}, zero pairs, shuffled; {datetime.datetime.now().isoformat(timespec='seconds')}; {machine_summary()}"
    append_table(args.out, print_table(rows, list(rows[0]), title=title))


if __name__ == "__main__":
    main()
