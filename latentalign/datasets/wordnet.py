"""WordNet 3.0 synset glosses labelled with their lexicographer category (Debian ``wordnet-base``).

A line of ``data.{noun,verb,adj,adv}`` reads ``offset lex_filenum ss_type w_cnt word lex_id ...
| gloss``: field 2 is the lexicographer file number (0-44, the names below, from the
``lexnames(5WN)`` manual page; the package ships no ``lexnames`` file), ``w_cnt`` is hexadecimal
and each word is followed by its hexadecimal ``lex_id``. Licence header lines start with two spaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from latentalign.datasets._fetch import ensure
from latentalign.exceptions import PersistenceError

__all__ = ["WordNetGlosses", "load_wordnet_glosses", "LEXNAMES"]

#: Lexicographer file names, indexed by lex_filenum (``lexnames(5WN)``).
LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
_POS = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")


@dataclass(frozen=True, eq=False)
class WordNetGlosses:
    """One row per synset.

    Attributes
    ----------
    ids : list of str
        ``<pos letter><8-digit offset>`` (``"n02084071"``: the ImageNet wnid form for nouns).
    glosses : list of str
        Definition, often followed by ``; "example sentences"``.
    lemmas : list of tuple of str
        The synset's words, underscores turned into spaces (``"physical entity"``).
    labels : ndarray of shape (n,), int64
        Lexicographer file number, an index into ``category_names``.
    category_names : tuple of str
        The 45 lexicographer category names (``"noun.animal"``, ...).
    """

    ids: list[str]
    glosses: list[str]
    lemmas: list[tuple[str, ...]]
    labels: np.ndarray
    category_names: tuple[str, ...] = LEXNAMES

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def categories(self) -> list[str]:
        """Category name of each synset."""
        return [self.category_names[i] for i in self.labels]


def _parse_line(line: str, letter: str) -> tuple[str, str, tuple[str, ...], int]:
    fields, _, gloss = line.partition(" | ")
    parts = fields.split()
    offset, lexfile, count = parts[0], int(parts[1]), int(parts[3], 16)
    words = tuple(_ADJ_MARKER.sub("", w).replace("_", " ") for w in parts[4 : 4 + 2 * count : 2])
    return f"{letter}{offset}", gloss.strip(), words, lexfile


def load_wordnet_glosses(
    pos: tuple[str, ...] | list[str] = ("noun", "verb", "adj", "adv"), *, download: bool = True
) -> WordNetGlosses:
    """Load WordNet 3.0 glosses with their lexicographer category and lemma words.

    Parameters
    ----------
    pos : sequence of {"noun", "verb", "adj", "adv"}
        Parts of speech to load (all four give 117,659 synsets in 45 categories).
    download : bool, default True
        Fetch the Debian package when the files are missing.
    """
    pos = (pos,) if isinstance(pos, str) else tuple(pos)
    unknown = [p for p in pos if p not in _POS]
    if unknown or not pos:
        raise ValueError(f"pos must be a non-empty subset of {tuple(_POS)}, got {pos!r}.")
    root = ensure("wordnet", download=download)
    ids, glosses, lemmas, labels = [], [], [], []
    for part in pos:
        with open(root / f"data.{part}", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("  "):
                    continue
                synset_id, gloss, words, lexfile = _parse_line(line, _POS[part])
                if not 0 <= lexfile < len(LEXNAMES):
                    raise PersistenceError(
                        f"data.{part}: synset {synset_id} has lexicographer file {lexfile}, "
                        f"outside 0..{len(LEXNAMES) - 1}."
                    )
                ids.append(synset_id)
                glosses.append(gloss)
                lemmas.append(words)
                labels.append(lexfile)
    return WordNetGlosses(ids, glosses, lemmas, np.asarray(labels, dtype=np.int64))
