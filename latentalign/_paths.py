"""Where latentalign keeps fetched data, unpacked models and cached embeddings.

Everything lives under one root, ``$LATENTALIGN_HOME`` (default ``~/.cache/latentalign``):
``data/`` for fetched datasets, ``models/`` for unpacked model archives, ``embeddings/`` for the
embedding store cache. Nothing is created at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["home_dir", "data_dir", "models_dir", "embeddings_dir"]


def home_dir() -> Path:
    """Return the root cache directory (``$LATENTALIGN_HOME`` or ``~/.cache/latentalign``)."""
    env = os.environ.get("LATENTALIGN_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "latentalign"


def data_dir() -> Path:
    """Directory for fetched datasets (``$LATENTALIGN_DATA_DIR`` overrides ``<home>/data``)."""
    env = os.environ.get("LATENTALIGN_DATA_DIR")
    return Path(env).expanduser() if env else home_dir() / "data"


def models_dir() -> Path:
    """Directory for unpacked model archives."""
    return home_dir() / "models"


def embeddings_dir() -> Path:
    """Directory for the content-keyed embedding cache."""
    return home_dir() / "embeddings"
