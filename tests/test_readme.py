"""The README runs as written: its set-up commands come first, its ``>>>`` snippets pass as doctests, and every
code block marked ``<!-- runnable -->`` (``<!-- runnable: slow -->`` for the slow ones, ``<!-- runnable: manual -->``
for the ones ``make test`` leaves to ``make test-manual``) runs in an empty folder.

Python blocks run in order in one namespace; a bash block runs with this interpreter's ``bin`` folder first on
``PATH`` (so ``python`` and ``latentalign`` are the project's), after the fast bash blocks before it, whose
files it may use.
"""

from __future__ import annotations

import doctest
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from latentalign.datasets._fetch import MIRRORS_ENV

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(
    r"(?:<!-- runnable(?::\s*(?P<kind>slow|manual))? -->\n)?^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S
)


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    line: int
    runnable: bool
    slow: bool
    manual: bool


def _blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    return [
        Block(
            m["lang"],
            m["body"],
            text.count("\n", 0, m.start("body")) + 1,
            m.group(0).startswith("<!--"),
            m["kind"] is not None,
            m["kind"] == "manual",
        )
        for m in _FENCE.finditer(text)
    ]


BASH = [b for b in _blocks() if b.runnable and b.lang == "bash"]


def test_the_set_up_commands_come_first_exactly_as_they_are():
    first = _blocks()[0]
    assert first.lang == "bash" and first.body.splitlines() == [
        "make demo   # sets up .venv, then aligns real offline models on real data and prints the table",
        "make test   # sets up .venv, then runs the whole test suite (CI runs exactly this)",
    ]


def test_the_readme_marks_runnable_blocks_of_both_languages():
    runnable = [b for b in _blocks() if b.runnable]
    assert {b.lang for b in runnable} == {"bash", "python"}
    assert any(not b.slow for b in BASH)  # the command-line tour stays in the fast suite


def test_the_python_blocks_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for block in _blocks():
        if block.runnable and block.lang == "python":
            exec(compile(block.body, f"{README}:{block.line}", "exec"), namespace)
    assert (tmp_path / "a_to_b.safetensors").is_file()


def test_the_api_snippets_pass_as_doctests(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = doctest.DocTestParser()
    test = parser.get_doctest(README.read_text(encoding="utf-8"), {}, "README.md", str(README), 0)
    assert len(test.examples) > 30, "the 'Python API in 5 minutes' snippets are missing"
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    result = runner.run(test, out=report.write)
    assert result.failed == 0, report.getvalue()


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(
            i, id=f"line{b.line}", marks=[pytest.mark.manual] if b.manual else [pytest.mark.slow] if b.slow else []
        )
        for i, b in enumerate(BASH)
    ],
)
def test_the_bash_blocks_run_as_written(index, tmp_path):
    block = BASH[index]
    script = "\n".join([*(b.body for b in BASH[:index] if not b.slow), block.body])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.setdefault("MPLBACKEND", "Agg")
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, f"README line {block.line}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    written = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(name in written for name in re.findall(r"-o (\S+\.safetensors)", block.body)), (
        f"README line {block.line}: a map its commands save is missing ({sorted(written)})"
    )


def test_the_mirror_variable_is_documented():
    assert f"`{MIRRORS_ENV}`" in README.read_text(encoding="utf-8")
