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

A case may add unpaired rows from another corpus (its ``extra_unpaired`` table, :func:`load_extra_rows`),
embedded by the case's two models: each seed gives each side a different half of them
(:func:`extra_row_draw`), so none has a counterpart on the other side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CaseData",
    "DATA_SOURCES",
    "SHORT_NAMES",
    "load_case",
    "load_extra_rows",
    "extra_row_draw",
    "wordnet_lemmas",
    "one_to_one",
]

#: Data sources :func:`load_case` knows.
DATA_SOURCES = ("fashion-mnist", "tuxpaint", "wordnet-glosses", "wordnet-lemmas", "freedict")

#: Keys of a case's ``extra_unpaired`` table besides ``data`` and ``per_side``: the sizes of its data source.
EXTRA_SIZE_KEYS = ("fmnist_train", "fmnist_test", "glosses_per_category", "n_lemmas", "n_words", "tux_limit")

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


def load_extra_rows(case: dict[str, Any], setup: dict[str, Any]) -> tuple[CaseData, int] | None:
    """The unpaired rows of another corpus a case adds (its ``extra_unpaired`` table), and how many per side.

    The table names a data source (``data``, one of :data:`DATA_SOURCES`), ``per_side`` (rows given to
    each side, at most half of the source's items, since the two sides get different halves) and, where
    they differ from ``setup``, that source's sizes (:data:`EXTRA_SIZE_KEYS`). Its items are embedded by
    the case's own two models.

    Parameters
    ----------
    case : dict
        One entry of ``setup["cases"]``.
    setup : dict
        The experiment's ``[setup]`` table.

    Returns
    -------
    (CaseData, int) or None
        The other corpus embedded by both models and ``per_side``; ``None`` when the case has no
        ``extra_unpaired`` table.

    Raises
    ------
    ValueError
        On a table that is not one, an unknown key, an unknown data source or a ``per_side`` that is not a
        whole number from 1 to half of the source's items.
    """
    table = case.get("extra_unpaired")
    if table is None:
        return None
    where = f"case {case.get('name', case.get('key'))!r}: extra_unpaired"
    if not isinstance(table, dict):
        raise ValueError(
            f'{where} must be a table such as {{ data = "wordnet-glosses", per_side = 4000 }}, got {table!r:.60}.'
        )
    unknown = sorted(set(table) - {"data", "per_side", *EXTRA_SIZE_KEYS})
    if unknown:
        raise ValueError(
            f"{where} has unknown keys {unknown}; it takes data, per_side and the data sizes {list(EXTRA_SIZE_KEYS)}."
        )
    per_side = table.get("per_side")
    if isinstance(per_side, bool) or not isinstance(per_side, int) or per_side < 1:
        raise ValueError(f"{where}.per_side must be a whole number of rows per side, 1 or more, got {per_side!r}.")
    other = {"key": case.get("key"), "data": table.get("data"), "source": case["source"], "target": case["target"]}
    sizes = {k: v for k, v in table.items() if k in EXTRA_SIZE_KEYS}
    extra = load_case(other, {**setup, **sizes})
    if per_side > len(extra.X) // 2:
        raise ValueError(
            f"{where}.per_side is at most {len(extra.X) // 2} (half of the {len(extra.X)} items of "
            f"{extra.description}: each side gets a different half), got {per_side}; lower it."
        )
    return extra, per_side


def extra_row_draw(n_items: int, per_side: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Which of another corpus's ``n_items`` rows the source side and the target side get, for one seed.

    The items are permuted with the seed; the source takes ``per_side`` from the first half, the target
    ``per_side`` from the second, so no item is on both sides.

    Examples
    --------
    >>> src, tgt = extra_row_draw(10, 3, seed=0)
    >>> len(src), len(tgt), set(src.tolist()) & set(tgt.tolist())
    (3, 3, set())
    """
    if not 1 <= per_side <= n_items // 2:
        raise ValueError(f"per_side must be from 1 to {n_items // 2} (half of {n_items} items), got {per_side}.")
    order = np.random.default_rng(seed).permutation(n_items)
    half = n_items // 2
    return order[:per_side], order[half : half + per_side]
