"""The one moments accumulator (CrossStats): optional parts, fourth-order sums, exact merging, re-centring."""

from __future__ import annotations

from functools import reduce

import numpy as np
import pytest
import torch

from latentalign.evaluation import SimilarityEvaluator
from latentalign.functional.moments import FOURTH_ORDER, CrossStats, compute_stats, is_finite, shift_fourth
from latentalign.functional.similarity import moment_flags, moment_stats, similarity_scores

F64 = torch.float64
PARTS = ("cxx", "cyy", "cxy", "ssx", "ssy", *FOURTH_ORDER)


def direct(X: np.ndarray, Y: np.ndarray, centre_x=None, centre_y=None) -> dict[str, torch.Tensor]:
    """Every statistic written out from its definition (float64), about the means or the given centres."""
    X, Y = torch.as_tensor(X, dtype=F64), torch.as_tensor(Y, dtype=F64)
    u = X - (X.mean(0) if centre_x is None else centre_x)
    v = Y - (Y.mean(0) if centre_y is None else centre_y)
    a, b = (u * u).sum(1), (v * v).sum(1)
    return {
        "cxx": u.T @ u,
        "cyy": v.T @ v,
        "cxy": u.T @ v,
        "ssx": (u * u).sum(0),
        "ssy": (v * v).sum(0),
        "saa": a @ a,
        "sbb": b @ b,
        "sab": a @ b,
        "sxa": u.T @ a,
        "sxb": u.T @ b,
        "sya": v.T @ a,
        "syb": v.T @ b,
    }


def assert_matches(stats: CrossStats, ref: dict[str, torch.Tensor], rtol: float) -> None:
    for name in PARTS:
        got, want = getattr(stats, name), ref[name]
        assert got is not None, name
        err = float((got - want).abs().max() / want.abs().max())
        assert err < rtol, (name, err)


def drifting(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose mean drifts far from the first block's (the reference shift) and a large offset."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 7)) + np.linspace(0.0, 30.0, n)[:, None]
    Y = X[:, :4] @ rng.standard_normal((4, 5)) + rng.standard_normal((n, 5)) - 200.0
    return X, Y


@pytest.mark.parametrize("block_rows", [None, 1, 97, 1000])
def test_every_part_equals_its_definition(block_rows):
    X, Y = drifting()
    stats = compute_stats(torch.from_numpy(X), torch.from_numpy(Y), squares=True, fourth=True, block_rows=block_rows)
    assert stats.has_squares and stats.has_gram and stats.has_gram_y and stats.has_fourth
    assert_matches(stats, direct(X, Y), rtol=1e-10)


def test_float32_inputs_with_float64_products_match_the_float64_data():
    X, Y = drifting(seed=1)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    stats = compute_stats(torch.from_numpy(X32), torch.from_numpy(Y32), squares=True, fourth=True, product_dtype=F64)
    assert_matches(stats, direct(X32, Y32), rtol=1e-10)


def test_optional_parts_only_when_asked():
    X, Y = drifting(200)
    tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
    plain = compute_stats(tX, tY)
    assert (plain.has_squares, plain.has_gram, plain.has_gram_y, plain.has_fourth) == (False, False, False, False)
    only_y = compute_stats(tX, tY, gram_y=True)
    assert only_y.cxx is None and only_y.has_gram_y and only_y.saa is None
    torch.testing.assert_close(only_y.gram_y(), direct(X, Y)["cyy"], rtol=1e-12, atol=1e-9)
    # The fourth-order sums cannot be moved without both Gram matrices, so asking for them adds those.
    assert compute_stats(tX, tY, fourth=True).has_gram
    # Parts asked for do not change the others: same block GEMMs whatever the flags.
    everything = compute_stats(tX, tY, squares=True, fourth=True)
    assert torch.equal(plain.cxy, everything.cxy) and torch.equal(only_y.cyy, everything.cyy)


def test_missing_parts_raise_naming_the_flag():
    stats = compute_stats(torch.ones(4, 2, dtype=F64), torch.ones(4, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"without the per-column sums of squares; compute them with squares=True"):
        stats.squares()
    with pytest.raises(ValueError, match=r"without the Gram matrix X\^T X; compute them with gram=True"):
        stats.gram()
    with pytest.raises(ValueError, match=r"without the Gram matrix Y\^T Y; compute them with gram_y=True"):
        stats.gram_y()
    with pytest.raises(ValueError, match=r"without the fourth-order sums; compute them with fourth=True"):
        stats.fourth()


@pytest.mark.parametrize("cuts", [[1500], [1, 2, 3, 2999], list(range(0, 3000, 250))[1:]])
def test_merge_is_exact_for_every_part(cuts):
    X, Y = drifting()
    tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
    bounds = list(zip([0, *cuts], [*cuts, 3000]))
    parts = [compute_stats(tX[a:b], tY[a:b], squares=True, fourth=True) for a, b in bounds]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged + part
    assert merged.n == 3000 and merged.has_fourth
    assert_matches(merged, direct(X, Y), rtol=1e-10)
    # Merging in another order (two halves, each merged right to left) gives the same statistics.
    mid = len(parts) // 2
    tree = reduce(lambda a, b: b + a, parts[:mid][::-1]) + reduce(lambda a, b: b + a, parts[mid:][::-1])
    assert_matches(tree, direct(X, Y), rtol=1e-10)


def test_merge_keeps_the_fourth_order_sums_only_when_both_sides_have_them():
    X, Y = drifting(100)
    tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
    with_fourth = compute_stats(tX[:50], tY[:50], fourth=True)
    grams_only = compute_stats(tX[50:], tY[50:], gram=True, gram_y=True)
    merged = with_fourth + grams_only
    assert merged.has_gram and merged.has_gram_y and not merged.has_fourth and merged.saa is None


def test_shift_fourth_moves_to_any_centre_and_back():
    X, Y = drifting(500)
    stats = compute_stats(torch.from_numpy(X), torch.from_numpy(Y), fourth=True)
    dx = torch.tensor([3.0, -1.0, 0.5, 2.0, 0.0, -4.0, 1.0], dtype=F64)
    dy = torch.tensor([10.0, -2.0, 0.0, 1.0, 7.0], dtype=F64)
    zx, zy = torch.zeros(7, dtype=F64), torch.zeros(5, dtype=F64)
    moved = shift_fourth(stats.fourth(), stats.n, zx, zy, stats.gram(), stats.gram_y(), stats.cxy, dx, dy)
    ref = direct(X, Y, torch.from_numpy(X.mean(0)) + dx, torch.from_numpy(Y.mean(0)) + dy)
    for name in FOURTH_ORDER:
        torch.testing.assert_close(moved[name], ref[name], rtol=1e-10, atol=1e-6 * float(ref[name].abs().max()))
    # Back to the means, from the sums (sum u = -n dx, Gram matrices) about the moved centre.
    n = stats.n
    back = shift_fourth(moved, n, -n * dx, -n * dy, ref["cxx"], ref["cyy"], ref["cxy"], -dx, -dy)
    for name in FOURTH_ORDER:
        want = stats.fourth()[name]
        torch.testing.assert_close(back[name], want, rtol=1e-9, atol=1e-9 * float(ref[name].abs().max()))


def test_round_trip_through_dict_and_device_keeps_the_fourth_order_sums():
    X, Y = drifting(64)
    stats = compute_stats(torch.from_numpy(X), torch.from_numpy(Y), squares=True, fourth=True)
    state = stats.to_dict()
    assert set(FOURTH_ORDER) <= set(state) and "cyy" in state
    again = CrossStats.from_dict(state).to("cpu")
    for name in PARTS:
        assert torch.equal(getattr(again, name), getattr(stats, name)), name


def test_non_finite_inputs_make_every_part_non_finite():
    X = torch.randn(20, 3, dtype=F64)
    X[5, 1] = float("nan")
    stats = compute_stats(X, torch.randn(20, 2, dtype=F64), fourth=True)
    assert not is_finite(stats)
    assert not bool(torch.isfinite(stats.saa))


def test_similarity_asks_only_for_what_it_reads():
    assert moment_flags(["linear_cka"]) == {"squares": True, "gram": True, "gram_y": True, "fourth": False}
    assert moment_flags(["unbiased_cka"])["fourth"]
    X = torch.randn(30, 4, dtype=F64)
    assert not moment_stats(X, X, ["procrustes_distance"]).has_gram
    assert moment_stats(X, X, ["svcca", "unbiased_cka"]).has_fourth


def test_evaluator_with_single_row_batches_equals_the_function():
    X, Y = drifting(40, seed=3)
    metrics = ("linear_cka", "unbiased_cka", "svcca", "procrustes_distance")
    ev = SimilarityEvaluator(metrics=metrics)
    for i in range(40):  # every merge has a one-row side (a side whose own centred sums are all zero)
        ev.update(X[i : i + 1], Y[i : i + 1])
    expected = similarity_scores(X, Y, metrics=metrics)
    got = ev.compute()
    for name in metrics:
        assert got[name] == pytest.approx(expected[name], abs=1e-10), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_statistics_equal_the_cpu_ones():
    X, Y = drifting()
    tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
    cpu = compute_stats(tX, tY, squares=True, fourth=True, block_rows=700)
    gpu = compute_stats(tX.cuda(), tY.cuda(), squares=True, fourth=True, block_rows=700).to("cpu")
    assert_matches(gpu, {name: getattr(cpu, name) for name in PARTS}, rtol=1e-10)
