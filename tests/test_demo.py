"""The main job on real offline models and data (reduced sizes); its table must make sense."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentalign.anchors import distinct_rows
from latentalign.experiments.common import unique_caption_rows
from latentalign.experiments.demo import run_demo


def test_unique_caption_rows_keeps_the_first_of_each_caption_in_every_language():
    en = ["A cat.", "A dog.", "a cat.", "A bird.", None]
    fr = ["Un chat.", "Un chien.", "Un chat.", "Un chien.", "Un poisson."]
    assert unique_caption_rows(en, fr).tolist() == [0, 1]


@pytest.mark.slow
def test_distinct_rows_keeps_rows_that_are_first_of_their_kind_in_every_matrix():
    a = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 0.0], [3.0, 0.0]])
    b = np.array([[1.0], [2.0], [3.0], [1.0]])
    assert distinct_rows(a, b).tolist() == [0, 2]
    assert distinct_rows(b).tolist() == [0, 1, 2]


def test_quick_demo_table_is_sane(tmp_path):
    record = run_demo(tmp_path, quick=True, echo=lambda _: None)
    rows = {(r["pair"], r["method"]): r for r in record["rows"]}
    chance = 1 / record["inputs"]["tux_test"]
    text = "MiniLM -> MPNet (en)"
    # Different dimensions: no absolute baseline; a fitted map retrieves far above chance.
    assert rows[(text, "absolute")]["recall@1"] is None
    assert rows[(text, "procrustes")]["recall@1"] > 0.6
    assert rows[(text, "relative")]["recall@1"] > 0.6
    lingual = "MiniLM en -> e5 fr"
    assert rows[(lingual, "procrustes")]["recall@1"] > 5 * rows[(lingual, "absolute")]["recall@1"]
    cross = "EffNet-L0 image -> MiniLM caption"
    assert rows[(cross, "procrustes")]["recall@1"] > 5 * chance
    stitch = "EffNet-L0 -> EffNet-L1 head (F-MNIST)"
    assert rows[(stitch, "absolute")]["accuracy"] < 0.3
    for method in ("relative", "procrustes", "affine"):
        assert rows[(stitch, method)]["accuracy"] > 0.6, method
    assert json.loads(next(tmp_path.glob("demo-*.json")).read_text())["kind"] == "demo"
    assert (tmp_path / "report.md").exists() and (tmp_path / "recall_at_1.png").exists()
