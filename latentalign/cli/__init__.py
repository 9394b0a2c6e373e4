"""The ``latentalign`` command line (typer): one module per command, registered on :data:`app`.

Commands compose library steps and hold no maths. Every command prints where its outputs went; commands
that compute results write one JSON run record. User errors print one ``Error: ...`` line and exit with 1,
usage errors exit with 2.

Importing this package imports neither typer nor a command: :func:`main` (the console script) checks that
the ``cli`` extra is installed first, and :data:`app` is built on first access.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

__all__ = ["app", "main", "COMMANDS", "MISSING_CLI"]

#: Command modules, in the order ``latentalign --help`` lists them; importing one registers its command.
COMMANDS = ("list", "embed", "fit", "evaluate", "diagnose", "stitch", "report", "demo", "run")
#: The one line printed when typer (the ``cli`` extra) is not installed.
MISSING_CLI = "Error: the latentalign command line needs typer, which is not installed: pip install 'latentalign[cli]'"


def _load_app() -> Any:
    application = importlib.import_module("latentalign.cli.application")
    for name in COMMANDS:
        importlib.import_module(f"latentalign.cli.{name}")
    return application.app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _load_app()
    raise AttributeError(f"module 'latentalign.cli' has no attribute {name!r}")


def main() -> None:
    """Console-script entry point (``latentalign``): one line instead of a traceback without the ``cli`` extra."""
    if importlib.util.find_spec("typer") is None:
        sys.stderr.write(MISSING_CLI + "\n")
        raise SystemExit(1)
    _load_app()(prog_name="latentalign")
