"""A wheel built from the working tree is a complete package: metadata, type marker, licence, package data, and
an installed copy that lists and loads its experiments from outside the checkout."""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / "latentalign" / "experiments" / "configs").glob("*.toml"))


def _run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` of the working tree's files (tracked or not, never ignored),
    copied out first so that the build leaves nothing in the checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list the working tree's files")
    tmp = tmp_path_factory.mktemp("wheel")
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout
    src = tmp / "src"
    for rel in filter(None, listed.split("\0")):
        if (ROOT / rel).is_file():  # a tracked file deleted in the working tree is not part of it
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", "dist", "."]
    _run(pip_wheel, cwd=src)
    (built,) = (src / "dist").glob("latentalign-*.whl")
    return built


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))


def test_the_wheel_ships_the_package_data_the_type_marker_and_the_licence(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "latentalign/py.typed" in names
    assert "latentalign/datasets/checksums.json" in names
    assert {f"latentalign/experiments/configs/{c}.toml" for c in CONFIGS} <= names and CONFIGS
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/", "data/", "experiments/")) for n in names)


def test_the_wheel_metadata_is_complete(wheel):
    meta = _metadata(wheel)
    assert meta["License-Expression"] == "MIT" and meta["License-File"] == "LICENSE"
    assert meta["Metadata-Version"] >= "2.4"  # the version that carries SPDX licence expressions
    requires = meta.get_all("Requires-Dist")
    assert any(r.startswith("pooch") for r in requires) and any(r.startswith("platformdirs") for r in requires)
    (tomli,) = [r for r in requires if r.startswith("tomli")]
    assert 'python_version < "3.11"' in tomli
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert meta.get_all("Project-URL") and meta["Keywords"]
    assert meta["Requires-Python"] == ">=3.10"


def test_a_fresh_venv_with_the_wheel_lists_and_loads_the_experiments(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # --system-site-packages reaches the base interpreter's packages, not those of the virtualenv this test runs
    # in; a path entry (not processed for .pth files, so its editable latentalign stays out) lends the
    # dependencies already installed here, so nothing is downloaded.
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip()
    )
    (site / "lend-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", str(wheel)], cwd=tmp_path)

    env = {k: v for k, v in os.environ.items() if k not in ("LATENTALIGN_EXPERIMENTS", "PYTHONPATH")}
    where = _run([str(python), "-c", "import latentalign; print(latentalign.__file__)"], tmp_path, env=env).stdout
    assert Path(where.strip()).resolve().is_relative_to(env_dir.resolve())  # the installed copy, not the checkout

    listed = _run([str(python), "-m", "latentalign", "list", "experiments"], tmp_path, env=env).stdout
    assert listed.split("experiments:", 1)[1].strip().split(", ") == CONFIGS
    script = env_dir / ("Scripts/latentalign.exe" if os.name == "nt" else "bin/latentalign")
    assert _run([str(script), "list", "experiments"], tmp_path, env=env).stdout == listed

    probe = (
        "from latentalign.experiments import load_config; from latentalign.datasets._fetch import verify, _manifest;"
        "config = load_config('word_translation_csls', reduced=True);"
        "print(config['runner'], config['setup']['n_test'], sorted(_manifest()))"
    )
    out = _run([str(python), "-c", probe], tmp_path, env=env).stdout.split()
    assert out[:2] == ["latentalign.experiments.word_translation:run", "500"] and "'wordnet']" in out[-1]

    # a folder of configs named by LATENTALIGN_EXPERIMENTS replaces the packaged ones, installed too
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "mine.toml").write_text('runner = "m:run"\ntitle = "t"\n[paper]\n[setup]\n')
    override = {**env, "LATENTALIGN_EXPERIMENTS": str(folder)}
    mine = _run([str(python), "-m", "latentalign", "list", "experiments"], tmp_path, env=override).stdout
    assert mine.split("experiments:", 1)[1].strip() == "mine"
