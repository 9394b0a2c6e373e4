"""The ``latentalign`` command line (typer): one module per command, registered on :data:`app`.

Commands compose library steps and hold no maths. Every command prints where its outputs went; commands
that compute results write one JSON run record. User errors print one ``Error: ...`` line and exit with 1.
"""

from __future__ import annotations

import importlib

from latentalign.cli.app import app, main

__all__ = ["app", "main", "COMMANDS"]

#: Command modules, in the order ``latentalign --help`` lists them; importing one registers its command.
COMMANDS = ("list", "embed", "fit", "evaluate", "diagnose", "stitch", "report", "demo", "run")

for _module in COMMANDS:
    importlib.import_module(f"latentalign.cli.{_module}")
