"""Why known pairs plus *disjoint* unpaired rows fall short: soft matching under the right map and its drift.

On a cell of the few_and_no_pairs page (its case, seed split and ``disjoint`` training rows), with
Procrustes maps and R@1 by CSLS on the held-out items, this prints:

1. the supervised map (all pool pairs, which no fit sees) and the map of the known pairs alone;
2. *oracle* refits: the supervised map couples the free rows (entropic OT, cosine cost, ``--reg``) and
   Procrustes is refitted on the pairs plus each free source row's barycentric target, or its nearest
   free target row instead: how far the disjoint rows could take a map if the coupling were right;
3. soft rounds (couple under the current map, refit on the barycentres) from the pairs' map, from
   relative representations and from the supervised map, with R@1 every other round, and along the
   rounds from the supervised map the exact transport cost (1 - cosine) between the mapped free source
   rows and the free target rows and the squared MMD (Gaussian kernel on the unit sphere) between them.
   With ``--hold-out``, every fit sees only the first half of each side's free rows, and the transport cost
   is also printed for the second half under the same maps: whether the rounds fit the sample they see or
   the distribution behind it.

It changes nothing and is not part of the page; the page's notes quote its output. Run, for example::

    python benchmarks/diagnose_disjoint_rows.py b-wordnet-e5 --seeds 0,1
    python benchmarks/diagnose_disjoint_rows.py b-wordnet-e5 --seeds 0 --pair-weight 10
    python benchmarks/diagnose_disjoint_rows.py b-wordnet-e5 --seeds 0 --rounds 10 --coupling unbalanced:0.05
    python benchmarks/diagnose_disjoint_rows.py b-wordnet-e5 --seeds 0 --rounds 8 --hold-out
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import limit_threads  # noqa: E402

SCHEDULES: dict[str, Callable[[int], list[float]]] = {
    "reg 0.1": lambda n: [0.1] * n,
    "reg 0.05": lambda n: [0.05] * n,
    "reg 0.3 -> 0.05": lambda n: list(np.geomspace(0.3, 0.05, n)),
}
MMD_GAMMAS = (1.0, 2.0, 5.0)


def unit(A: np.ndarray) -> np.ndarray:
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def procrustes(A: np.ndarray, B: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Orthogonal (or semi-orthogonal) W minimising the weighted ``||A W - B||``."""
    M = (A if weights is None else A * weights[:, None]).T @ B
    U, _, Vt = np.linalg.svd(M, full_matrices=False)
    return U @ Vt


def barycentres(S: np.ndarray, reg: float, targets: np.ndarray) -> np.ndarray:
    """Each row's barycentric target under the entropic OT coupling of cost ``1 - S`` (uniform weights)."""
    return coupled_barycentres(S, reg, targets)[0]


def coupled_barycentres(
    S: np.ndarray, reg: float, targets: np.ndarray, coupling: str = "balanced"
) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric targets and the mass each row sends, under a balanced, unbalanced or partial coupling.

    ``coupling``: ``"balanced"`` (every row sends its whole mass), ``"unbalanced:RHO"`` (KL-relaxed marginals,
    ``ot.unbalanced.sinkhorn_unbalanced`` with ``reg_m=RHO``) or ``"partial:M"`` (only the share ``M`` of the
    mass is moved, ``ot.partial.entropic_partial_wasserstein``): the last two let rows without a counterpart
    send little.
    """
    import ot

    a, b = np.full(S.shape[0], 1 / S.shape[0]), np.full(S.shape[1], 1 / S.shape[1])
    kind, _, value = coupling.partition(":")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a blurred coupling is all the barycentres need
        if kind == "balanced":
            G = ot.sinkhorn(a, b, 1 - S, reg, numItermax=2000)
        elif kind == "unbalanced":
            G = ot.unbalanced.sinkhorn_unbalanced(a, b, 1 - S, reg, float(value), numItermax=2000)
        elif kind == "partial":
            G = ot.partial.entropic_partial_wasserstein(a, b, 1 - S, reg, m=float(value), numItermax=2000)
        else:
            raise SystemExit(f"--coupling must be balanced, unbalanced:RHO or partial:M, got {coupling!r}.")
    mass = G.sum(1)
    return (G / np.maximum(mass, 1e-300)[:, None]) @ targets, mass


def rescaled(T: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``T`` with its spread along each principal axis of ``targets`` set to theirs (undoes the blur)."""
    mean = targets.mean(0)
    _, _, Vt = np.linalg.svd(targets - mean, full_matrices=False)
    coords = (T - mean) @ Vt.T
    coords *= ((targets - mean) @ Vt.T).std(0) / np.maximum(coords.std(0), 1e-12)
    return mean + coords @ Vt


def transport_cost(A: np.ndarray, B: np.ndarray) -> float:
    import ot

    return float(ot.emd2(np.full(len(A), 1 / len(A)), np.full(len(B), 1 / len(B)), 1 - unit(A) @ unit(B).T))


def mmd2(A: np.ndarray, B: np.ndarray, gamma: float) -> float:
    """Unbiased squared MMD between the rows of A and B (unit-normalised), kernel exp(-gamma ||a - b||^2)."""
    A, B = unit(A), unit(B)

    def kernel(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
        return np.exp(-gamma * np.maximum(2 - 2 * P @ Q.T, 0))

    Kaa, Kbb = kernel(A, A), kernel(B, B)
    n, m = len(A), len(B)
    within = (Kaa.sum() - np.trace(Kaa)) / (n * (n - 1)) + (Kbb.sum() - np.trace(Kbb)) / (m * (m - 1))
    return float(within - 2 * kernel(A, B).mean())


def diagnose(X: np.ndarray, Y: np.ndarray, n_test: int, seed: int, label: str, args: argparse.Namespace) -> None:
    """Print the three parts of the module docstring for one seed's split."""
    from latentalign.experiments.few_and_no_pairs_curves import split_items, training_rows
    from latentalign.functional.retrieval import retrieval_scores

    m = args.budget
    test, pool = split_items(len(X), n_test, seed)
    rows_x, rows_y, _ = training_rows(pool, m, "disjoint", seed)
    Xp, Yp, Xf, Yf = X[rows_x[:m]], Y[rows_y[:m]], X[rows_x[m:]], Y[rows_y[m:]]
    Xh, Yh = Xf[:0], Yf[:0]
    if args.hold_out:
        half = len(Xf) // 2
        Xf, Yf, Xh, Yh = Xf[:half], Yf[:half], Xf[half:], Yf[half:]
    A, weights = np.vstack([Xp, Xf]), np.r_[np.full(m, args.pair_weight), np.ones(len(Xf))]

    def r1(W: np.ndarray, X_test: np.ndarray = X[test], Y_test: np.ndarray = Y[test]) -> float:
        return float(retrieval_scores(X_test @ W, Y_test, k=1, csls=True, csls_k=10)["recall@1"])

    def refit(targets: np.ndarray, mass: np.ndarray | None = None) -> np.ndarray:
        # with a coupling that lets rows send less, a free row counts by the mass it sends
        scaled = weights if mass is None else np.r_[weights[:m], mass / mass.mean()]
        return procrustes(A, np.vstack([Yp, targets]), scaled)

    def soft_round(W: np.ndarray, reg: float) -> np.ndarray:
        targets, mass = coupled_barycentres(unit(Xf @ W) @ unit(Yf).T, reg, Yf, args.coupling)
        return refit(rescaled(targets, Yf) if args.rescale else targets, None if args.coupling == "balanced" else mass)

    def costs_of(W: np.ndarray) -> str:
        held_out = f", held-out transport {transport_cost(Xh @ W, Yh):.3f}" if args.hold_out else ""
        return f"transport {transport_cost(Xf @ W, Yf):.3f}{held_out}"

    supervised, alone = procrustes(X[pool], Y[pool]), procrustes(Xp, Yp)
    S_true = unit(Xf @ supervised) @ unit(Yf).T
    print(
        f"{label}, seed {seed}, {m} pairs, {len(Xf)} x {len(Yf)} disjoint free rows"
        + (f" ({len(Xh)} x {len(Yh)} more held out)" if args.hold_out else "")
        + f", {args.coupling} rounds: supervised "
        f"{r1(supervised):.3f}, pairs alone {r1(alone):.3f}; under the supervised map: barycentres "
        f"{r1(refit(barycentres(S_true, args.reg, Yf))):.3f}, nearest free target "
        f"{r1(refit(Yf[S_true.argmax(1)])):.3f}",
        flush=True,
    )
    Rx, Ry = unit(Xf) @ unit(Xp).T, unit(Yf) @ unit(Yp).T
    relative = refit(barycentres(unit(Rx - Rx.mean(0)) @ unit(Ry - Ry.mean(0)).T, 0.1, Yf))
    for start, W0 in (("pairs alone", alone), ("relative", relative), ("supervised", supervised)):
        for name, schedule in SCHEDULES.items():
            W, trace, costs = W0, [r1(W0)], []
            for rnd, reg in enumerate(schedule(args.rounds), start=1):
                W = soft_round(W, reg)
                trace.append(r1(W))
                if start == "supervised" and name == "reg 0.1" and rnd in (1, 5, 10, args.rounds):
                    mmd = ", ".join(f"{mmd2(Xf @ W, Yf, g) * 1e3:.3f}" for g in MMD_GAMMAS)
                    costs.append(f"round {rnd}: {costs_of(W)}, MMD2 x 1e3 {mmd}")
            print(f"  from {start}, {name}: R@1 every other round {[round(t, 2) for t in trace[::2]]}", flush=True)
            if costs:
                mmd = ", ".join(f"{mmd2(Xf @ W0, Yf, g) * 1e3:.3f}" for g in MMD_GAMMAS)
                print(f"    round 0: {costs_of(W0)}, MMD2 x 1e3 {mmd}")
                print("    " + "\n    ".join(costs), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", help="a case name of the page's config, e.g. b-wordnet-e5")
    parser.add_argument("--budget", type=int, default=50, help="known pairs")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--reg", type=float, default=0.1, help="entropic regularisation of the oracle coupling")
    parser.add_argument("--pair-weight", type=float, default=1.0, help="weight of a known pair in each refit")
    parser.add_argument("--rescale", action="store_true", help="rescale the barycentres of the rounds (rescaled)")
    parser.add_argument(
        "--coupling",
        default="balanced",
        help="coupling of the soft rounds: balanced, unbalanced:RHO (KL-relaxed marginals) or partial:M (share moved)",
    )
    parser.add_argument(
        "--hold-out", action="store_true", help="fit on half of the free rows; print the other half's transport cost"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    limit_threads(args.threads)
    from bench_page_cells import load_page_case

    data, X, Y, n_test = load_page_case(args.case)
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    for seed in (int(s) for s in args.seeds.split(",")):
        diagnose(X, Y, n_test, seed, data.label, args)


if __name__ == "__main__":
    main()
