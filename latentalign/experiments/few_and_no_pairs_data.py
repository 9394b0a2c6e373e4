"""The paired embeddings of the ``few_and_no_pairs`` experiment: one :class:`CaseData` per pair of encoders.

Every source reuses the loaders and the embedding-store cache of the other experiments, with the same
dataset names and ids, so embeddings computed once (by this page or another one) are never encoded again:

* ``fashion-mnist``: the fixed Fashion-MNIST blocks of :mod:`latentalign.experiments.cross_architecture`
  (training and test blocks together; this experiment draws its own split);
* ``tuxpaint``: the Tux Paint PNG stamps with unique English/French captions of
  :mod:`latentalign.experiments.mutual_knn` (image encoders see the picture, text encoders the English
  caption);
* ``wordnet-glosses``: the stratified WordNet definitions of :mod:`latentalign.experiments.text_stitching`;
* ``wordnet-lemmas``: single-word WordNet lemmas (first lemma of each synset), a seeded draw;
* ``freedict``: one-to-one FreeDict English-French pairs among the frequent words of
  :mod:`latentalign.experiments.word_translation_ot` (GloVe-50 and fastText-fr vectors).

Row ``i`` of ``X`` and row ``i`` of ``Y`` are the same item; repeated rows in either space are dropped
(:func:`latentalign.anchors.distinct_rows`), since a repeated key has no single right answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CaseData", "DATA_SOURCES", "SHORT_NAMES", "load_case", "wordnet_lemmas", "one_to_one"]

#: Data sources :func:`load_case` knows.
DATA_SOURCES = ("fashion-mnist", "tuxpaint", "wordnet-glosses", "wordnet-lemmas", "freedict")

#: Readable model names for panels and tables.
SHORT_NAMES = {
    "efficientnet-lite0": "EfficientNet-Lite0",
    "efficientnet-lite1": "EfficientNet-Lite1",
    "efficientnet-lite2": "EfficientNet-Lite2",
    "minilm": "MiniLM-L6",
    "minilm-l3-onnx": "MiniLM-L3",
    "mpnet": "MPNet",
    "e5-small": "e5-small",
    "glove-50": "GloVe-50 (en)",
    "fasttext-fr": "fastText (fr)",
}


@dataclass(frozen=True)
class CaseData:
    """Two encoders' embeddings of the same items (row ``i`` of ``X`` and of ``Y``: item ``i``)."""

    key: str
    source: str
    target: str
    data: str
    description: str
    X: np.ndarray
    Y: np.ndarray

    @property
    def label(self) -> str:
        """``"(c) MiniLM-L6 -> MiniLM-L3, WordNet lemmas"``: what panels and tables call the case."""
        return (
            f"({self.key}) {SHORT_NAMES.get(self.source, self.source)} -> "
            f"{SHORT_NAMES.get(self.target, self.target)}, {self.description}"
        )


def wordnet_lemmas(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct single-word WordNet lemmas (the first lemma of each synset), a seeded draw, sorted.

    Parameters
    ----------
    n : int
        How many lemmas (at most the number of eligible ones).
    seed : int
        Seed of the draw.

    Returns
    -------
    list of str
        Lowercase alphabetic words longer than two letters, in WordNet's file order.
    """
    from latentalign.datasets import load_wordnet_glosses

    wn = load_wordnet_glosses()
    seen: set[str] = set()
    words = []
    for lemmas in wn.lemmas:
        word = lemmas[0].lower()
        if word.isalpha() and len(word) > 2 and word not in seen:
            seen.add(word)
            words.append(word)
    if n > len(words):
        raise ValueError(f"n_items={n} exceeds the {len(words)} eligible WordNet lemmas; lower n_items.")
    rng = np.random.default_rng(seed)
    return [words[i] for i in np.sort(rng.choice(len(words), size=n, replace=False))]


def one_to_one(pairs: np.ndarray) -> np.ndarray:
    """Keep the first pair of every source row and of every target row, so no row has two answers.

    Parameters
    ----------
    pairs : array of shape (p, 2)
        ``(source row, target row)`` pairs, in order of preference.

    Returns
    -------
    numpy.ndarray of shape (q, 2)
        The kept pairs, in their original order.

    Examples
    --------
    >>> import numpy as np
    >>> one_to_one(np.array([[0, 5], [0, 6], [1, 5], [2, 7]])).tolist()
    [[0, 5], [2, 7]]
    """
    used_x: set[int] = set()
    used_y: set[int] = set()
    kept = []
    for i, j in np.asarray(pairs, dtype=np.int64).reshape(-1, 2):
        if int(i) not in used_x and int(j) not in used_y:
            kept.append((int(i), int(j)))
        used_x.add(int(i))
        used_y.add(int(j))
    return np.asarray(kept, dtype=np.int64).reshape(-1, 2)


def _embed_texts(model: str, texts: list[str], ids: list[str], dataset: str) -> np.ndarray:
    from latentalign.encoders import load_encoder
    from latentalign.store import embed

    store = embed(load_encoder(model), texts, ids, dataset=dataset, shard_size=256, progress=False)
    return np.ascontiguousarray(store.get(ids), dtype=np.float32)


def _fashion_mnist(models: tuple[str, str], setup: dict[str, Any]) -> tuple[list[np.ndarray], str]:
    from latentalign.experiments.cross_architecture import embed_subset, fashion_mnist_subset

    parts = [
        fashion_mnist_subset("train", int(setup["fmnist_train"])),
        fashion_mnist_subset("test", int(setup["fmnist_test"])),
    ]
    spaces = [np.concatenate([embed_subset(m, s) for s in parts]) for m in models]
    return spaces, f"Fashion-MNIST images ({sum(len(s.ids) for s in parts)})"


def _tuxpaint(models: tuple[str, str], setup: dict[str, Any]) -> tuple[list[np.ndarray], str]:
    from latentalign.encoders import encoder_info
    from latentalign.experiments.mutual_knn import embed_models, tuxpaint_pairs

    limit = setup.get("tux_limit")
    ids, paths, captions, _ = tuxpaint_pairs(None if limit is None else int(limit), 0)
    spaces = embed_models(list(models), ids, paths, captions, [])
    kinds = {encoder_info(m)["modality"] for m in models}
    what = "images vs captions" if len(kinds) > 1 else ("images" if kinds == {"image"} else "captions")
    return [spaces[m] for m in models], f"Tux Paint {what} ({len(ids)})"


def _wordnet_glosses(models: tuple[str, str], setup: dict[str, Any]) -> tuple[list[np.ndarray], str]:
    from latentalign.experiments.text_stitching import wordnet_sample

    per_category = int(setup["glosses_per_category"])
    ids, texts, _, _ = wordnet_sample(per_category, 0)
    dataset = f"wordnet/definitions-{per_category}pc-seed0"  # text_stitching's name: a shared cache
    return [_embed_texts(m, texts, ids, dataset) for m in models], f"WordNet glosses ({len(ids)})"


def _wordnet_lemmas(models: tuple[str, str], setup: dict[str, Any]) -> tuple[list[np.ndarray], str]:
    n = int(setup["n_lemmas"])
    words = wordnet_lemmas(n)
    return [_embed_texts(m, words, words, f"wordnet/lemmas-{n}-seed0") for m in models], f"WordNet lemmas ({n})"


def _freedict(models: tuple[str, str], setup: dict[str, Any]) -> tuple[list[np.ndarray], str]:
    from latentalign.experiments.word_translation_ot import load_word_spaces

    if tuple(models) != ("glove-50", "fasttext-fr"):
        raise ValueError(
            f"The freedict source pairs glove-50 (English) with fasttext-fr (French), got models {list(models)}; "
            "set source = 'glove-50' and target = 'fasttext-fr' for this case."
        )
    words = load_word_spaces(int(setup["n_words"]))
    # pairs come in dictionary order; sort by English frequency so the kept translation of a word is
    # decided the same way on every run
    order = np.lexsort((words.pairs[:, 1], words.pairs[:, 0]))
    kept = one_to_one(words.pairs[order])
    return [words.X[kept[:, 0]], words.Y[kept[:, 1]]], f"FreeDict en-fr word pairs ({len(kept)})"


_LOADERS = {
    "fashion-mnist": _fashion_mnist,
    "tuxpaint": _tuxpaint,
    "wordnet-glosses": _wordnet_glosses,
    "wordnet-lemmas": _wordnet_lemmas,
    "freedict": _freedict,
}


def load_case(case: dict[str, Any], setup: dict[str, Any]) -> CaseData:
    """Embeddings of one case of the config (``key``, ``data``, ``source``, ``target``), duplicates dropped.

    Parameters
    ----------
    case : dict
        One entry of ``setup["cases"]``.
    setup : dict
        The experiment's ``[setup]`` table (sizes of the data sources).

    Returns
    -------
    CaseData
    """
    from latentalign.anchors import distinct_rows

    source = case.get("data")
    if source not in _LOADERS:
        raise ValueError(
            f"case {case.get('key')!r}: data must be one of {list(DATA_SOURCES)}, got {source!r}; fix the case's "
            "data key in the config."
        )
    models = (str(case["source"]), str(case["target"]))
    (X, Y), description = _LOADERS[source](models, setup)
    keep = distinct_rows(X, Y)
    X, Y = X[keep], Y[keep]
    return CaseData(
        str(case["key"]),
        models[0],
        models[1],
        source,
        description,
        np.asarray(X, np.float32),
        np.asarray(Y, np.float32),
    )
