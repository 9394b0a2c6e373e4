"""Loaders for the real datasets used in the experiments.

Each loader returns a small frozen dataclass holding arrays/lists and an ``ids`` list of stable
string ids. Datasets shipped in Debian packages are fetched on first use: the ``.deb`` is downloaded
from a Debian mirror by URL with a known SHA-256 and unpacked in pure Python (never installed; any
OS) into ``latentalign._paths.data_dir()/<source>/``, and the files are verified against
``latentalign/datasets/checksums.json``; pass ``download=False`` to fail instead. ``python data/fetch.py
all`` fetches everything ahead of time.
"""

from __future__ import annotations

from latentalign.datasets._fetch import SOURCES, fetch, verify
from latentalign.datasets._registry import list_datasets, load_dataset
from latentalign.datasets.freedict import WordPairs, load_freedict_en_fr
from latentalign.datasets.imagenet import ImageNetClasses, load_imagenet_classes
from latentalign.datasets.images import ImageDataset, load_digits, load_fashion_mnist, load_mnist
from latentalign.datasets.tuxpaint import TuxPaintStamps, load_rgb, load_tuxpaint, parse_caption_file
from latentalign.datasets.wordnet import LEXNAMES, WordNetGlosses, load_wordnet_glosses

__all__ = [
    "SOURCES",
    "fetch",
    "verify",
    "list_datasets",
    "load_dataset",
    "ImageDataset",
    "load_fashion_mnist",
    "load_mnist",
    "load_digits",
    "TuxPaintStamps",
    "load_tuxpaint",
    "parse_caption_file",
    "load_rgb",
    "WordPairs",
    "load_freedict_en_fr",
    "WordNetGlosses",
    "load_wordnet_glosses",
    "LEXNAMES",
    "ImageNetClasses",
    "load_imagenet_classes",
]
