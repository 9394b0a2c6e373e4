"""Network timeouts and the one bounded, atomic file download latentalign performs itself.

Every request latentalign starts waits at most a *connect* timeout for the connection and a *read*
timeout for each block of the answer. Both come from one environment variable, read at each call:

``LATENTALIGN_NETWORK_TIMEOUT``
    ``"20"`` sets both timeouts to 20 seconds; ``"5,120"`` sets connect 5 s, read 120 s. Unset or
    empty: connect 10 s, read 30 s.

:func:`download` writes to a temporary file beside the destination and renames it into place only
once the whole body has arrived and passed the caller's check; on any failure (including a timeout
or ``KeyboardInterrupt``) the temporary file is removed, so no partial file is ever left behind.
"""

from __future__ import annotations

import http.client
import math
import os
import shutil
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentalign.exceptions import DataUnavailableError

__all__ = ["TIMEOUT_ENV", "Timeouts", "network_timeouts", "short_cause", "download"]

#: The environment variable holding the network timeouts, in seconds.
TIMEOUT_ENV = "LATENTALIGN_NETWORK_TIMEOUT"
_DEFAULT_CONNECT = 10.0
_DEFAULT_READ = 30.0


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection (``connect``) and for each block of an answer (``read``)."""

    connect: float
    read: float

    def describe(self) -> str:
        """The timeouts in words, with the variable that changes them."""
        return f"connect timeout {self.connect:g} s, read timeout {self.read:g} s; set {TIMEOUT_ENV} to change them"


def network_timeouts() -> Timeouts:
    """The timeouts configured by ``LATENTALIGN_NETWORK_TIMEOUT`` (connect 10 s, read 30 s if unset).

    Returns
    -------
    Timeouts
        ``connect`` and ``read`` in seconds.

    Raises
    ------
    ValueError
        The variable is not one positive number or two separated by a comma.

    Examples
    --------
    >>> import os
    >>> os.environ.pop(TIMEOUT_ENV, None) and None
    >>> network_timeouts()
    Timeouts(connect=10.0, read=30.0)
    >>> os.environ[TIMEOUT_ENV] = "5,120"
    >>> network_timeouts()
    Timeouts(connect=5.0, read=120.0)
    >>> os.environ[TIMEOUT_ENV] = "2"
    >>> network_timeouts()
    Timeouts(connect=2.0, read=2.0)
    >>> del os.environ[TIMEOUT_ENV]
    """
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return Timeouts(_DEFAULT_CONNECT, _DEFAULT_READ)
    parts = [p.strip() for p in raw.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"{TIMEOUT_ENV} must be seconds ('20') or connect,read seconds ('5,120'), all finite and > 0; "
            f"got {raw!r}. Fix the value or unset it for the defaults (connect 10 s, read 30 s)."
        )
    return Timeouts(values[0], values[-1])


def short_cause(exc: BaseException) -> str:
    """One short line saying why a request failed: the error's first line and its type.

    Examples
    --------
    >>> short_cause(TimeoutError("timed out"))
    'timed out (TimeoutError)'
    >>> import urllib.error
    >>> short_cause(urllib.error.URLError(OSError(-2, "Name or service not known")))
    '[Errno -2] Name or service not known (URLError)'
    """
    reason = (
        exc.reason if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError) else exc
    )
    text = (str(reason).strip().splitlines() or [""])[0]
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{text} ({type(exc).__name__})" if text else type(exc).__name__


def _bounded(base: type[http.client.HTTPConnection], read: float) -> type[http.client.HTTPConnection]:
    """``base`` whose socket switches from the connect timeout to the read timeout once connected."""

    class Connection(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            self.sock.settimeout(read)

    return Connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read: float) -> None:
        super().__init__()
        self._read = read

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_bounded(http.client.HTTPConnection, self._read), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read: float) -> None:
        self._ssl = ssl.create_default_context()
        super().__init__(context=self._ssl)
        self._read = read

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_bounded(http.client.HTTPSConnection, self._read), req, context=self._ssl)


def download(
    url: str,
    dest: str | Path,
    *,
    check: Callable[[Path], Any] | None = None,
    timeouts: Timeouts | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically, with connect and read timeouts.

    Parameters
    ----------
    url : str
        An ``http://`` or ``https://`` URL (proxies from the usual ``*_proxy`` variables apply).
    dest : str or Path
        The final file; its directory is created when missing.
    check : callable, optional
        Called with the complete temporary file before it is renamed; raise to refuse it.
    timeouts : Timeouts, optional
        Defaults to :func:`network_timeouts`.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DataUnavailableError
        The server could not be reached, did not answer in time, answered with an HTTP error or sent
        fewer bytes than it announced; the message gives the cause and the timeouts. Whatever
        ``check`` raises propagates. In every failing case no file is left at ``dest`` or beside it.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> download("http://127.0.0.1:9/none", folder / "f.bin", timeouts=Timeouts(2, 2))
    Traceback (most recent call last):
    ...
    latentalign.exceptions.DataUnavailableError: could not download http://127.0.0.1:9/none: ...
    >>> list(folder.iterdir())
    []
    """
    timeouts = network_timeouts() if timeouts is None else timeouts
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    opener = urllib.request.build_opener(_HTTPHandler(timeouts.read), _HTTPSHandler(timeouts.read))
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with opener.open(url, timeout=timeouts.connect) as response:
                    announced = response.headers.get("Content-Length")
                    shutil.copyfileobj(response, out, 1 << 20)
            except (OSError, http.client.HTTPException) as exc:
                raise DataUnavailableError(
                    f"could not download {url}: {short_cause(exc)}; {timeouts.describe()}."
                ) from exc
            received = out.tell()
        if announced is not None and announced.isdigit() and received != int(announced):
            raise DataUnavailableError(
                f"could not download {url}: the server announced {announced} bytes but sent {received} "
                "(connection closed early); try again later."
            )
        if check is not None:
            check(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
