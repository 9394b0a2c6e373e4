"""The command line cannot mislead: explicit row pairing for fit, every map kind evaluates, run records
that identify their inputs, never overwrite each other, and that ``report`` reads whatever their kind."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from latentalign import __version__
from latentalign.align import list_aligners
from latentalign.cli import app
from latentalign.cli.application import AlignerName
from latentalign.reports import make_record, read_records, write_record
from latentalign.store.integrity import manifest_digest

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def flat(text):
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def records(folder, kind):
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"{kind}-*.json"))]


@pytest.fixture()
def rotated(tmp_path):
    """40 rows in 4 dims and their rotation: A and B of the same items, row for row."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4)).astype(np.float32)
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    np.save(tmp_path / "a.npy", X)
    np.save(tmp_path / "b.npy", (X @ Q).astype(np.float32))
    return tmp_path


# ------------------------------------------------------------------------------------------- fit: row pairing
def test_the_aligner_choices_are_the_registry():
    assert sorted(m.value for m in AlignerName) == list_aligners()


@pytest.mark.parametrize("method", ["ot", "unsupervised", "lfm"])
def test_a_method_that_can_ignore_row_pairing_must_be_told_which_rows_pair(rotated, method):
    result = run("fit", rotated / "a.npy", rotated / "b.npy", "-m", method, "-o", rotated / "m.safetensors")
    assert result.exit_code == 2, result.output
    message = flat(result.output).partition("'--pairs' / '--unpaired':")[2]
    assert f"-m {method} can fit" in message
    assert ("--pairs FILE" in message) == (method != "unsupervised")
    assert ("--unpaired" in message) == (method != "lfm")
    assert not (rotated / "m.safetensors").exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["-m", "procrustes", "--unpaired"], "-m procrustes cannot fit without pairs"),
        (["-m", "unsupervised", "--pairs", "rows"], "-m unsupervised uses no pairs"),
        (["-m", "ot", "--pairs", "rows", "--unpaired"], "give --pairs FILE or --unpaired, not both"),
        (
            ["-m", "orthogonal"],
            "'orthogonal' is not one of 'affine', 'kernel_ridge', 'lfm', 'mlp', 'ot', 'procrustes', 'relative', 'unsupervised'",
        ),
    ],
)
def test_pairing_options_a_method_cannot_honour_are_usage_errors(rotated, args, match):
    result = run("fit", rotated / "a.npy", rotated / "b.npy", *args)
    assert result.exit_code == 2, result.output
    assert match in flat(result.output)


def test_ot_with_a_pairs_file_uses_those_pairs_and_records_the_file(rotated):
    pairs = rotated / "pairs.csv"
    pairs.write_text("source,target\n" + "".join(f"{i},{i}\n" for i in range(12)))
    out = ok(
        "fit", rotated / "a.npy", rotated / "b.npy", "-m", "ot", "--pairs", pairs,
        "-o", rotated / "m.safetensors", "--record-dir", rotated / "runs",
    )  # fmt: skip
    assert "on 12 known pairs and the other rows of 40 x 40" in out
    assert "score (R^2 on the 12 fit pairs): 1.0000" in out
    (record,) = records(rotated / "runs", "fit")
    assert record["settings"]["rows"] == "pairs" and record["rows"][0]["n_pairs"] == 12
    assert record["inputs"]["pairs"]["sha256"] == hashlib.sha256(pairs.read_bytes()).hexdigest()
    assert record["outputs"] == [str(rotated / "m.safetensors")]
    ok("evaluate", rotated / "a.npy", rotated / "b.npy", "--map", rotated / "m.safetensors", "-o", rotated / "runs")
    assert records(rotated / "runs", "evaluate")[0]["rows"][0]["recall@1"] == 1.0


def test_procrustes_with_a_pairs_file_fits_on_those_rows_only(rotated):
    X = np.load(rotated / "a.npy")
    np.save(rotated / "b_shuffled.npy", np.load(rotated / "b.npy")[::-1].copy())  # row i of B is row 39 - i of A
    np.save(rotated / "pairs.npy", np.stack([np.arange(10), 39 - np.arange(10)], 1))
    out = ok(
        "fit", rotated / "a.npy", rotated / "b_shuffled.npy", "--pairs", rotated / "pairs.npy",
        "-o", rotated / "m.safetensors", "--record-dir", rotated / "runs",
    )  # fmt: skip
    assert "on 10 pairs" in out and "R^2 on the 10 fit pairs): 1.0000" in out
    assert X.shape == (40, 4)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("0,1,2\n3,4,5\n", r"--pairs '.*p\.csv' has lines of \[3\] values; each line must hold exactly two integers"),
        ("0,1\n2,x\n", r"--pairs '.*p\.csv' line 2 is '2,x'; each line must hold two integer row indices"),
        ("0,1\n40,2\n", r"--pairs '.*p\.csv' names SOURCE row 40 \(pair 1\), but SOURCE has 40 rows \(0 to 39\)"),
        ("source,target\n", r"--pairs '.*p\.csv' holds no pairs"),
    ],
)
def test_a_bad_pairs_file_is_one_line_naming_it(rotated, content, match):
    (rotated / "p.csv").write_text(content)
    result = run("fit", rotated / "a.npy", rotated / "b.npy", "-m", "ot", "--pairs", rotated / "p.csv")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert re.search(match, lines[-1]) and lines[-1].startswith("Error: "), result.stderr


def test_unsupervised_fit_says_it_used_no_pairs_and_scores_nothing(rotated):
    out = ok(
        "fit", rotated / "a.npy", rotated / "b.npy", "-m", "unsupervised", "--unpaired", "-p", "n_init=2",
        "-o", rotated / "u.safetensors", "--record-dir", rotated / "runs",
    )  # fmt: skip
    assert "on 40 + 40 unpaired rows (no pairs)" in out and "score: none (no pairs to score on)" in out
    (record,) = records(rotated / "runs", "fit")
    assert record["settings"]["rows"] == "unpaired" and record["rows"][0]["score_r2"] is None


# ------------------------------------------------------------------------------------------- evaluate
def test_evaluate_maps_both_sides_through_a_relative_map(rotated):
    ok("fit", rotated / "a.npy", rotated / "b.npy", "-m", "relative", "-o", rotated / "rel.safetensors",
       "--record-dir", rotated / "runs")  # fmt: skip
    out = ok(
        "evaluate", rotated / "a.npy", rotated / "b.npy", "--map", rotated / "rel.safetensors", "-o", rotated / "runs"
    )
    (record,) = records(rotated / "runs", "evaluate")
    row = record["rows"][0]
    assert row["method"] == "RelativeProjection" and row["pair"] == "a -> b"
    assert row["recall@1"] == 1.0, out  # a rotation keeps every cosine: relative coordinates agree exactly


# ------------------------------------------------------------------------------------------- records
def test_two_runs_into_one_folder_keep_two_records_with_their_provenance(rotated):
    runs = rotated / "runs"
    args = ["evaluate", str(rotated / "a.npy"), str(rotated / "b.npy"), "-o", str(runs)]
    ok(*args)
    proc = subprocess.run([sys.executable, "-m", "latentalign.cli", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = sorted(runs.glob("*.json"))
    assert len(found) == 2
    assert all(re.fullmatch(r"evaluate-\d{8}T\d{6}Z-[0-9a-f]{8}\.json", p.name) for p in found)
    assert not list(runs.glob(".*tmp"))  # written through a temporary file, nothing left over
    record = next(r for r in map(json.loads, (p.read_text() for p in found)) if r["command"][1:] == args)
    assert record["command"][0].endswith("__main__.py")  # sys.argv of the process, verbatim
    a = record["inputs"]["queries"]
    assert a["path"] == str(rotated / "a.npy") and a["bytes"] == (rotated / "a.npy").stat().st_size
    assert a["sha256"] == hashlib.sha256((rotated / "a.npy").read_bytes()).hexdigest()
    assert {"python", "latentalign", "torch", "numpy"} <= set(record["versions"])
    assert record["versions"]["latentalign"] == __version__
    assert isinstance(record["wall_s"], float) and record["wall_s"] >= 0


def test_embed_records_the_store_by_its_manifest_digest(tmp_path):
    (tmp_path / "words.txt").write_text("dog\ncat\nhorse\n")
    ok("--no-progress", "embed", "glove-50", tmp_path / "words.txt", "-o", tmp_path / "w.npy",
       "--record-dir", tmp_path / "runs")  # fmt: skip
    (record,) = records(tmp_path / "runs", "embed")
    manifest = json.loads((tmp_path / "w.store" / "manifest.json").read_text())
    assert record["inputs"]["store"]["manifest_sha256"] == manifest_digest(manifest)
    assert record["inputs"]["store"]["rows"] == 3 and record["rows"][0]["method"] == "glove-50"
    assert record["outputs"] == [str(tmp_path / "w.npy")]


def test_diagnose_writes_a_record_that_report_reads_without_counting_twice(rotated):
    ok(
        "diagnose",
        rotated / "a.npy",
        rotated / "b.npy",
        "-b",
        "8",
        "-b",
        "16",
        "--repeats",
        "1",
        "-o",
        rotated / "diag",
    )
    (record,) = records(rotated / "diag", "diagnose")
    assert record["seed"] == 0 and record["diagnosis"]["verdict"]
    assert [r["method"] for r in record["rows"]] == [
        "procrustes, 8 anchors", "procrustes, 16 anchors", "relative, 8 anchors", "relative, 16 anchors"
    ]  # fmt: skip
    ok("report", rotated / "diag", "-o", rotated / "report")
    csv_lines = (rotated / "report" / "report.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 4  # report.json is listed among the record's outputs: not read again
    assert all(line.startswith("a -> b,") for line in csv_lines[1:])


def test_report_reads_old_records_and_a_diagnose_report_alone_and_labels_every_bar(rotated, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "evaluate.json").write_text(json.dumps({  # an evaluate record of an earlier version: no labels
        "kind": "evaluate", "created": "2025-01-01T00:00:00Z", "seed": None, "settings": {}, "inputs": {},
        "rows": [{"queries": "x/a.npy", "keys": "x/b.npy", "map": "x/m.safetensors", "csls": True, "recall@1": 0.5}],
    }))  # fmt: skip
    ok("diagnose", rotated / "a.npy", rotated / "b.npy", "-b", "8", "--repeats", "1", "-o", rotated / "diag")
    for p in (rotated / "diag").glob("diagnose-*.json"):
        p.unlink()  # what an earlier version wrote: report.json only
    found = read_records([old, rotated / "diag"])
    labels = [(r["pair"], r["method"]) for record in found for r in record["rows"]]
    assert labels[0] == ("a -> b", "m + CSLS")
    assert all(pair and method and "None" not in (pair, method) for pair, method in labels)
    assert found[1]["kind"] == "diagnose" and "(4-d -> 4-d)" in labels[1][0]
    out = ok("report", old, rotated / "diag", "-o", tmp_path / "report")
    assert "plot_svg" in out
    assert (tmp_path / "report" / "recall_at_1.png").stat().st_size > 1000
    assert "<svg" in (tmp_path / "report" / "recall_at_1.svg").read_text()[:500]
    assert "None" not in (tmp_path / "report" / "recall_at_1.svg").read_text()


def test_report_refuses_an_unknown_metric_with_exit_code_1(rotated):
    ok("evaluate", rotated / "a.npy", rotated / "b.npy", "-o", rotated / "runs")
    result = run("report", rotated / "runs", "--metric", "accuracy", "-o", rotated / "report")
    assert result.exit_code == 1 and "--metric 'accuracy' is not a score of these run records" in result.output


def test_write_record_never_replaces_an_earlier_record(tmp_path):
    record = make_record("fit", [{"pair": "a -> b", "method": "procrustes"}], command=["latentalign", "fit"])
    paths = {write_record(record, tmp_path) for _ in range(5)}
    assert len(paths) == 5 and all(p.exists() for p in paths)
    fixed = write_record(record, tmp_path, "page", unique=False)
    assert fixed.name == "page.json"


# ------------------------------------------------------------------------------------------- run --strict
def _experiment_records(folder):
    write_record(
        make_record(
            "experiment:word_translation_csls",
            [{"setting": "csls", "p@1": 0.3}],
            extra={"checks": [{"claim": "CSLS beats NN", "paper": "0.4", "ours": "0.3", "passed": False}],
                   "paper": {"citation": "Someone 2018"}, "elapsed_s": 1.0, "reduced": True},
        ),
        folder,
        "word_translation_csls",
        unique=False,
    )  # fmt: skip


def test_run_lists_failed_checks_and_strict_makes_them_exit_1(tmp_path, monkeypatch):
    import latentalign.experiments
    import latentalign.experiments.runner as runner_module

    for module in (latentalign.experiments, runner_module):
        monkeypatch.setattr(module, "list_experiments", lambda directory=None: ["word_translation_csls"])
    _experiment_records(tmp_path)
    result = run("run", "all", "--summary-only", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "1 check(s) FAILED:" in result.output
    assert "word_translation_csls: CSLS beats NN (paper 0.4, ours 0.3)" in result.output
    strict = run("run", "all", "--summary-only", "--strict", "-o", tmp_path)
    assert strict.exit_code == 1 and "1 check(s) FAILED:" in strict.output


def test_run_of_one_experiment_with_a_failing_check_exits_1_only_with_strict(tmp_path, monkeypatch):
    import latentalign.experiments

    (tmp_path / "strict_runner.py").write_text(
        "from latentalign.experiments import Check, ExperimentResult\n"
        "def run(config, *, out_dir):\n"
        "    n = config['setup']['n']\n"
        "    return ExperimentResult(rows=[{'n': n}], checks=[Check('n is 3', '3', str(n), n == 3)])\n"
    )
    monkeypatch.setattr(latentalign.experiments, "__path__", [*latentalign.experiments.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "latentalign.experiments.strict_runner", raising=False)
    config = tmp_path / "strict.toml"
    config.write_text(
        'runner = "latentalign.experiments.strict_runner:run"\ntitle = "Strict"\n'
        '[paper]\ncitation = "Nobody 2024"\n[setup]\nn = 3\n[reduced]\nn = 2\n'
    )
    passing = run("run", config, "--strict", "-o", tmp_path / "out")
    assert passing.exit_code == 0 and "FAILED" not in passing.output, passing.output
    failing = run("run", config, "--reduced", "-o", tmp_path / "out")
    assert failing.exit_code == 0 and "1 check(s) FAILED:\n  strict: n is 3 (paper 3, ours 2)" in failing.output
    strict = run("run", config, "--reduced", "--strict", "-o", tmp_path / "out")
    assert strict.exit_code == 1 and "1 check(s) FAILED:" in strict.output
    record = json.loads((tmp_path / "out" / "strict.json").read_text())
    assert record["inputs"]["config"]["sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert record["command"] and record["wall_s"] is not None and record["outputs"][0].endswith("strict.md")
