"""What the command line shows besides results: log lines, Python warnings as one line, progress bars.

The library logs to ``logging.getLogger("latentalign")`` and never configures it (it only has a
``NullHandler``). The command line, and only it, attaches a handler for the duration of one run
(:func:`configure_output`), routes Python warnings into one clean ``Warning: <category>: <message>`` line,
and turns progress bars off for ``--no-progress``: ours (:mod:`latentalign._progress`), tqdm's defaults,
and those of transformers and huggingface_hub.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

from latentalign._progress import PROGRESS_ENV

__all__ = ["configure_output", "silence_progress", "EchoHandler", "LEVELS", "QUIET_PROGRESS_ENV"]

#: The ``latentalign`` logger's level per verbosity: -1 ``--quiet``, 0 default, 1 ``--verbose``.
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}
#: Environment variables that silence progress bars for ``--no-progress`` (ours, tqdm's default, the Hub's).
QUIET_PROGRESS_ENV = {PROGRESS_ENV: "0", "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


class EchoHandler(logging.Handler):
    """Writes each record as one line on the *current* ``sys.stderr`` (test runners swap it per run).

    INFO and DEBUG lines are the message itself; WARNING and above are prefixed with their level name
    (``Warning: ...``, ``Error: ...``).
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if getattr(record, "prefixed", False):  # a Python warning, already "Warning: <category>: ..."
                message = " ".join(record.getMessage().split())
            elif record.levelno >= logging.WARNING:
                message = f"{record.levelname.capitalize()}: " + " ".join(self.format(record).split())
            else:
                message = self.format(record)
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
        except Exception:  # a broken stderr must not turn a log line into a crash
            self.handleError(record)


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    text = " ".join(str(message).split())
    logging.getLogger("latentalign").warning("Warning: %s: %s", category.__name__, text, extra={"prefixed": True})


def _silence_third_party_bars() -> Callable[[], None]:
    """Turn off the bars of libraries already imported (env variables cover those imported later)."""
    undo: list[Callable[[], None]] = []
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        if hf_logging.is_progress_bar_enabled():
            hf_logging.disable_progress_bar()
            undo.append(hf_logging.enable_progress_bar)
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import utils as hub_utils

        if not hub_utils.are_progress_bars_disabled():
            hub_utils.disable_progress_bars()
            undo.append(hub_utils.enable_progress_bars)

    def undo_all() -> None:
        for func in undo:
            func()

    return undo_all


def silence_progress() -> Callable[[], None]:
    """Turn every progress bar off (ours, tqdm's default, transformers', huggingface_hub's); return the undo.

    Examples
    --------
    >>> from latentalign._progress import progress_enabled
    >>> undo = silence_progress()
    >>> progress_enabled()
    False
    >>> undo()
    >>> progress_enabled()
    True
    """
    env_before = {name: os.environ.get(name) for name in QUIET_PROGRESS_ENV}
    os.environ.update(QUIET_PROGRESS_ENV)
    undo_bars = _silence_third_party_bars()

    def restore() -> None:
        for name, value in env_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        undo_bars()

    return restore


def configure_output(*, verbosity: int = 0, progress: bool = True) -> Callable[[], None]:
    """Set up logging, warnings and progress bars for one command-line run; return the function undoing it.

    Parameters
    ----------
    verbosity : {-1, 0, 1}
        ``--quiet`` (WARNING), default (INFO) or ``--verbose`` (DEBUG) for ``logging.getLogger("latentalign")``.
    progress : bool
        ``False`` turns off progress bars (``--no-progress``).

    Returns
    -------
    callable
        Restores the logger, ``warnings.showwarning``, the environment and third-party bar settings.

    Examples
    --------
    >>> import io, contextlib, warnings
    >>> restore = configure_output(verbosity=0)
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     logging.getLogger("latentalign.example").info("fitting on %d pairs", 300)
    ...     warnings.warn("weights are\\nill-conditioned", UserWarning)
    >>> restore()
    >>> print(err.getvalue().strip())
    fitting on 300 pairs
    Warning: UserWarning: weights are ill-conditioned
    """
    logger = logging.getLogger("latentalign")
    saved = (logger.level, logger.propagate, warnings.showwarning)
    handler = EchoHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s" if verbosity > 0 else "%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(LEVELS[max(-1, min(1, verbosity))])
    logger.propagate = False  # the one handler above; a root handler would print every line twice
    warnings.showwarning = _show_warning
    undo_bars = silence_progress() if not progress else None

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        warnings.showwarning = saved[2]
        if undo_bars is not None:
            undo_bars()

    return restore
