"""The experiment runner: packaged configs, the config-directory override, where results go, error messages."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import latentalign.experiments
from latentalign.experiments import find_config, list_experiments, load_config, run_experiment
from latentalign.experiments.runner import CONFIG_ENV, DEFAULT_RESULTS_DIR, config_dir

PACKAGED = Path(__file__).resolve().parents[1] / "latentalign" / "experiments" / "configs"

# A runner of its own (a real module, imported as latentalign.experiments.tiny_runner from a temporary folder
# added to the package's path): one row, one passing check, a detail for the record.
RUNNER = """
from latentalign.experiments import Check, ExperimentResult

def run(config, *, out_dir):
    n = config["setup"]["n"]
    return ExperimentResult(rows=[{"n": n, "square": n * n}], checks=[Check("n squared", "9", str(n * n), n * n == 9)],
                            notes=["tiny"], details={"n_seen": n})
"""
CONFIG = """runner = "latentalign.experiments.tiny_runner:run"
title = "Tiny"

[paper]
citation = "Nobody. Nothing. 2024"
table = "Table 0"

[setup]
n = 3

[reduced]
n = 2
"""


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    (tmp_path / "tiny_runner.py").write_text(RUNNER)
    package = latentalign.experiments
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "latentalign.experiments.tiny_runner", raising=False)
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "tiny.toml").write_text(CONFIG)
    return folder


def test_the_packaged_configs_are_all_listed_and_load():
    names = list_experiments()
    assert names == sorted(p.stem for p in PACKAGED.glob("*.toml")) and len(names) >= 8
    for name in names:
        config = load_config(name)
        assert config["name"] == name and config["config_file"] == f"latentalign/experiments/configs/{name}.toml"
    assert (config_dir() / "word_translation_ot.toml").is_file()


def test_a_name_a_packaged_path_and_a_user_path_all_resolve(tiny):
    assert find_config("mutual_knn").name == "mutual_knn.toml"
    assert find_config("experiments/mutual_knn.toml").name == "mutual_knn.toml"  # the path before the move
    config = load_config(tiny / "tiny.toml", reduced=True)
    assert config["name"] == "tiny" and config["setup"]["n"] == 2 and config["config_file"] == str(tiny / "tiny.toml")


def test_the_environment_variable_replaces_the_packaged_configs(tiny, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tiny))
    assert list_experiments() == ["tiny"]
    assert load_config("tiny")["config_file"] == str(tiny / "tiny.toml")
    with pytest.raises(
        FileNotFoundError, match=r"No experiment config 'mutual_knn'; known experiments in .*\['tiny'\]"
    ):
        find_config("mutual_knn")
    monkeypatch.setenv(CONFIG_ENV, str(tiny / "missing"))
    with pytest.raises(FileNotFoundError, match=r"does not exist; unset \$LATENTALIGN_EXPERIMENTS or point it"):
        list_experiments()


def test_unknown_names_list_the_known_experiments():
    with pytest.raises(FileNotFoundError, match=r"No experiment config 'nope'.*word_translation_csls.*Pass one of"):
        load_config("nope")


def test_a_broken_config_names_the_file_and_the_problem(tmp_path):
    (tmp_path / "bad.toml").write_text("runner = \n")
    with pytest.raises(ValueError, match=r"bad\.toml' is not valid TOML"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "short.toml").write_text('runner = "m:run"\ntitle = "t"\n[setup]\n')
    with pytest.raises(ValueError, match=r"short\.toml' lacks the required key 'paper'"):
        load_config(tmp_path / "short.toml")


def test_results_go_to_runs_experiments_under_the_current_directory(tiny, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result, page = run_experiment(tiny / "tiny.toml")
    assert page.resolve() == (work / DEFAULT_RESULTS_DIR / "tiny.md").resolve()
    assert result.passed and result.rows == [{"n": 3, "square": 9}]
    record = json.loads((work / DEFAULT_RESULTS_DIR / "tiny.json").read_text())
    assert record["details"] == {"n_seen": 3} and record["checks"][0]["passed"] is True
    assert f"Config: `{tiny / 'tiny.toml'}`" in page.read_text()
    _, page = run_experiment(tiny / "tiny.toml", reduced=True, out_dir=tmp_path / "elsewhere")
    assert page == tmp_path / "elsewhere" / "tiny.md" and "(reduced run)" in page.read_text()


# A function that leaves a trace when called, importable from outside the experiments package.
MARKER = """
from pathlib import Path

def run(config, *, out_dir):
    Path(config["setup"]["marker"]).write_text("called")
"""


@pytest.mark.parametrize(
    ("runner", "problem"),
    [
        ("os:system", "which is not allowed"),
        ("marker_module:run", "which is not allowed"),
        ("latentalign.experimentsx.marker:run", "which is not allowed"),
        ("latentalign.experiments.mutual_knn:_private", "which is not allowed"),
        ("latentalign.experiments.mutual_knn", "which is not allowed"),
        (
            "latentalign.experiments.no_such_module:run",
            "but there is no module 'latentalign.experiments.no_such_module'",
        ),
        (
            "latentalign.experiments.tiny_runner:nothing",
            "but 'latentalign.experiments.tiny_runner' defines no function 'nothing'",
        ),
        (
            "latentalign.experiments.tiny_runner:Check",
            "but 'latentalign.experiments.tiny_runner' defines no function 'Check'",
        ),  # imported, not defined there
    ],
)
def test_a_runner_outside_the_experiments_package_is_refused_and_not_called(
    tiny, tmp_path, monkeypatch, runner, problem
):
    (tmp_path / "marker_module.py").write_text(MARKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "marker_module", raising=False)
    marker = tmp_path / "called.txt"
    config = tmp_path / "evil.toml"
    setup = f"[setup]\nmarker = {str(marker)!r}\n"
    config.write_text(f'runner = "{runner}"\ntitle = "t"\n[paper]\ncitation = "c"\n{setup}')
    with pytest.raises(
        ValueError, match=rf"evil\.toml' names the runner '{runner}', {problem}.*inside latentalign\.experiments"
    ):
        run_experiment(config, out_dir=tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out" / "evil.md").exists()


def test_os_system_named_by_a_config_is_never_called(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr("os.system", lambda command: called.append(command))
    config = tmp_path / "shell.toml"
    config.write_text('runner = "os:system"\ntitle = "t"\n[paper]\ncitation = "c"\n[setup]\n')
    with pytest.raises(ValueError, match=r"shell\.toml' names the runner 'os:system', which is not allowed"):
        run_experiment(config, out_dir=tmp_path / "out")
    assert called == []


def test_a_check_without_a_verdict_is_not_evaluable_neither_pass_nor_fail(tmp_path):
    from latentalign.experiments import Check, ExperimentResult, write_summary
    from latentalign.experiments.runner import failed_checks

    checks = [Check("a", "1", "1", True), Check("b", "1", "too few errors", None)]
    assert [c.verdict for c in checks] == ["pass", "not evaluable"]
    assert ExperimentResult(rows=[], checks=checks).passed  # nothing FAILed
    assert not ExperimentResult(rows=[], checks=[*checks, Check("c", "1", "0", False)]).passed
    record = {"checks": [c.__dict__ for c in checks], "paper": {"citation": "X"}, "elapsed_s": 1.0}
    (tmp_path / "tiny.json").write_text(json.dumps(record))
    assert failed_checks(tmp_path, names=["tiny"]) == []
    text = write_summary(tmp_path, names=["tiny"]).read_text()
    assert "1 of 2 checks pass (1 not evaluable: too little data to decide)." in text
    assert "| too few errors | not evaluable |" in text


def test_a_config_extends_another_and_sets_only_what_differs(tiny, tmp_path):
    (tiny / "tiny_more.toml").write_text('extends = "tiny"\ntitle = "Tiny, more"\n\n[setup]\nextra = 1\n')
    config = load_config(tiny / "tiny_more.toml")
    assert config["title"] == "Tiny, more" and config["runner"] == "latentalign.experiments.tiny_runner:run"
    assert config["setup"] == {"n": 3, "extra": 1} and config["paper"]["table"] == "Table 0"
    assert config["extends"] == [str(tiny / "tiny.toml")]
    assert load_config(tiny / "tiny_more.toml", reduced=True)["setup"]["n"] == 2  # the base's [reduced] too
    _, page = run_experiment(tiny / "tiny_more.toml", out_dir=tmp_path / "out")
    assert "extending `tiny.toml`" in page.read_text()
    inputs = json.loads((tmp_path / "out" / "tiny_more.json").read_text())["inputs"]
    assert inputs["extends_1"]["path"] == "tiny.toml" and len(inputs["extends_1"]["sha256"]) == 64


def test_extends_names_a_config_and_never_loops(tiny):
    (tiny / "loop_a.toml").write_text('extends = "loop_b"\n')
    (tiny / "loop_b.toml").write_text('extends = "loop_a"\n')
    with pytest.raises(
        ValueError, match=r"returns to a file it has read \(loop_a.toml -> loop_b.toml -> loop_a.toml\)"
    ):
        load_config(tiny / "loop_a.toml")
    (tiny / "bad.toml").write_text("extends = 3\n")
    with pytest.raises(ValueError, match="'extends' must name another experiment config"):
        load_config(tiny / "bad.toml")
    (tiny / "missing.toml").write_text('extends = "no_such_experiment"\n')
    with pytest.raises(FileNotFoundError, match="No experiment config 'no_such_experiment'") as refused:
        load_config(tiny / "missing.toml")
    assert f"{str(tiny / 'missing.toml')!r}: 'extends' names no config next to it." in str(refused.value)


def test_the_summary_says_when_a_record_was_rendered_from_the_fit_cache(tmp_path):
    from latentalign.experiments import write_summary

    check = {"claim": "c", "paper": "1", "ours": "1", "passed": True}
    fits = [{"reused": True}, {"reused": True}, {"reused": False}]
    base = {"checks": [check], "paper": {"citation": "X"}, "elapsed_s": 21.0}
    (tmp_path / "cached.json").write_text(json.dumps({**base, "details": {"records": fits}}))
    (tmp_path / "fresh.json").write_text(json.dumps({**base, "details": {"records": [{"reused": False}]}}))
    text = write_summary(tmp_path, names=["cached", "fresh"]).read_text()
    assert "| full, 21 s, 2 of 3 fits read from the fit cache |" in text
    assert "| full, 21 s |" in text  # the fresh record: its run time is the fits'
