"""Anchor-budget sweeps of the stitching pages: nested anchor draws, the nonlinearity note, the curves plot."""

from __future__ import annotations

import numpy as np
import pytest

from latentalign.experiments.budgets import nested_anchors, nonlinearity_note, plot_budget_curves


def test_nested_anchors_are_sorted_subsets_of_the_pool_and_of_each_other():
    pool = np.arange(100, 300, 2)  # 100 indices, not 0..n-1
    out = nested_anchors(pool, ["all", 10, 50, 10], seed=3)
    assert list(out) == [10, 50, 100]  # duplicates merged, smallest first, "all" = the pool's size
    for k, anchors in out.items():
        assert len(anchors) == len(np.unique(anchors)) == k
        assert np.all(np.diff(anchors) > 0) and np.isin(anchors, pool).all()
    assert set(out[10]) < set(out[50]) < set(out[100])
    np.testing.assert_array_equal(out[100], pool)
    again = nested_anchors(pool, [10, 50], seed=3)
    np.testing.assert_array_equal(again[50], out[50])  # the draw depends on the seed only
    assert not np.array_equal(nested_anchors(pool, [50], seed=4)[50], out[50])


@pytest.mark.parametrize(
    ("pool", "budgets", "match"),
    [
        (10, [11], "budgets holds 11, but each budget must be an int between 1 and the pool's 10 rows"),
        (10, [0], "budgets holds 0"),
        (10, ["half"], "budgets holds 'half'"),
        (10, [2.5], "budgets holds 2.5"),
        (10, [], "budgets is empty"),
        (np.array([], dtype=np.int64), [1], "pool must be a positive int or a non-empty 1-D array"),
    ],
)
def test_nested_anchors_rejects_budgets_outside_the_pool(pool, budgets, match):
    with pytest.raises(ValueError, match=match):
        nested_anchors(pool, budgets, seed=0)


def test_nonlinearity_note_sorts_budgets_into_pays_behind_and_level():
    means = {
        300: {"affine": 0.70, "ortho": 0.72, "mlp": 0.74, "kernel_ridge": 0.60},  # mlp +0.02 over ortho: pays
        50: {"affine": 0.50, "ortho": 0.40, "mlp": 0.45, "kernel_ridge": 0.30},  # both below affine: behind
        1000: {"affine": 0.80, "ortho": 0.79, "mlp": 0.805, "kernel_ridge": 0.79},  # within 0.01: level
    }
    note = nonlinearity_note(means, linear=["affine", "ortho"], nonlinear=["mlp", "kernel_ridge"])
    assert note.index("50 anchors:") < note.index("300 anchors:") < note.index("1000 anchors:")
    assert "300 anchors: mlp +0.020, kernel ridge -0.120 (best linear: ortho 0.720)" in note
    assert "50 anchors: mlp -0.050, kernel ridge -0.200 (best linear: affine 0.500)" in note
    assert note.endswith("Nonlinearity pays at 300 anchors; it falls behind at 50 anchors; level at 1000 anchors.")
    wide = nonlinearity_note(means, linear=["affine", "ortho"], nonlinear=["mlp"], tolerance=0.1)
    assert wide.endswith(
        "Nonlinearity pays at no budget; it falls behind at no budget; level at 50, 300, 1000 anchors."
    )


def test_plot_budget_curves_writes_one_panel_per_group(tmp_path):
    pytest.importorskip("matplotlib")
    curves = {
        "task a": {"mlp": {50: (0.4, 0.05), 300: (0.7, 0.02)}, "ortho": {50: (0.5, 0.0), 300: (0.72, 0.0)}},
        "task b": {"mlp": {50: (0.3, 0.0), 300: (0.5, 0.0)}},
    }
    out = plot_budget_curves(
        curves, tmp_path / "b.png", title="t", ylabel="macro F1", reference={"task a": 0.8, "task b": 0.6}
    )
    assert out == tmp_path / "b.png" and out.stat().st_size > 0
