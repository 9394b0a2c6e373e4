"""Progress bars of the long asset steps: the model archive unpack and the dataset downloads (pooch's bar),
shown on stderr when progress is on and silent with ``LATENTALIGN_PROGRESS=0`` (``--no-progress``)."""

from __future__ import annotations

import functools
import http.server
import io
import logging
import threading
import zipfile
from pathlib import Path

import pytest

from latentalign._progress import PROGRESS_ENV
from latentalign.datasets import _fetch
from latentalign.encoders._assets import extract_zip
from latentalign.exceptions import DataUnavailableError, PersistenceError


def _zip(members: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("on", [True, False])
def test_extract_zip_shows_a_byte_bar_only_when_progress_is_on(tmp_path, capsys, monkeypatch, on):
    monkeypatch.setenv(PROGRESS_ENV, "1" if on else "0")
    payload = bytes(range(256)) * 8192  # 2 MiB
    archive = _zip({"model/weights.bin": payload, "model/sub/config.json": b"{}", "model/desktop.ini": b"x"})
    assert extract_zip(archive, tmp_path, strip="model", desc="unpacking tiny-model") == len(payload) + 2
    assert (tmp_path / "weights.bin").read_bytes() == payload and (tmp_path / "sub" / "config.json").is_file()
    assert not (tmp_path / "desktop.ini").exists()
    err = capsys.readouterr().err
    if on:
        assert "unpacking tiny-model" in err and "2.00M" in err, err
    else:
        assert err == ""


def test_extract_zip_refuses_paths_out_of_the_destination(tmp_path):
    with pytest.raises(PersistenceError, match=r"unsafe path '\.\./evil' in the archive \(unpacking\)"):
        extract_zip(_zip({"../evil": b"x"}), tmp_path / "dest")
    assert not (tmp_path / "evil").exists()


@pytest.fixture
def local_mirror(tmp_path):
    """An HTTP server on localhost serving ``tmp_path / "mirror"`` (a stand-in Debian mirror)."""
    root = tmp_path / "mirror"

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("on", [True, False])
def test_a_download_shows_pooch_bar_only_when_progress_is_on(local_mirror, tmp_path, capsys, monkeypatch, on):
    root, url = local_mirror
    entry = _fetch._manifest()["freedict_fra_eng"]["deb"]
    served = root / "debian" / entry["path"]
    served.parent.mkdir(parents=True)
    served.write_bytes(b"not the pinned package " * 4096)  # downloaded in full, then refused by its sha256
    monkeypatch.setenv("LATENTALIGN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(_fetch.MIRRORS_ENV, f"{url}/debian")
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get to fall back on
    monkeypatch.setenv(PROGRESS_ENV, "1" if on else "0")
    with pytest.raises(DataUnavailableError, match="SHA256 hash of downloaded file"):
        _fetch.fetch("freedict_fra_eng")
    err = capsys.readouterr().err
    bar = "100%|"  # pooch's tqdm bar (pooch's own "Downloading data from ..." log line is not a bar)
    assert (bar in err) == on, err
    if on:
        assert "94.2k/94.2k" in err, err  # every one of the 94,208 bytes served


def test_fetch_logs_what_it_fetches_at_info(local_mirror, tmp_path, caplog, monkeypatch):
    root, url = local_mirror
    monkeypatch.setenv("LATENTALIGN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(_fetch.MIRRORS_ENV, f"{url}/debian")  # serves nothing: a 404
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(PROGRESS_ENV, "0")
    with caplog.at_level(logging.INFO, logger="latentalign"), pytest.raises(DataUnavailableError):
        _fetch.fetch("freedict_fra_eng")
    assert [r.getMessage() for r in caplog.records] == [
        f"fetching 'freedict_fra_eng' (Debian package dict-freedict-fra-eng) into {Path(tmp_path / 'data')}"
        "/freedict_fra_eng"
    ]
