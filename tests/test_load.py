"""``latentalign.load`` in a fresh interpreter: the aligner classes are imported lazily, so loading must
find a saved class even when nothing has imported its module yet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from latentalign.align import Procrustes, SelfLearning, make_aligner

REPO = Path(__file__).resolve().parents[1]


def test_every_aligner_loads_in_a_fresh_process(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    Y = X @ np.linalg.qr(rng.normal(size=(6, 6)))[0]
    names = {
        "procrustes": make_aligner("procrustes"),
        "affine": make_aligner("affine"),
        "relative": make_aligner("relative"),
        "self_learning": SelfLearning(init=Procrustes(), n_iter=2),
    }
    expected = {}
    for key, aligner in names.items():
        if key == "self_learning":
            aligner.fit(X, Y, pairs=np.stack([np.arange(20), np.arange(20)], 1))
        else:
            aligner.fit(X, Y)
        aligner.save(tmp_path / f"{key}.safetensors")
        expected[key] = type(aligner).__name__
    script = "import sys, latentalign\nfor path in sys.argv[1:]:\n    print(type(latentalign.load(path)).__name__)\n"
    paths = [str(tmp_path / f"{key}.safetensors") for key in names]
    done = subprocess.run(
        [sys.executable, "-c", script, *paths],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == list(expected.values())
