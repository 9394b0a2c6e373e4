"""Wrong arguments and damaged files on the command line: one clear line and a non-zero exit, never a
traceback (typer's CliRunner on real files in tmp_path; one run as a real subprocess)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from latentalign.cli import app
from latentalign.cli.application import command
from latentalign.cli.inputs import read_labels

runner = CliRunner()


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    np.save(tmp_path / "a.npy", X)
    np.save(tmp_path / "b.npy", (X @ Q).astype(np.float32))
    (tmp_path / "words.txt").write_text("dog\ncat\nhorse\n")
    (tmp_path / "a_file").write_text("not a directory")
    return tmp_path


def one_line_error(*args) -> str:
    """Run a command that must fail with exit code 1 and one ``Error: ...`` line on stderr; return it.

    ``--quiet`` keeps the INFO lines that announce long steps (loading a model, ...) off stderr."""
    result = runner.invoke(app, ["--quiet", *(str(a) for a in args)])
    assert isinstance(result.exception, SystemExit), result.exception  # handled, not an escaped exception
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def usage_error(*args) -> str:
    """Run a command that click must refuse as a usage error (exit code 2); return its message, unwrapped."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


# ----------------------------------------------------------------------------------------- output paths
#: Every command with -o/--out, with the arguments it needs besides -o (``{tmp}`` is the test's folder).
OUTPUT_COMMANDS = {
    "fit": ["fit", "{tmp}/a.npy", "{tmp}/b.npy"],
    "evaluate": ["evaluate", "{tmp}/a.npy", "{tmp}/b.npy"],
    "diagnose": ["diagnose", "{tmp}/a.npy", "{tmp}/b.npy", "-b", "10"],
    "embed": ["embed", "glove-50", "{tmp}/words.txt", "--no-progress"],
    "report": ["report", "{tmp}/runs"],
    "stitch": ["stitch", "{tmp}/a.npy", "{tmp}/b.npy", "{tmp}/y.txt", "--map", "{tmp}/m.safetensors"]
    + ["--train", "{tmp}/b.npy", "--train-labels", "{tmp}/y.txt"],
    "demo": ["demo", "--quick"],
    "run": ["run", "all", "--summary-only"],
}
FILE_OUTPUTS = {"fit": "m.safetensors", "embed": "e.safetensors"}


@pytest.mark.parametrize("name", sorted(OUTPUT_COMMANDS))
def test_an_output_under_a_file_is_one_line_before_any_work(files, name):
    target = files / "a_file" / "sub" / FILE_OUTPUTS.get(name, "out")
    line = one_line_error(*[a.format(tmp=files) for a in OUTPUT_COMMANDS[name]], "-o", target)
    assert line == (
        f"Error: --out {str(target)!r}: {str(files / 'a_file')!r} is a file, so no folder can be created inside "
        "it. Choose a path whose parent folders are directories. (NotADirectoryError)"
    )


def test_an_output_of_the_wrong_kind_names_the_option(files):
    (files / "m.safetensors").mkdir()
    line = one_line_error("fit", files / "a.npy", files / "b.npy", "-o", files / "m.safetensors")
    assert f"--out {str(files / 'm.safetensors')!r} is a directory, but a file path is expected here" in line
    assert line.endswith("(IsADirectoryError)")
    line = one_line_error("evaluate", files / "a.npy", files / "b.npy", "-o", files / "a_file")
    assert f"--out {str(files / 'a_file')!r} is a file, but a directory is expected here" in line
    line = one_line_error("embed", "glove-50", files / "words.txt", "-o", files / "e.npy", "--store", files / "a_file")
    assert line.startswith(f"Error: --store {str(files / 'a_file')!r} is a file, but a directory is expected")


def test_save_head_under_a_file_is_one_line(files):
    (files / "y.txt").write_text("\n".join(["0", "1"] * 20) + "\n")
    fitted = runner.invoke(app, ["fit", str(files / "a.npy"), str(files / "b.npy"), "-o", str(files / "m.safetensors")])
    assert fitted.exit_code == 0, fitted.output
    head = files / "a_file" / "head.safetensors"
    args = ["stitch", files / "a.npy", files / "b.npy", files / "y.txt", "--map", files / "m.safetensors"]
    line = one_line_error(*args, "--train", files / "b.npy", "--train-labels", files / "y.txt", "--save-head", head)
    assert line.startswith(f"Error: --save-head {str(head)!r}: ")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
def test_an_output_in_a_read_only_directory_is_one_line(files):
    locked = files / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = one_line_error("evaluate", files / "a.npy", files / "b.npy", "-o", locked / "runs")
    finally:
        locked.chmod(0o755)
    assert f"the directory {str(locked)!r} is not writable by this user" in line
    assert line.endswith("(PermissionError)")


# --------------------------------------------------------------------------------------- devices, models
@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has CUDA")
def test_device_cuda_on_cpu_only_torch_is_one_line_with_the_fix(files):
    line = one_line_error("embed", "minilm", files / "words.txt", "--device", "cuda", "-o", files / "e.npy")
    assert "--device 'cuda' asks for a CUDA GPU, but this torch" in line
    assert "Use --device cpu, or install a CUDA build of torch" in line
    assert not (files / "e.store").exists()  # refused before anything was written


def test_device_that_is_not_a_device_names_the_option(files):
    line = one_line_error("embed", "minilm", files / "words.txt", "--device", "gpu0", "-o", files / "e.npy")
    assert line == (
        "Error: --device expects a torch device such as 'cpu', 'cuda' or 'cuda:0', got 'gpu0'. (ValueError)"
    )


def test_a_text_file_after_onnx_prefix_is_one_line_naming_it(files):
    pytest.importorskip("onnxruntime")
    model = files / "x.txt"
    model.write_text("hello\nworld\n")
    line = one_line_error("embed", f"onnx:{model}", files / "words.txt", "-o", files / "e.npy")
    assert line.startswith(f"Error: MODEL {str(model)!r} could not be loaded as an ONNX model (")
    assert line.endswith("(ValueError)")


def test_onnx_error_as_a_real_process_prints_one_line_and_no_traceback(files):
    pytest.importorskip("onnxruntime")
    model = files / "x.txt"
    model.write_text("hello\n")
    cmd = [sys.executable, "-m", "latentalign.cli", "-q", "embed", f"onnx:{model}", str(files / "words.txt")]
    proc = subprocess.run([*cmd, "-o", str(files / "e.npy")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: MODEL "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


# ------------------------------------------------------------------------------------- numeric options
@pytest.mark.parametrize("value", ["abc", "1,,5", "0", "-1", "1.5"])
def test_k_that_is_not_a_list_of_positive_integers_names_the_option(files, value):
    message = usage_error("evaluate", files / "a.npy", files / "b.npy", "--k", value, "-o", files / "runs")
    assert f"Invalid value for '--k': expected comma-separated positive integers such as 1,5,10, got {value!r}" in (
        message
    )


@pytest.mark.parametrize(("option", "value"), [("--repeats", "0"), ("--budget", "1"), ("--seed", "-1")])
def test_diagnose_numeric_options_name_themselves(files, option, value):
    message = usage_error("diagnose", files / "a.npy", files / "b.npy", option, value, "-o", files / "d")
    assert f"Invalid value for '{option}'" in message


# --------------------------------------------------------------------------------------- malformed .npy
def _npy_bytes(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


GOOD = _npy_bytes(np.ones((40, 6), np.float32))
MALFORMED = {
    "text": (b"1,2,3\n4,5,6\n", r"is not a \.npy file: it does not start with the \.npy signature"),
    "empty": (b"", r"is not a \.npy file: .* \(it is empty\)"),
    "truncated": (GOOD[:-10], r"is a damaged or unsupported \.npy file \(its contents do not match its header"),
    "header only": (GOOD[:20], r"is a damaged or unsupported \.npy file \(its contents do not match its header"),
    "objects": (_npy_bytes(np.array([{"a": 1}], dtype=object)), r"it holds Python objects \(dtype object\)"),
    "1-D": (_npy_bytes(np.ones(40)), r"holds an array of shape \(40,\); an embedding matrix has 2 dimensions"),
    "strings": (_npy_bytes(np.array([["a", "b"]])), r"holds values of dtype <U1; embeddings must be real numbers"),
    "complex": (_npy_bytes(np.ones((40, 6), complex)), r"holds values of dtype complex128"),
    "no rows": (_npy_bytes(np.ones((0, 6), np.float32)), r"holds no rows \(shape \(0, 6\)\)"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_npy_input_names_the_file_and_the_fault(files, kind):
    content, match = MALFORMED[kind]
    bad = files / "bad.npy"
    bad.write_bytes(content)
    line = one_line_error("fit", bad, files / "b.npy", "-o", files / "m.safetensors")
    assert line.startswith(f"Error: SOURCE {str(bad)!r} "), line
    assert re.search(match, line), line
    assert not (files / "m.safetensors").exists()


def test_a_malformed_npy_label_file_names_it(tmp_path):
    bad = tmp_path / "y.npy"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match=r"LABELS '.*y\.npy' is not a \.npy file: .* \(it is empty\)"):
        read_labels(bad, "LABELS")


# --------------------------------------------------------------------------------------------- report
def test_report_on_a_directory_without_records_says_so(files):
    (files / "runs").mkdir()
    line = one_line_error("report", files / "runs", "-o", files / "report")
    assert f"RECORDS [{str(files / 'runs')!r}] hold no run records (*.json files)" in line
    assert not (files / "report").exists()


def test_report_with_an_unknown_metric_lists_the_known_ones(files):
    evaluated = runner.invoke(app, ["evaluate", str(files / "a.npy"), str(files / "b.npy"), "-o", str(files / "runs")])
    assert evaluated.exit_code == 0, evaluated.output
    line = one_line_error("report", files / "runs", "--metric", "recall@3", "-o", files / "report")
    assert "--metric 'recall@3' is not a score of these run records; they hold [" in line
    assert "'recall@1'" in line and "'mrr'" in line
    assert "(e.g. --metric " in line


# ------------------------------------------------------------------------------------ the one handler
def invoke_raising(error: BaseException):
    """Invoke a throw-away command that raises ``error``; return the result."""

    @command("robustness-probe")
    def probe() -> None:
        raise error

    try:
        return runner.invoke(app, ["robustness-probe"])
    finally:
        app.registered_commands.pop()


def test_user_errors_are_one_line_whatever_their_text_and_bugs_keep_their_traceback():
    for error, expected in [
        (ValueError("X has 3 rows,\n  Y has 4."), "Error: X has 3 rows, Y has 4. (ValueError)"),
        (EOFError("No data left in file"), "Error: No data left in file (EOFError)"),  # click says "Aborted!"
    ]:
        result = invoke_raising(error)
        assert result.exit_code == 1 and result.stderr.strip() == expected, result.output
    bug = invoke_raising(ZeroDivisionError("a bug, not a user error"))
    assert isinstance(bug.exception, ZeroDivisionError) and "Error:" not in bug.output
