"""The cache root: ``$LATENTALIGN_HOME``, else the platform's user cache directory, an older cache kept readable."""

from __future__ import annotations

import sys

import pytest

from latentalign._paths import data_dir, embeddings_dir, home_dir, legacy_home_dir, models_dir

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_CACHE_HOME is a Linux convention")


@pytest.fixture
def clean_home(tmp_path, monkeypatch):
    """A user with no latentalign cache yet and no overrides."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))
    for name in ("LATENTALIGN_HOME", "LATENTALIGN_DATA_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_latentalign_home_moves_everything(clean_home, monkeypatch):
    monkeypatch.setenv("LATENTALIGN_HOME", str(clean_home / "la"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(clean_home / "xdg"))
    assert home_dir() == clean_home / "la"
    assert (data_dir(), models_dir(), embeddings_dir()) == tuple(
        clean_home / "la" / d for d in ("data", "models", "embeddings")
    )


@linux_only
def test_xdg_cache_home_is_honoured(clean_home, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(clean_home / "xdg"))
    assert home_dir() == clean_home / "xdg" / "latentalign"
    assert data_dir() == clean_home / "xdg" / "latentalign" / "data"


@linux_only
def test_the_default_on_linux_is_the_familiar_cache_folder(clean_home):
    assert home_dir() == clean_home / "home" / ".cache" / "latentalign" == legacy_home_dir()


@linux_only
def test_an_older_cache_stays_in_use_until_the_platform_folder_exists(clean_home, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(clean_home / "xdg"))
    legacy_home_dir().mkdir(parents=True)
    assert home_dir() == legacy_home_dir()  # nothing fetched before is lost
    (clean_home / "xdg" / "latentalign").mkdir(parents=True)
    assert home_dir() == clean_home / "xdg" / "latentalign"  # once moved (or created), the platform folder wins
