"""Few anchors: latent functional maps against Procrustes, Affine and relative projection, at equal budgets.

One real pair, offline: MiniLM-L6 (``minilm``, 384-d) vs MPNet (``mpnet``, 768-d) embeddings of 2,000
WordNet lemmas (the first lemma of each synset, single alphabetic words of 3+ letters, deduplicated, a
seeded draw; the list of ``bench_unsupervised.py``). For each of 3 seeds the lemmas are shuffled, 500 are
held out, and the other 1,500 form the training pool; the anchors are the first ``m`` lemmas of a seeded
order of the pool, so the budgets ``m`` = 5, 10, 25, 50, 100 are nested.

* ``Procrustes``, ``Affine``: fitted on the ``m`` anchor pairs only.
* ``RelativeProjection``: the ``m`` anchors; held-out rows of both sides are compared in relative space
  (``transform`` vs ``transform_target``).
* ``LFM transfer``: :class:`~latentalign.align.functional_map.LatentFunctionalMap` with its defaults
  (30-NN graphs, 40 x 40 map, no ZoomOut, coordinates transferred), fitted on all 1,500 pool rows of each side with the
  MPNet rows shuffled (unpaired) and the ``m`` anchors as ``pairs``.
* ``LFM pointwise+ZoomOut``: the same with ``correspondence="pointwise"`` and ZoomOut from 40 to 100.
* ``Procrustes, all pairs`` (reference, not a budget): Procrustes fitted on all 1,500 pool pairs, the
  ceiling of any map fitted on a perfect correspondence of the pool.

Score: R@1 of the 500 held-out MiniLM lemmas retrieving their MPNet counterpart among the 500 held-out MPNet
rows (chance 0.002), by cosine and by CSLS (k = 10); mean and standard deviation over the 3 seeds. ``pool
match`` is the fraction of pool rows of Y that LFM matched to their true row (its ``matches_``). ``fit s``
is the mean fit time. Under-determination warnings (fewer anchors than dimensions) are silenced: they are
the point of the comparison.

Run ``python benchmarks/bench_functional_map.py`` (``--small`` for a quick run at reduced sizes). Prints a
table and writes ``benchmarks/results/bench_functional_map.txt`` with the date and the load average.
Embeddings are cached under the latentalign embeddings directory, so a second run does not encode again.
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

from latentalign.experiments.few_and_no_pairs_data import wordnet_lemmas  # noqa: E402

BUDGETS = (5, 10, 25, 50, 100)
METHODS = ("Procrustes", "Affine", "RelativeProjection", "LFM transfer", "LFM pointwise+ZoomOut")


def _cache(name: str) -> Path:
    from latentalign._paths import embeddings_dir

    root = embeddings_dir() / "bench_functional_map"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{name}.npy"


def embeddings(n: int) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM and MPNet embeddings of ``n`` WordNet lemmas (row i of each: the same lemma), float32."""
    from latentalign.encoders import load_encoder

    out = []
    words = None
    for name in ("minilm", "mpnet"):
        path = _cache(f"{name}-wordnet-lemmas-{n}")
        if not path.exists():
            words = words or wordnet_lemmas(n)
            np.save(path, load_encoder(name).encode(words, progress=False).astype(np.float32))
        out.append(np.load(path))
    return out[0], out[1]


def recall_at_1(queries: Any, keys: Any) -> tuple[float, float]:
    """R@1 of query i retrieving key i, by cosine and by CSLS (k = 10)."""
    from latentalign.functional.retrieval import retrieval_scores

    cosine = retrieval_scores(queries, keys, k=1)["recall@1"]
    csls = retrieval_scores(queries, keys, k=1, csls=True, csls_k=10)["recall@1"]
    return float(cosine), float(csls)


def run_method(method: str, X_pool: np.ndarray, Y_pool: np.ndarray, anchors: np.ndarray, X_test, Y_test, rng):
    """Fit ``method`` with the anchors (and, for LFM, the unpaired pool); return scores and fit time."""
    from latentalign import Affine, Procrustes, RelativeProjection
    from latentalign.align.functional_map import LatentFunctionalMap

    start = time.perf_counter()
    extra: dict[str, float] = {}
    if method.startswith("LFM"):
        perm = rng.permutation(len(Y_pool))  # Y row j is pool row perm[j]
        pairs = np.stack([anchors, np.argsort(perm)[anchors]], axis=1)
        params = {"correspondence": "pointwise", "k_final": 100} if "ZoomOut" in method else {}
        aligner = LatentFunctionalMap(**params).fit(X_pool, Y_pool[perm], pairs=pairs)
        extra["pool match"] = float((aligner.matches_.numpy() == perm).mean())
        queries, keys = aligner.transform(X_test), Y_test
    else:
        kind = {"Procrustes": Procrustes, "Affine": Affine, "RelativeProjection": RelativeProjection}[method]
        aligner = kind().fit(X_pool[anchors], Y_pool[anchors])
        queries, keys = aligner.transform(X_test), aligner.transform_target(Y_test)
    seconds = time.perf_counter() - start
    cosine, csls = recall_at_1(queries, keys)
    return {"R@1 cos": cosine, "R@1 CSLS": csls, "fit s": seconds, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="600 lemmas, 1 seed, budgets 5 and 25")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    limit_threads(args.threads)
    n, n_test, seeds, budgets = (600, 150, (0,), (5, 25)) if args.small else (2000, 500, (0, 1, 2), BUDGETS)
    X_all, Y_all = embeddings(2000)
    X_all, Y_all = X_all[:n].astype(np.float64), Y_all[:n].astype(np.float64)

    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        order = rng.permutation(n)
        test, pool = order[:n_test], order[n_test:]
        anchor_order = rng.permutation(len(pool))
        for m in (*budgets, len(pool)):
            for method in METHODS if m < len(pool) else ("Procrustes",):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    row = run_method(
                        method,
                        X_all[pool],
                        Y_all[pool],
                        anchor_order[:m],
                        X_all[test],
                        Y_all[test],
                        np.random.default_rng(1000 + seed),
                    )
                results.setdefault((m, method), []).append(row)
                print(f"seed {seed} m={m:3d} {method:22s} {row}", file=sys.stderr, flush=True)

    rows = []
    for (m, method), runs in results.items():
        reference = m == n - n_test
        entry: dict[str, Any] = {
            "anchors": "all" if reference else m,
            "method": method + (", all pairs" if reference else ""),
        }
        for key in ("R@1 cos", "R@1 CSLS"):
            values = np.array([r[key] for r in runs])
            entry[key] = f"{values.mean():.3f} ± {values.std():.3f}"
        entry["pool match"] = f"{np.mean([r['pool match'] for r in runs]):.3f}" if "pool match" in runs[0] else "-"
        entry["fit s"] = float(np.mean([r["fit s"] for r in runs]))
        rows.append(entry)
    columns = ["anchors", "method", "R@1 cos", "R@1 CSLS", "pool match", "fit s"]
    header = (
        f"# bench_functional_map {'--small ' if args.small else ''}{datetime.datetime.now().isoformat(timespec='seconds')}\n"
        f"# {machine_summary()}\n"
        f"# MiniLM -> MPNet, {n} WordNet lemmas, {n - n_test} in the pool, {n_test} held out; seeds {list(seeds)}; "
        f"R@1 mean ± std over seeds (chance {1 / n_test:.3f})\n"
    )
    table = print_table(rows, columns)
    text = header + (table or "")
    if not args.small:
        out = HERE / "results" / "bench_functional_map.txt"
        out.write_text(text if text.endswith("\n") else text + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
