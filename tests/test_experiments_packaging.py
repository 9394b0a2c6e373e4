"""An installed wheel carries the experiment configs: build one from the committed tree, install it apart from
the checkout and ask it for its experiments from another directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

# Runs inside the installed copy: where latentalign was imported from, the experiments it lists, and one
# config read through importlib.resources.
PROBE = """
import json, latentalign
from latentalign.experiments import list_experiments, load_config
config = load_config("word_translation_csls", reduced=True)
print(json.dumps({"file": latentalign.__file__, "names": list_experiments(),
                  "runner": config["runner"], "n_test": config["setup"]["n_test"]}))
"""


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A wheel of ``git archive HEAD`` (what is committed, nothing else), installed into a bare directory."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout (the wheel is built from `git archive HEAD`)")
    tmp = tmp_path_factory.mktemp("wheel")
    archive = tmp / "src.tar"
    _run(["git", "archive", "--format=tar", "-o", str(archive), "HEAD"], cwd=ROOT)
    src = tmp / "src"
    with tarfile.open(archive) as tar:
        tar.extractall(src)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        cwd=tmp,
    )
    (wheel,) = (tmp / "dist").glob("latentalign-*.whl")
    target = tmp / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], cwd=tmp)
    return target


def _probe(target: Path, cwd: Path, code: str, extra_env: dict[str, str] | None = None):
    """Run ``code`` with only the installed copy on the path, from ``cwd`` (away from the checkout)."""
    env = {k: v for k, v in os.environ.items() if k != "LATENTALIGN_EXPERIMENTS"}
    env.update({"PYTHONPATH": str(target), **(extra_env or {})})
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_installed_wheel_lists_every_experiment_and_loads_a_config(installed, tmp_path):
    import json

    proc = _probe(installed, tmp_path, PROBE)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(found["file"]).resolve().is_relative_to(installed.resolve())  # not the checkout
    packaged = sorted(p.stem for p in (ROOT / "latentalign" / "experiments" / "configs").glob("*.toml"))
    assert found["names"] == packaged and "word_translation_ot" in packaged
    assert found["runner"] == "latentalign.experiments.word_translation:run"
    assert found["n_test"] == 500


def test_the_installed_command_line_lists_the_experiments(installed, tmp_path):
    # the console script's entry point, with the arguments typer reads from sys.argv
    code = "import sys; sys.argv = ['latentalign', 'list', 'experiments']; from latentalign.cli import main; main()"
    proc = _probe(installed, tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("experiments:", 1)[1].strip().split(", ")
    assert listed == sorted(p.stem for p in (ROOT / "latentalign" / "experiments" / "configs").glob("*.toml"))


def test_the_config_directory_override_still_applies_to_an_installed_wheel(installed, tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "mine.toml").write_text('runner = "m:run"\ntitle = "t"\n[paper]\n[setup]\n')
    code = "from latentalign.experiments import list_experiments; print(list_experiments())"
    proc = _probe(installed, tmp_path, code, {"LATENTALIGN_EXPERIMENTS": str(folder)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['mine']"
