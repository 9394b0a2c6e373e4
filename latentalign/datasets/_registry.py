"""Name -> loader registry: ``list_datasets()`` and ``load_dataset(name, **kw)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from latentalign.datasets.freedict import load_freedict_en_fr
from latentalign.datasets.imagenet import load_imagenet_classes
from latentalign.datasets.images import load_digits, load_fashion_mnist, load_mnist
from latentalign.datasets.tuxpaint import load_tuxpaint
from latentalign.datasets.wordnet import load_wordnet_glosses

__all__ = ["list_datasets", "load_dataset"]

_LOADERS: dict[str, Callable[..., Any]] = {
    "digits": load_digits,
    "fashion_mnist": load_fashion_mnist,
    "freedict_en_fr": load_freedict_en_fr,
    "imagenet_classes": load_imagenet_classes,
    "mnist": load_mnist,
    "tuxpaint": load_tuxpaint,
    "wordnet_glosses": load_wordnet_glosses,
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted."""
    return sorted(_LOADERS)


def load_dataset(name: str, **kwargs: Any) -> Any:
    """Load dataset ``name`` with the keyword arguments of its loader.

    Examples
    --------
    >>> from latentalign.datasets import load_dataset
    >>> digits = load_dataset("digits")
    >>> digits.images.shape, len(set(digits.ids))
    ((1797, 8, 8), 1797)
    """
    if name not in _LOADERS:
        raise ValueError(f"Unknown dataset {name!r}. Available datasets: {', '.join(list_datasets())}.")
    return _LOADERS[name](**kwargs)
