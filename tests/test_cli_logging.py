"""What the command line shows besides results: version, log levels, warnings as one line, progress
switches, exit codes, shell completion, and one line instead of a traceback without the ``cli`` extra."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from latentalign import __version__
from latentalign._progress import PROGRESS_ENV, progress_enabled
from latentalign.cli import MISSING_CLI, app
from latentalign.cli.logs import configure_output

runner = CliRunner()


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4)).astype(np.float32)
    np.save(tmp_path / "a.npy", X)
    np.save(tmp_path / "b.npy", X[:, ::-1].copy())
    return tmp_path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def fit_args(files, *extra):
    return [*extra, "fit", files / "a.npy", files / "b.npy", "-o", files / "m.safetensors", "--record-dir", files / "r"]


def test_version_prints_the_package_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"latentalign {__version__}"


def test_shell_completion_is_offered():
    result = invoke("--help")
    assert "--install-completion" in result.output and "--show-completion" in result.output


def test_info_is_the_default_quiet_hides_it_verbose_adds_debug(files):
    default = invoke(*fit_args(files))
    assert default.exit_code == 0, default.output
    assert "fitting Procrustes on 30 pairs" in default.stderr and "fitted Procrustes()" in default.stdout
    quiet = invoke(*fit_args(files, "-q"))
    assert quiet.exit_code == 0 and quiet.stderr == "" and "fitted Procrustes()" in quiet.stdout
    verbose = invoke(*fit_args(files, "--verbose"))
    assert f"latentalign.cli.application: latentalign {__version__} on Python" in verbose.stderr
    assert "latentalign.cli.fit: fitting Procrustes on 30 pairs" in verbose.stderr
    both = invoke(*fit_args(files, "-v", "-q"))
    assert both.exit_code == 2 and "--verbose and --quiet contradict each other" in " ".join(
        re.sub(r"[│╭╮╰╯─]", " ", both.output).split()
    )


def test_the_cli_leaves_the_library_logger_as_it_found_it(files):
    logger = logging.getLogger("latentalign")
    before = (logger.level, logger.propagate, list(logger.handlers), warnings.showwarning)
    assert invoke(*fit_args(files, "-v")).exit_code == 0
    assert (logger.level, logger.propagate, list(logger.handlers), warnings.showwarning) == before
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)  # the library's own, from import


def test_a_python_warning_is_one_clean_line(files):
    np.save(files / "few.npy", np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32))
    result_args = ["fit", files / "few.npy", files / "few.npy", "-m", "affine", "-o", files / "m.safetensors",
                   "--record-dir", files / "r"]  # fmt: skip
    result = invoke(*result_args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert lines and lines[0].startswith("Warning: IllConditionedWarning: "), result.stderr
    assert ".py:" not in result.stderr and "warnings.warn" not in result.stderr  # no file path, no source line
    verbose = invoke("-v", *[str(a) for a in result_args])
    assert "\nWarning: IllConditionedWarning: " in "\n" + verbose.stderr  # the same line with --verbose


def test_no_progress_turns_off_every_bar_for_the_run_only():
    before = {k: os.environ.get(k) for k in (PROGRESS_ENV, "TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    restore = configure_output(progress=False)
    try:
        assert not progress_enabled()
        assert os.environ["TQDM_DISABLE"] == "1" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    finally:
        restore()
    assert {k: os.environ.get(k) for k in before} == before


def test_no_progress_silences_transformers_bars_when_already_imported():
    hf_logging = pytest.importorskip("transformers.utils.logging")
    hf_logging.enable_progress_bar()
    restore = configure_output(progress=False)
    try:
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        restore()
    assert hf_logging.is_progress_bar_enabled()


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


def test_without_typer_the_console_script_prints_one_line_with_the_extra():
    code = (
        "import sys; sys.modules['typer'] = None; sys.argv = ['latentalign', 'list']\n"
        "from latentalign.cli import main\nmain()"
    )
    proc = _python(code)
    assert proc.returncode == 1 and proc.stderr == MISSING_CLI + "\n", proc.stderr
    assert "pip install 'latentalign[cli]'" in proc.stderr and "Traceback" not in proc.stderr


def test_importing_the_library_or_the_cli_configures_nothing():
    code = (
        "import logging, warnings; hook = warnings.showwarning\n"
        "import latentalign, latentalign.cli; from latentalign.cli import app\n"
        "logger = logging.getLogger('latentalign')\n"
        "print(warnings.showwarning is hook, [type(h).__name__ for h in logger.handlers], logger.level)"
    )
    proc = _python(code)
    assert proc.stdout.split() == ["True", "['NullHandler']", "0"], proc.stderr


def test_no_progress_disables_tqdm_bars_in_a_fresh_command_line_process():
    # tqdm reads TQDM_DISABLE when first imported: the command line must not import it before the switch
    code = (
        "import sys\nfrom latentalign.cli import app\nprint('tqdm' in sys.modules)\n"
        "from latentalign.cli.logs import configure_output\nconfigure_output(progress=False)\n"
        "from tqdm.auto import tqdm\nprint(tqdm(range(3)).disable)"
    )
    proc = _python(code)
    assert proc.stdout.split() == ["False", "True"], proc.stderr


def test_exit_codes_are_0_ok_1_error_2_usage(files):
    assert invoke("list", "aligners").exit_code == 0
    assert invoke("evaluate", files / "a.npy", files / "missing.npy", "-o", files / "r").exit_code == 2  # BadParameter
    (files / "bad.npy").write_text("not an array")
    assert invoke("evaluate", files / "a.npy", files / "bad.npy", "-o", files / "r").exit_code == 1
    assert invoke("fit", files / "a.npy", files / "b.npy", "--method", "nope").exit_code == 2
