"""The command line end to end on tiny planted data (typer's CliRunner, real files in tmp_path)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from latentalign import load
from latentalign.cli import app

runner = CliRunner()


@pytest.fixture()
def pair_files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 6)).astype(np.float32)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    Y = (X @ Q).astype(np.float32)
    np.save(tmp_path / "a.npy", X)
    np.save(tmp_path / "b.npy", Y)
    return tmp_path, X, Y, Q


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_list_aligners_and_datasets():
    out = invoke("list", "aligners")
    assert "procrustes" in out and "relative" in out
    assert "fashion_mnist" in invoke("list", "datasets")


def test_list_rejects_unknown_section():
    result = runner.invoke(app, ["list", "planets"])
    assert result.exit_code != 0
    assert "expected one of" in result.output


def test_fit_saves_a_map_that_recovers_the_rotation(pair_files):
    tmp, X, Y, Q = pair_files
    out = invoke("fit", tmp / "a.npy", tmp / "b.npy", "-m", "procrustes", "-p", "center=false", "-o", tmp / "m")
    assert "saved map to" in out and str(tmp / "m.safetensors") in out
    aligner = load(tmp / "m.safetensors")
    np.testing.assert_allclose(aligner.rotation_, Q, atol=1e-4)


def test_fit_rejects_malformed_param(pair_files):
    tmp, *_ = pair_files
    result = runner.invoke(app, ["fit", str(tmp / "a.npy"), str(tmp / "b.npy"), "-p", "alpha"])
    assert result.exit_code != 0
    assert "NAME=VALUE" in result.output


def test_evaluate_writes_a_record_and_report_tables_it(pair_files):
    tmp, *_ = pair_files
    invoke("fit", tmp / "a.npy", tmp / "b.npy", "-o", tmp / "m.safetensors")
    out = invoke("evaluate", tmp / "a.npy", tmp / "b.npy", "--map", tmp / "m.safetensors", "-o", tmp / "runs")
    assert "wrote run record" in out
    record = json.loads((tmp / "runs" / "evaluate.json").read_text())
    assert record["rows"][0]["recall@1"] == 1.0
    assert "torch" in record["versions"]
    out = invoke("report", tmp / "runs", "-o", tmp / "report")
    assert (tmp / "report" / "report.md").read_text().count("| 1.000 |") >= 1
    assert (tmp / "report" / "report.csv").exists()
    assert (tmp / "report" / "recall_at_1.png").stat().st_size > 1000


def test_evaluate_without_map_is_at_chance_level_on_rotated_data(pair_files):
    tmp, *_ = pair_files
    invoke("evaluate", tmp / "a.npy", tmp / "b.npy", "-o", tmp / "runs")
    record = json.loads((tmp / "runs" / "evaluate.json").read_text())
    assert record["rows"][0]["recall@1"] < 0.3


def test_every_command_has_help_with_an_example():
    for command in ("list", "fit", "evaluate", "report", "demo", "run"):
        out = invoke(command, "--help")
        assert "Example" in out, command
