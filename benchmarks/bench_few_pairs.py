"""Few pairs plus unpaired rows: OTAligner's default route against the maps fitted on the pairs alone.

Real embeddings, offline, of 2,000 WordNet lemmas (the list and the cached embeddings of
``bench_unsupervised.py`` and ``bench_functional_map.py``):

* MiniLM-L6 (``minilm``, 384-d) vs MiniLM-L3 (``minilm-l3-onnx``, 384-d);
* MiniLM-L6 vs MPNet (``mpnet``, 768-d).

For each of 3 seeds the lemmas are shuffled: 500 are held out (test), 50 are the known pairs, and the
other 1,450 are *unpaired* rows, in two settings:

* ``same``: both sides hold all 1,450 free lemmas, the target side shuffled;
* ``disjoint``: the source side holds 725 of them and the target side the *other* 725, so no free row
  has a counterpart (two corpora of different items).

Methods (each side centred and L2-normalised first, on the rows its fit sees):

* ``OTAligner()``: the defaults -- with pairs, the self-learning route (mutual CSLS matches, stochastic
  induction, matches calibrated on held-out pairs), the pairs alone or soft matching (entropic OT
  barycentres of the free rows), whichever ranks set-aside pairs best; pairs + all free rows;
* ``Procrustes (pairs)``: the 50 pairs only (default completion of the unconstrained directions: closest
  to the identity); ``Procrustes svd (pairs)``: the same with ``complement="svd"`` (the old completion);
* ``RelativeProjection (pairs)``: the 50 pairs as anchors; held-out rows compared in relative space;
* ``LFM (pairs + free)``: :class:`~latentalign.align.functional_map.LatentFunctionalMap` with its
  defaults on the pairs and all free rows;
* ``Procrustes, all pairs`` (reference): supervised on the 50 pairs plus every free lemma, paired.

Score: R@1 of the 500 held-out source lemmas retrieving their counterpart among the 500 held-out target
rows (chance 0.002), by cosine and by CSLS (k = 10), mean ± std over the seeds; ``vs sup`` is the CSLS
R@1 as a fraction of the supervised reference's. Warnings are counted, not shown (``warn``: mean per fit).

Run ``python benchmarks/bench_few_pairs.py`` (``--small``: 800 lemmas, one seed, nothing written).
Writes ``benchmarks/results/bench_few_pairs.txt`` with the date and the load average.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import limit_threads, machine_summary, print_table  # noqa: E402

N_PAIRS = 50
METHODS = (
    "OTAligner()",
    "Procrustes (pairs)",
    "Procrustes svd (pairs)",
    "RelativeProjection (pairs)",
    "LFM (pairs + free)",
    "Procrustes, all pairs",
)


def load(case: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Source and target embeddings of ``n`` lemmas (row i of each: the same lemma), cached."""
    if case == "MiniLM-L6 -> MiniLM-L3":
        import bench_unsupervised

        loader = getattr(bench_unsupervised, "text_pair", None) or bench_unsupervised.minilm_pair
        return loader(n)
    import bench_functional_map

    return bench_functional_map.embeddings(n)


def r1(Z: Any, Y: Any) -> tuple[float, float]:
    from latentalign.functional.retrieval import retrieval_scores

    gold = np.arange(len(Y))
    cos = retrieval_scores(Z, Y, gold=gold, k=1)["recall@1"]
    csls = retrieval_scores(Z, Y, gold=gold, k=1, csls=True, csls_k=10)["recall@1"]
    return float(cos), float(csls)


def split(n: int, n_test: int, seed: int, setting: str):
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    test, pairs, free = order[:n_test], order[n_test : n_test + N_PAIRS], order[n_test + N_PAIRS :]
    if setting == "disjoint":
        return test, pairs, free[: len(free) // 2], free[len(free) // 2 :]
    return test, pairs, free, rng.permutation(free)


def run(method: str, X: np.ndarray, Y: np.ndarray, test, pairs, free_x, free_y) -> dict[str, Any]:

    from latentalign import OTAligner, Procrustes, RelativeProjection
    from latentalign.align.functional_map import LatentFunctionalMap
    from latentalign.preprocessing import make_preprocessor

    px = make_preprocessor(["center", "l2"]).fit(X[np.r_[pairs, free_x]])
    py = make_preprocessor(["center", "l2"]).fit(Y[np.r_[pairs, free_y]])
    Xp, Yp = px.transform(X), py.transform(Y)
    Xf, Yf = np.concatenate([Xp[pairs], Xp[free_x]]), np.concatenate([Yp[pairs], Yp[free_y]])
    known = np.stack([np.arange(N_PAIRS), np.arange(N_PAIRS)], 1)
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys = Yp[test]
        if method == "OTAligner()":
            model = OTAligner().fit(Xf, Yf, pairs=known)
            extra = {"rounds": model.n_iter_, "converged": float(model.converged_)}
        elif method.startswith("Procrustes") and "all" not in method:
            model = Procrustes(complement="svd" if "svd" in method else "identity").fit(Xp[pairs], Yp[pairs])
        elif method == "RelativeProjection (pairs)":
            model = RelativeProjection().fit(Xp[pairs], Yp[pairs])
            keys = model.transform_target(Yp[test])
        elif method == "LFM (pairs + free)":
            model = LatentFunctionalMap().fit(Xf, Yf, pairs=known)
        else:  # supervised reference: every non-test lemma paired
            rows = np.r_[pairs, np.union1d(free_x, free_y)]
            model = Procrustes().fit(Xp[rows], Yp[rows])
        queries = model.transform(Xp[test])
    seconds = time.perf_counter() - start
    cos, csls = r1(np.asarray(queries), np.asarray(keys))
    return {"R@1 cos": cos, "R@1 CSLS": csls, "fit s": seconds, "warn": float(len(caught)), **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="800 lemmas, 1 seed, nothing written")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    limit_threads(args.threads)
    n, n_test, seeds = (800, 200, (0,)) if args.small else (2000, 500, (0, 1, 2))
    cases = ("MiniLM-L6 -> MiniLM-L3", "MiniLM-L6 -> MPNet")
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for case in cases:
        X_all, Y_all = load(case, 2000)
        X_all, Y_all = X_all[:n].astype(np.float64), Y_all[:n].astype(np.float64)
        for setting in ("same", "disjoint"):
            for seed in seeds:
                test, pairs, free_x, free_y = split(n, n_test, seed, setting)
                for method in METHODS:
                    row = run(method, X_all, Y_all, test, pairs, free_x, free_y)
                    results.setdefault((case, setting, method), []).append(row)
                    print(f"{case} {setting} seed {seed} {method:28s} {row}", file=sys.stderr, flush=True)

    rows = []
    for (case, setting, method), runs in results.items():
        sup = results[(case, setting, "Procrustes, all pairs")]
        entry: dict[str, Any] = {"models": case, "free rows": setting, "method": method}
        for key in ("R@1 cos", "R@1 CSLS"):
            values = np.array([r[key] for r in runs])
            entry[key] = f"{values.mean():.3f} ± {values.std():.3f}"
        ratio = np.mean([r["R@1 CSLS"] for r in runs]) / max(np.mean([r["R@1 CSLS"] for r in sup]), 1e-12)
        entry["vs sup"] = f"{ratio:.2f}"
        entry["fit s"] = float(np.mean([r["fit s"] for r in runs]))
        entry["warn"] = float(np.mean([r["warn"] for r in runs]))
        if "rounds" in runs[0]:
            entry["rounds"] = float(np.mean([r["rounds"] for r in runs]))
            entry["converged"] = float(np.mean([r["converged"] for r in runs]))
        rows.append(entry)
    columns = ["models", "free rows", "method", "R@1 cos", "R@1 CSLS", "vs sup", "fit s", "warn", "rounds", "converged"]
    header = (
        f"# bench_few_pairs {'--small ' if args.small else ''}{datetime.datetime.now().isoformat(timespec='seconds')}\n"
        f"# {machine_summary()}\n"
        f"# {n} WordNet lemmas: {n_test} held out, {N_PAIRS} known pairs, the rest unpaired (same: all of them on "
        f"both sides, shuffled; disjoint: different halves); seeds {list(seeds)}; R@1 mean ± std over seeds "
        f"(chance {1 / n_test:.3f}); vs sup = CSLS R@1 / supervised Procrustes' CSLS R@1\n"
    )
    table = print_table(rows, columns)
    text = header + (table or "")
    if not args.small:
        out = HERE / "results" / "bench_few_pairs.txt"
        out.write_text(text if text.endswith("\n") else text + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
