"""Where latentalign keeps fetched data, unpacked models and cached embeddings.

Everything lives under one root, :func:`home_dir`: ``$LATENTALIGN_HOME`` when set, else the user cache
directory of the platform for ``latentalign`` (``platformdirs.user_cache_dir``: ``$XDG_CACHE_HOME/latentalign``
or ``~/.cache/latentalign`` on Linux, ``~/Library/Caches/latentalign`` on macOS,
``%LOCALAPPDATA%\\latentalign\\Cache`` on Windows). A cache written by an older latentalign at
``~/.cache/latentalign`` keeps being used while that platform directory does not exist. Inside it:
``data/`` for fetched datasets, ``models/`` for unpacked model archives, ``embeddings/`` for the
embedding store cache. Nothing is created at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["HOME_ENV", "home_dir", "data_dir", "models_dir", "embeddings_dir", "legacy_home_dir"]

#: The environment variable that moves the whole cache.
HOME_ENV = "LATENTALIGN_HOME"


def legacy_home_dir() -> Path:
    """The cache root of latentalign before it followed the platform's conventions (``~/.cache/latentalign``)."""
    return Path.home() / ".cache" / "latentalign"


def home_dir() -> Path:
    """Return the root cache directory.

    ``$LATENTALIGN_HOME`` if set; else ``platformdirs.user_cache_dir("latentalign")``, which honours
    ``XDG_CACHE_HOME`` on Linux; else, when only the older ``~/.cache/latentalign`` exists, that one, so
    existing caches stay readable (move it to the platform directory to switch).

    Examples
    --------
    >>> import os
    >>> saved = os.environ.get("LATENTALIGN_HOME")
    >>> os.environ["LATENTALIGN_HOME"] = "/tmp/la-home"
    >>> home_dir().as_posix()
    '/tmp/la-home'
    >>> data_dir().name, models_dir().name, embeddings_dir().name
    ('data', 'models', 'embeddings')
    >>> _ = os.environ.pop("LATENTALIGN_HOME") if saved is None else os.environ.update(LATENTALIGN_HOME=saved)
    """
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    platform = Path(platformdirs.user_cache_dir("latentalign", appauthor=False))
    legacy = legacy_home_dir()
    if not platform.exists() and legacy.is_dir():
        return legacy
    return platform


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
