"""Zero-pair alignment on real embeddings: the unsupervised aligner against supervised Procrustes.

Two cases, both offline:

(c) MiniLM-L6 (``minilm``) vs MiniLM-L3 (``minilm-l3-onnx``) on 2,000 WordNet lemmas (the first lemma of
    each synset, single words, alphabetic, deduplicated, a seeded draw). Half of the lemmas are held out;
    the supervised Procrustes map is fitted on the other half (paired by lemma); the zero-pair fit sees
    all 2,000 rows of each side with the target rows shuffled and no pair. Score: R@1 with CSLS (k = 10)
    of the held-out lemmas, retrieved among the held-out targets. Three seeds of the zero-pair fit.
(d) GloVe-50 vs fastText-fr, 5,000 frequent words each, FreeDict test pairs: the split of the
    ``word_translation_ot`` experiment (a third of the English words with a translation held out;
    P@1 with CSLS among all French words).

Run ``python benchmarks/bench_unsupervised.py`` (``--small`` for a quick run at reduced sizes). Prints a
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


def _cache(name: str) -> Path:
    from latentalign._paths import embeddings_dir

    root = embeddings_dir() / "bench_unsupervised"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{name}.npy"


def wordnet_lemmas(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct single-word WordNet lemmas (first lemma of each synset), a seeded draw."""
    from latentalign.datasets import load_wordnet_glosses

    wn = load_wordnet_glosses()
    seen: set[str] = set()
    words = []
    for lemmas in wn.lemmas:
        word = lemmas[0].lower()
        if word.isalpha() and len(word) > 2 and word not in seen:
            seen.add(word)
            words.append(word)
    rng = np.random.default_rng(seed)
    return [words[i] for i in np.sort(rng.choice(len(words), size=n, replace=False))]


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


def case_minilm(n: int, seeds: list[int], params: dict) -> list[dict]:
    from latentalign.align import Procrustes
    from latentalign.preprocessing import make_preprocessor

    X, Y = text_pair(2000)
    X, Y = X[:n], Y[:n]
    rng = np.random.default_rng(0)
    test = np.sort(rng.permutation(n)[: n // 2])
    train = np.setdiff1d(np.arange(n), test)
    norm = make_preprocessor(["l2", "center", "l2"])
    Xn, Yn = norm.fit_transform(X), norm.clone().fit_transform(Y)
    start = time.perf_counter()
    sup = Procrustes(center=False).fit(Xn[train], Yn[train])
    rows = [
        {
            "case": "(c) MiniLM-L6 -> L3",
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
        rows.append(
            {
                "case": "(c) MiniLM-L6 -> L3",
                "method": "UnsupervisedAligner, 0 pairs",
                "seed": seed,
                "r1_csls": r1_csls(model.map_.transform(Xn[test]), Yn[test], None),
                "seconds": seconds,
                "notes": f"rounds={model.n_iter_} converged={model.converged_} score={model.score_:.3f} warnings={n_warn}",
            }
        )
    return rows


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
        sup = [r for r in rows if r["case"] == case and r["seed"] == "-"][0]["r1_csls"]
        zero = [r["r1_csls"] for r in rows if r["case"] == case and r["seed"] != "-"]
        med = float(np.median(zero))
        lines.append(
            f"{case}: zero-pair R@1 median {med:.3f} = {med / sup:.2f} x supervised ({sup:.3f}); "
            f"worst seed {min(zero):.3f} = {min(zero) / med if med > 0 else float('nan'):.2f} x median"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1,000 lemmas / 2,000 words, one seed")
    parser.add_argument("--cases", default="c,d")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    limit_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    seeds = [0] if args.small else [0, 1, 2]
    params = {"init": "vecmap", "n_init": 3}
    rows: list[dict] = []
    if "c" in args.cases:
        rows += case_minilm(1000 if args.small else 2000, seeds, params)
    if "d" in args.cases:
        rows += case_words(2000 if args.small else 5000, seeds, params)
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
            f"zero-pair parameters: {params}",
            "",
            *table,
            "",
            *summary(rows),
        ]
    )
    print(text)
    if not args.small:
        out = HERE / "results" / "bench_unsupervised.txt"
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
