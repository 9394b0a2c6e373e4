"""Write the command-line reference from the commands' own ``--help`` texts (run by ``conf.py``)."""

from __future__ import annotations

import textwrap
from pathlib import Path


def _help(args: list[str]) -> str:
    from typer.testing import CliRunner

    from latentalign.cli import app

    result = CliRunner().invoke(
        app, [*args, "--help"], prog_name="latentalign", env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    )
    if result.exit_code != 0:
        raise RuntimeError(f"latentalign {' '.join(args)} --help exited with {result.exit_code}: {result.output}")
    return result.output.rstrip()


def _block(text: str) -> list[str]:
    lines = [line.rstrip() for line in textwrap.dedent(text).splitlines()]
    kept = [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]  # one blank line at most
    return [".. code-block:: text", "", *("   " + line if line else "" for line in kept), ""]


def write_cli_page(path: Path) -> None:
    """Write one section per command of ``latentalign.cli.COMMANDS`` with its ``--help`` output."""
    from latentalign.cli import COMMANDS

    lines = ["``latentalign``", "-" * 15, "", *_block(_help([]))]
    for name in COMMANDS:
        title = f"``latentalign {name}``"
        lines += [title, "-" * len(title), "", *_block(_help([name]))]
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
