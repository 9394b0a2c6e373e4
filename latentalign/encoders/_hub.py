"""Bounded Hugging Face hub access for the adapters that load hub names.

transformers, sentence-transformers, open_clip and timm all fetch through ``huggingface_hub``, whose
shared HTTP client waits forever on some requests and whose downloads retry network errors with
backoff (half a minute or more when DNS fails). :func:`load_from_hub` wraps a load that may fetch:

1. It asks the hub endpoint (``HF_ENDPOINT``) once: one ``HEAD`` with latentalign's timeouts
   (:func:`latentalign._network.network_timeouts`), no retry.
2. The hub answered: the load runs with every hub request bounded. Requests the library sends
   without a timeout get latentalign's; when ``LATENTALIGN_NETWORK_TIMEOUT`` is set, it also replaces
   the hub's own metadata/download timeouts (10 s each by default) unless ``HF_HUB_ETAG_TIMEOUT`` /
   ``HF_HUB_DOWNLOAD_TIMEOUT`` are set; plain ``urllib`` downloads inside the libraries get the read
   timeout as the socket default. Once a request went unanswered (timeout, network error), the hub's
   retries of it (up to six, 60 s each) are refused and the rest of the load reads the cache.
3. It did not (DNS failure, connection refused, no answer in time): the load runs in the hub's offline
   mode, from the local cache only, so nothing waits or retries; a model that is not cached raises
   :class:`~latentalign.exceptions.DataUnavailableError` in one line naming ``latentalign list models``.

With ``HF_HUB_OFFLINE=1`` the probe is skipped and the load reads the cache only. The settings changed
for the load (the client's request hooks, the hub's timeout and offline constants, the socket default
timeout) are process-wide while it runs and restored afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar

from latentalign._network import TIMEOUT_ENV, Timeouts, network_timeouts, short_cause
from latentalign.exceptions import DataUnavailableError

__all__ = ["load_from_hub", "hub_unavailable"]

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: The hub's timeout constants and the environment variables a user sets them with.
_HUB_TIMEOUTS = (("HF_HUB_ETAG_TIMEOUT", "HF_HUB_ETAG_TIMEOUT"), ("HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"))


def hub_unavailable(name: str, reason: str) -> DataUnavailableError:
    """The one-line error for a hub model that cannot be loaded, naming the offline models.

    Examples
    --------
    >>> err = hub_unavailable("some-org/some-model", "the hub did not answer")
    >>> "`latentalign list models`" in str(err) and "minilm" in str(err)
    True
    """
    from latentalign.encoders.registry import list_encoders  # the registry imports the adapters lazily

    return DataUnavailableError(
        f"could not load {name!r}: {reason}. Hub models need network or a filled Hugging Face cache; "
        f"offline, use a registered model (`latentalign list models`): {', '.join(list_encoders())}."
    )


def _errors() -> tuple[type[BaseException], ...]:
    """OSError (the hub's own errors derive from it) plus the HTTP client's transport errors."""
    found: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx", "requests"):
        try:
            lib = importlib.import_module(module)
        except ImportError:
            continue
        error = getattr(lib, "HTTPError", None) or getattr(lib, "RequestException", None)
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


def _submodule(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _probe(hub: ModuleType, constants: Any, timeouts: Timeouts) -> str | None:
    """None when the hub endpoint answers one HEAD in time (any status), else the short cause."""
    session = hub.get_session()
    lib = type(session).__module__.split(".")[0]
    timeout: Any = (timeouts.connect, timeouts.read)
    if lib in ("httpx", "httpx2"):
        timeout = importlib.import_module(lib).Timeout(timeouts.read, connect=timeouts.connect, pool=timeouts.connect)
    try:
        session.request("HEAD", constants.ENDPOINT + "/", timeout=timeout)
    except Exception as exc:  # any failure means "not reachable now": the cache is tried, the cause reported
        return short_cause(exc)
    return None


@contextlib.contextmanager
def _bounded_requests(hub: ModuleType, constants: Any, timeouts: Timeouts) -> Iterator[None]:
    """Bound the hub client's requests, and stop its retries once a request went unanswered.

    Requests without a timeout get latentalign's. A request sent again while its previous attempt got
    no answer (a retry after a timeout or a network error) switches the hub to offline mode for the
    rest of the load instead: the hub then reads its cache without waiting again.
    """
    session = hub.get_session()
    hooks = getattr(session, "event_hooks", None)
    if not isinstance(hooks, dict):  # a client without request hooks (requests-based hub versions pass timeouts)
        yield
        return
    limits = {"connect": timeouts.connect, "read": timeouts.read, "write": timeouts.read, "pool": timeouts.connect}
    offline_error = getattr(_submodule("huggingface_hub.errors"), "OfflineModeIsEnabled", ConnectionError)
    unanswered: set[tuple[str, str]] = set()

    def bound(request: Any) -> None:
        key = (request.method, str(request.url))
        if key in unanswered:
            constants.HF_HUB_OFFLINE = True  # restored by load_from_hub
            raise offline_error(f"{request.url} did not answer; latentalign does not retry, the cache is read instead")
        unanswered.add(key)
        current = request.extensions.get("timeout")
        if isinstance(current, dict):
            request.extensions["timeout"] = {**current, **{k: v for k, v in limits.items() if current.get(k) is None}}

    def answered(response: Any) -> None:
        unanswered.discard((response.request.method, str(response.request.url)))

    session.event_hooks = {
        "request": [*hooks.get("request", []), bound],
        "response": [*hooks.get("response", []), answered],
    }
    try:
        yield
    finally:
        now = session.event_hooks
        session.event_hooks = {
            "request": [h for h in now.get("request", []) if h is not bound],
            "response": [h for h in now.get("response", []) if h is not answered],
        }


@contextlib.contextmanager
def _constants(constants: Any, values: dict[str, Any]) -> Iterator[None]:
    saved = {name: getattr(constants, name) for name in values if hasattr(constants, name)}
    for name in saved:
        setattr(constants, name, values[name])
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(constants, name, value)


@contextlib.contextmanager
def _socket_default(seconds: float) -> Iterator[None]:
    if socket.getdefaulttimeout() is not None:  # the user's own choice stays
        yield
        return
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(None)


def _run(load: Callable[[], T], name: str, reason: Callable[[], str | None]) -> T:
    try:
        return load()
    except DataUnavailableError:
        raise
    except _errors() as exc:
        cause, why = short_cause(exc), reason()
        raise hub_unavailable(name, f"{why}, and the local cache does not hold it ({cause})" if why else cause) from exc


def load_from_hub(load: Callable[[], T], name: str) -> T:
    """Run ``load()``, which may fetch ``name`` from the Hugging Face hub, with bounded network waits.

    Parameters
    ----------
    load : callable
        Builds the model (e.g. ``lambda: AutoModel.from_pretrained(name)``).
    name : str
        What is loaded, for the error message.

    Returns
    -------
    object
        What ``load`` returns.

    Raises
    ------
    DataUnavailableError
        The model could not be fetched or read from the cache (network errors, timeouts, missing
        repositories); one line with the cause and the offline alternative.

    Examples
    --------
    In the hub's offline mode nothing is requested; a model the cache lacks fails in one line:

    >>> from huggingface_hub import constants
    >>> saved, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    >>> load_from_hub(lambda: 42, "a-cached-model")
    42
    >>> load_from_hub(lambda: open("/nonexistent/config.json"), "some-org/some-model")
    Traceback (most recent call last):
    ...
    latentalign.exceptions.DataUnavailableError: could not load 'some-org/some-model': HF_HUB_OFFLINE is set, ...
    >>> constants.HF_HUB_OFFLINE = saved
    """
    try:
        hub = importlib.import_module("huggingface_hub")
        constants = importlib.import_module("huggingface_hub.constants")
    except ImportError:  # the adapter's library fails on its own with the extra to install
        return load()
    if constants.HF_HUB_OFFLINE:
        return _run(load, name, lambda: "HF_HUB_OFFLINE is set, so only the local cache is read")
    timeouts = network_timeouts()
    cause = _probe(hub, constants, timeouts)
    if cause is not None:
        logger.info("the hub %s did not answer (%s); loading %r from the local cache", constants.ENDPOINT, cause, name)
        with _constants(constants, {"HF_HUB_OFFLINE": True}):
            return _run(
                load, name, lambda: f"the hub {constants.ENDPOINT} did not answer ({cause}; {timeouts.describe()})"
            )
    overrides: dict[str, Any] = {"HF_HUB_OFFLINE": False}  # set by _bounded_requests when the hub stops answering
    if os.environ.get(TIMEOUT_ENV, "").strip():
        overrides.update({const: timeouts.read for const, env in _HUB_TIMEOUTS if env not in os.environ})
    with _bounded_requests(hub, constants, timeouts), _constants(constants, overrides), _socket_default(timeouts.read):
        stopped = f"the hub {constants.ENDPOINT} stopped answering ({timeouts.describe()})"
        return _run(load, name, lambda: stopped if constants.HF_HUB_OFFLINE else None)
