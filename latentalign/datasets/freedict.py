"""English<->French single-word translation pairs from the FreeDict dictionaries (dictd format).

A dictd dictionary is a ``.index`` file (``headword<TAB>offset<TAB>length``, the numbers in
dictd's base64) and a ``.dict.dz`` file (gzip-compatible ``dictzip``) holding the entries. An
entry reads::

    abandon /əbændən/            <- headword, optional /phonetics/ and <part of speech>
    1. abandonner, délaisser     <- numbered senses, or one unnumbered line of translations
    2.  [cul] giblets            <- [domain] tags and (notes) are removed
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

from latentalign.datasets._fetch import ensure

__all__ = ["WordPairs", "load_freedict_en_fr", "read_dictd"]

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@dataclass(frozen=True, eq=False)
class WordPairs:
    """A bilingual lexicon of single-word translation pairs.

    Attributes
    ----------
    ids : list of str
        ``"<source>|<target>"`` for each pair.
    pairs : list of tuple of (str, str)
        ``(source word, target word)``, lowercased, sorted, without duplicates.
    source_lang, target_lang : str
        ISO 639-1 codes (``"en"``, ``"fr"``).
    """

    ids: list[str]
    pairs: list[tuple[str, str]]
    source_lang: str
    target_lang: str

    def __len__(self) -> int:
        return len(self.pairs)


def _b64(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + _B64.index(char)
    return value


def read_dictd(index: Path, dictfile: Path) -> list[tuple[str, list[str]]]:
    """Entries of a dictd dictionary as ``(headword, translations)``, metadata entries skipped."""
    with gzip.open(dictfile, "rb") as handle:
        data = handle.read()
    entries, seen = [], set()
    for line in index.read_text(encoding="utf-8").splitlines():
        word, offset, length = line.split("\t")
        if word.startswith("00database") or (offset, length) in seen:
            continue
        seen.add((offset, length))
        start = _b64(offset)
        entries.append(_parse_entry(data[start : start + _b64(length)].decode("utf-8")))
    return entries


def _parse_entry(text: str) -> tuple[str, list[str]]:
    head, *senses = text.strip("\n").split("\n")
    headword = re.split(r" /| <", head, maxsplit=1)[0].strip()
    translations = []
    for sense in senses:
        sense = re.sub(r"^\s*\d+\.\s*", "", sense)
        sense = re.sub(r"\[[^\]]*\]|\([^)]*\)", "", sense)
        translations += [t.strip() for t in re.split(r"[,;]", sense) if t.strip()]
    return headword, translations


def _pairs(source: str, *, reverse: bool, download: bool) -> set[tuple[str, str]]:
    root = ensure(source, download=download)
    stem = source.replace("_", "-")
    out = set()
    for head, translations in read_dictd(root / f"{stem}.index", root / f"{stem}.dict.dz"):
        for trans in translations:
            a, b = head.lower(), trans.lower()
            if a.isalpha() and b.isalpha():
                out.add((b, a) if reverse else (a, b))
    return out


def load_freedict_en_fr(*, include_fra_eng: bool = False, download: bool = True) -> WordPairs:
    """English -> French single-word pairs from FreeDict (Debian ``dict-freedict-eng-fra``).

    Every (headword, translation) of every sense is a candidate pair. Filtering: both sides are
    lowercased and kept only when they are a single word of letters (``str.isalpha``: no spaces,
    hyphens, apostrophes, digits or dots), so ``"chou-fleur"`` and ``"a few"`` are dropped and
    ``"élève"`` is kept. Duplicates are removed; a word may have several translations.

    Parameters
    ----------
    include_fra_eng : bool, default False
        Also add the French -> English dictionary (``dict-freedict-fra-eng``), its pairs turned
        round to (en, fr).
    download : bool, default True
        Fetch the Debian packages when the files are missing.
    """
    pairs = _pairs("freedict_eng_fra", reverse=False, download=download)
    if include_fra_eng:
        pairs |= _pairs("freedict_fra_eng", reverse=True, download=download)
    ordered = sorted(pairs)
    return WordPairs([f"{en}|{fr}" for en, fr in ordered], ordered, "en", "fr")
