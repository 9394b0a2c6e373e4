"""Zero-pair alignment on real embeddings: the unsupervised aligner against supervised Procrustes.

Cases, all offline (one paired set per case: row i of each side is the same item; the zero-pair fit sees
all rows with the target rows shuffled and no pair; half of the rows are held out and the supervised
Procrustes map is fitted on the other half, paired; score: R@1 with CSLS (k = 10) of the held-out rows,
retrieved among the held-out targets):

(t) timing: a clustered 5,000 x 768 float32 cloud and a rotated, shuffled copy (seconds of one fit).
(w) timing with fewer rows than dimensions, as with image features: the same on 600 x 1,280.
(c) MiniLM-L6 (``minilm``) vs MiniLM-L3 (``minilm-l3-onnx``) on 2,000 WordNet lemmas (the first lemma of
    each synset, single words, alphabetic, deduplicated, a seeded draw).
(a) EfficientNet-Lite0 vs Lite1 pooled features of 2,000 Fashion-MNIST train images.
(b) MiniLM-L6 vs MPNet (``mpnet``) on the same 2,000 WordNet lemmas.
(d) GloVe-50 vs fastText-fr, 5,000 frequent words each, FreeDict test pairs: the split of the
    ``word_translation_ot`` experiment (a third of the English words with a translation held out;
    P@1 with CSLS among all French words).

Run ``python benchmarks/bench_unsupervised.py`` (``--small`` for a quick run at reduced sizes;
``--prepare`` encodes and caches the embeddings first; ``--cases t,c`` runs a subset). Prints a
table and writes ``benchmarks/results/bench_unsupervised.txt`` with the date and the load average.
Embeddings are cached under the latentalign embeddings directory, so a second run does not encode again.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import limit_threads, machine_summary  # noqa: E402

from latentalign.experiments.few_and_no_pairs_data import wordnet_lemmas  # noqa: E402


def _cache(name: str) -> Path:
    from latentalign._paths import embeddings_dir

    root = embeddings_dir() / "bench_unsupervised"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{name}.npy"


def text_pair(n: int, names: tuple[str, str] = ("minilm", "minilm-l3-onnx")) -> tuple[np.ndarray, np.ndarray]:
    """Two text encoders' embeddings of ``n`` WordNet lemmas (row i of each: the same lemma)."""
    from latentalign.encoders import load_encoder

    out = []
    words = None
    for name in names:
        path = _cache(f"{name}-wordnet-{n}")
        if not path.exists():
            words = words or wordnet_lemmas(n)
            np.save(path, load_encoder(name).encode(words, progress=False).astype(np.float32))
        out.append(np.load(path))
    return out[0], out[1]


def image_pair(n: int) -> tuple[np.ndarray, np.ndarray]:
    """EfficientNet-Lite0 and Lite1 features of ``n`` Fashion-MNIST train images (row i: the same image)."""
    from latentalign.experiments.cross_architecture import embed_subset, fashion_mnist_subset

    subset = fashion_mnist_subset("train", n)
    return embed_subset("efficientnet-lite0", subset), embed_subset("efficientnet-lite1", subset)


def r1_csls(Z: np.ndarray, Y: np.ndarray, gold) -> float:
    from latentalign.functional.retrieval import retrieval_scores

    return float(retrieval_scores(Z, Y, gold=gold, k=1, csls=True, csls_k=10)["recall@1"])


def fit_zero_pairs(X: np.ndarray, Y: np.ndarray, seed: int, **params):
    """Zero-pair fit; returns the model, seconds and the ConvergenceWarnings it raised."""
    from latentalign.align.unsupervised import UnsupervisedAligner
    from latentalign.exceptions import ConvergenceWarning

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = UnsupervisedAligner(random_state=seed, **params).fit(X, Y)
    n_warn = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model, time.perf_counter() - start, n_warn


def case_paired(label: str, X: np.ndarray, Y: np.ndarray, seeds: list[int], params: dict) -> list[dict]:
    """Row i of X and Y is the same item: supervised Procrustes on half vs the zero-pair fit on all."""
    from latentalign.align import Procrustes
    from latentalign.preprocessing import make_preprocessor

    n = len(X)
    rng = np.random.default_rng(0)
    test = np.sort(rng.permutation(n)[: n // 2])
    train = np.setdiff1d(np.arange(n), test)
    norm = make_preprocessor(["l2", "center", "l2"])
    Xn, Yn = norm.fit_transform(X), norm.clone().fit_transform(Y)
    start = time.perf_counter()
    sup = Procrustes(center=False).fit(Xn[train], Yn[train])
    rows = [
        {
            "case": label,
            "method": f"Procrustes, {len(train)} pairs",
            "seed": "-",
            "r1_csls": r1_csls(sup.transform(Xn[test]), Yn[test], None),
            "seconds": time.perf_counter() - start,
            "notes": "",
        }
    ]
    shuffle = np.random.default_rng(1).permutation(n)  # no order shared by the two sides
    for seed in seeds:
        model, seconds, n_warn = fit_zero_pairs(X, Y[shuffle], seed, **params)
        chosen = [r for r in model.restarts_ if r.get("chosen")][0]
        rows.append(
            {
                "case": label,
                "method": "UnsupervisedAligner, 0 pairs",
                "seed": seed,
                "r1_csls": r1_csls(model.map_.transform(Xn[test]), Yn[test], None),
                "seconds": seconds,
                "notes": f"rounds={model.n_iter_} converged={model.converged_} score={model.score_:.3f} "
                f"warnings={n_warn} start={chosen['start']!r} screened={[round(r['score'], 3) for r in model.restarts_]} "
                f"gaps={[round(r.get('gap', 0.0), 2) for r in model.restarts_]} "
                f"load={os.getloadavg()[0]:.1f}",
            }
        )
        print(rows[-1], flush=True)
    return rows


def case_timing(n: int, d: int, params: dict, label: str = "t") -> list[dict]:
    """Seconds of one zero-pair fit on ``n x d`` rows per side: a clustered cloud and a rotated, shuffled copy."""
    from latentalign.functional.retrieval import retrieval_scores

    rng = np.random.default_rng(0)
    spectrum = np.geomspace(3.0, 0.1, d).astype(np.float32)
    centres = rng.normal(size=(50, d)).astype(np.float32) * spectrum
    X = centres[rng.integers(0, 50, n)] + 0.5 * rng.normal(size=(n, d)).astype(np.float32) * spectrum
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    # Rows stay roughly in order of importance (as word lists are): shuffled within blocks of 100.
    perm = np.concatenate([b[rng.permutation(len(b))] for b in np.array_split(np.arange(n), n // 100)])
    Y = (X @ Q.astype(np.float32))[perm]
    model, seconds, n_warn = fit_zero_pairs(X, Y, 0, **params)
    r1 = float(retrieval_scores(model.transform(X), Y, gold=np.argsort(perm), k=1)["recall@1"])
    return [
        {
            "case": f"({label}) timing, {n} x {d} float32 per side",
            "method": "UnsupervisedAligner, 0 pairs",
            "seed": 0,
            "r1_csls": r1,
            "seconds": seconds,
            "notes": f"R@1 without CSLS; rounds={model.n_iter_} converged={model.converged_} warnings={n_warn} "
            f"load={os.getloadavg()[0]:.1f}",
        }
    ]


def case_words(n_words: int, seeds: list[int], params: dict) -> list[dict]:
    from latentalign.align import Procrustes
    from latentalign.experiments.word_translation_ot import load_word_spaces, split_dictionary

    data = load_word_spaces(n_words)
    train, test_src, gold = split_dictionary(data.pairs, seed=0)
    start = time.perf_counter()
    sup = Procrustes().fit(data.X[train[:, 0]], data.Y[train[:, 1]])
    rows = [
        {
            "case": "(d) GloVe-50 -> fastText-fr",
            "method": f"Procrustes, {len(train)} pairs",
            "seed": "-",
            "r1_csls": r1_csls(sup.transform(data.X[test_src]), data.Y, gold),
            "seconds": time.perf_counter() - start,
            "notes": "",
        }
    ]
    for seed in seeds:
        model, seconds, n_warn = fit_zero_pairs(data.X, data.Y, seed, **params)
        rows.append(
            {
                "case": "(d) GloVe-50 -> fastText-fr",
                "method": "UnsupervisedAligner, 0 pairs",
                "seed": seed,
                "r1_csls": r1_csls(model.map_.transform(data.X[test_src]), data.Y, gold),
                "seconds": seconds,
                "notes": f"rounds={model.n_iter_} converged={model.converged_} score={model.score_:.3f} warnings={n_warn}",
            }
        )
    return rows


def summary(rows: list[dict]) -> list[str]:
    lines = []
    for case in dict.fromkeys(r["case"] for r in rows):
        sups = [r for r in rows if r["case"] == case and r["seed"] == "-"]
        if not sups:
            continue
        sup = sups[0]["r1_csls"]
        zero = [r["r1_csls"] for r in rows if r["case"] == case and r["seed"] != "-"]
        med = float(np.median(zero))
        lines.append(
            f"{case}: zero-pair R@1 median {med:.3f} = {med / sup:.2f} x supervised ({sup:.3f}); "
            f"worst seed {min(zero):.3f} = {min(zero) / med if med > 0 else float('nan'):.2f} x median"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1,000 lemmas or images / 2,000 words, one seed")
    parser.add_argument("--seeds", type=int, default=3, help="zero-pair seeds per case (full run)")
    parser.add_argument("--cases", default="t,w,c,a,b,d")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--init", default="neighbourhood", help="kind of starts (earlier results: vecmap)")
    parser.add_argument("--output", help="results file of a full run (default: results/bench_unsupervised.txt)")
    args = parser.parse_args()
    limit_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    seeds = [0] if args.small else list(range(args.seeds))
    params = {"init": args.init, "n_init": 3}
    n = 1000 if args.small else 2000
    # The paired sets are shuffled on one side (no shared order), so the screening sees all their rows.
    paired = {**params, "screen_size": n}
    cases = {
        "t": lambda: case_timing(2000 if args.small else 5000, 768, params),
        "w": lambda: case_timing(600, 1280, params, label="w"),
        "c": lambda: case_paired(
            "(c) MiniLM-L6 -> L3, WordNet lemmas", *(a[:n] for a in text_pair(2000)), seeds, paired
        ),
        "a": lambda: case_paired("(a) EfficientNet-Lite0 -> Lite1, Fashion-MNIST", *image_pair(n), seeds, paired),
        "b": lambda: case_paired(
            "(b) MiniLM-L6 -> MPNet, WordNet lemmas",
            *(a[:n] for a in text_pair(2000, ("minilm", "mpnet"))),
            seeds,
            paired,
        ),
        "d": lambda: case_words(2000 if args.small else 5000, seeds, params),
    }
    rows: list[dict] = []
    for key in args.cases.split(","):
        rows += cases[key]()
        report(rows, args, params)


def report(rows: list[dict], args: argparse.Namespace, params: dict) -> None:
    """Print the table so far and (full runs) write it, so that a long run keeps what it finished."""
    header = "| case | method | seed | R@1 CSLS | seconds | notes |\n|---|---|---|---:|---:|---|"
    table = [header] + [
        f"| {r['case']} | {r['method']} | {r['seed']} | {r['r1_csls']:.3f} | {r['seconds']:.1f} | {r['notes']} |"
        for r in rows
    ]
    text = "\n".join(
        [
            f"bench_unsupervised ({'small' if args.small else 'full'}) {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"load average before/after: {LOAD_BEFORE} / {tuple(round(x, 2) for x in os.getloadavg())}",
            f"machine: {machine_summary()}",
            f"zero-pair parameters: {params} (and the aligner's defaults: more starts, up to max_starts=24 within "
            "time_budget=600 s, until another start confirms the best map; gaps = each start's distance to the "
            "chosen map); the paired cases (a)-(c) also screen all their rows (screen_size = n)",
            "",
            *table,
            "",
            *summary(rows),
        ]
    )
    print(text)
    if not args.small:
        out = Path(args.output) if args.output else HERE / "results" / "bench_unsupervised.txt"
        out.write_text(text + "\n")
        print(f"wrote {out}")


LOAD_BEFORE = tuple(round(x, 2) for x in os.getloadavg())

if __name__ == "__main__":
    if "--prepare" in sys.argv:
        limit_threads(1)
        print([a.shape for a in text_pair(2000)], flush=True)
        print([a.shape for a in text_pair(2000, ("minilm", "mpnet"))], flush=True)
        print([a.shape for a in image_pair(2000)], flush=True)
    else:
        main()
