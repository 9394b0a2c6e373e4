"""Per-match confidence (margins, CSLS margins, OT coupling mass) and reliability curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentalign.evaluation import match_confidence, reliability_curve
from latentalign.functional.ot import ot_plan
from latentalign.functional.retrieval import csls_scores


@pytest.fixture(scope="module")
def noisy():
    """Keys and noisy copies of them as queries; query i <-> key i; harder queries carry more noise."""
    rng = np.random.default_rng(0)
    K = rng.standard_normal((150, 12))
    noise = np.linspace(0.2, 1.5, 150)[:, None]
    Q = K + noise * rng.standard_normal((150, 12))
    return Q, K


def test_margin_is_top1_minus_top2_cosine(noisy):
    Q, K = noisy
    match, conf = match_confidence(Q, K, kind="margin")
    cos = (Q / np.linalg.norm(Q, axis=1, keepdims=True)) @ (K / np.linalg.norm(K, axis=1, keepdims=True)).T
    top = np.sort(cos, axis=1)[:, ::-1]
    np.testing.assert_array_equal(match, cos.argmax(1))
    np.testing.assert_allclose(conf, top[:, 0] - top[:, 1], atol=1e-12)


def test_csls_margin_is_top1_minus_top2_csls(noisy):
    Q, K = noisy
    match, conf = match_confidence(Q, K, kind="csls_margin", csls_k=5)
    S = csls_scores(Q, K, k=5)
    top = np.sort(S, axis=1)[:, ::-1]
    np.testing.assert_array_equal(match, S.argmax(1))
    np.testing.assert_allclose(conf, top[:, 0] - top[:, 1], atol=1e-10)


def test_coupling_confidence_is_the_row_share_of_the_chosen_key(noisy):
    Q, K = noisy
    match, conf = match_confidence(Q, K, kind="coupling", reg=0.05)
    P = ot_plan(Q, K, method="sinkhorn", reg=0.05, metric="cosine")
    np.testing.assert_array_equal(match, P.argmax(1))
    np.testing.assert_allclose(conf, P.max(1) * len(Q), rtol=1e-10)
    assert conf.min() > 0 and conf.max() <= 1 + 1e-6


@pytest.mark.parametrize("kind", ["margin", "csls_margin", "coupling"])
def test_confidence_is_informative_on_planted_noise(noisy, kind):
    Q, K = noisy
    match, conf = match_confidence(Q, K, kind=kind)
    correct = match == np.arange(len(Q))
    curve = reliability_curve(conf, correct, n_bins=3, probabilities=kind == "coupling")
    accuracies = [b["accuracy"] for b in curve.bins]
    assert 0.3 < curve.accuracy < 0.95  # some right, some wrong: a real test of the ranking
    assert accuracies[0] < accuracies[-1]
    assert curve.auroc > 0.7


def test_torch_in_torch_out(noisy):
    Q, K = (torch.from_numpy(a) for a in noisy)
    match, conf = match_confidence(Q, K, kind="margin")
    ref_match, ref_conf = match_confidence(*noisy, kind="margin")
    assert isinstance(match, torch.Tensor) and isinstance(conf, torch.Tensor)
    np.testing.assert_array_equal(match.numpy(), ref_match)
    np.testing.assert_allclose(conf.numpy(), ref_conf)


def test_reliability_bins_ranks_and_auroc_by_hand():
    conf = np.array([0.9, 0.1, 0.5, 0.7, 0.3, 0.2])
    correct = np.array([1, 0, 1, 0, 1, 0])
    curve = reliability_curve(conf, correct, n_bins=2)
    low, high = curve.bins
    assert (low["count"], high["count"]) == (3, 3)
    assert low["confidence_low"] == 0.1 and low["confidence_high"] == 0.3 and high["confidence_low"] == 0.5
    assert low["accuracy"] == pytest.approx(1 / 3) and high["accuracy"] == pytest.approx(2 / 3)
    assert low["mean_rank"] == pytest.approx(0.25) and high["mean_rank"] == pytest.approx(0.75)
    # correct scores 0.9, 0.5, 0.3 vs wrong 0.7, 0.2, 0.1: 7 of the 9 (correct, wrong) pairs are ordered right
    assert curve.auroc == pytest.approx(7 / 9)
    assert curve.ece is None and curve.accuracy == 0.5 and curve.n == 6


def test_auroc_agrees_with_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    conf = np.round(rng.random(200), 1)  # many ties
    correct = rng.random(200) < conf
    assert reliability_curve(conf, correct).auroc == pytest.approx(roc_auc_score(correct, conf))


def test_ece_of_calibrated_and_overconfident_scores():
    rng = np.random.default_rng(2)
    conf = rng.random(20_000)
    calibrated = reliability_curve(conf, rng.random(20_000) < conf, probabilities=True)
    assert calibrated.ece < 0.02
    # always right half of the time whatever the score: ECE = mean |0.5 - bin confidence| = 0.25
    coin = reliability_curve(conf, rng.random(20_000) < 0.5, probabilities=True)
    assert coin.ece == pytest.approx(0.25, abs=0.02)


def test_one_class_has_no_auroc():
    curve = reliability_curve(np.array([0.1, 0.2]), np.array([True, True]))
    assert curve.auroc is None and curve.accuracy == 1.0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: match_confidence(np.ones((3, 2)), np.ones((3, 2)), kind="entropy"), ValueError, "kind"),
        (lambda: match_confidence(np.ones((3, 2)), np.ones((1, 2))), ValueError, "K has 1 row, but"),
        (lambda: match_confidence(np.ones((3, 2)), np.ones((3, 4))), ValueError, "features"),
        (lambda: match_confidence(np.ones((3, 2)), np.eye(2), kind="coupling", reg=0), ValueError, "reg must be > 0"),
        (lambda: reliability_curve([0.1, 0.2], [True]), ValueError, "one entry per confidence value"),
        (lambda: reliability_curve([[0.1]], [True]), ValueError, "confidence must be a non-empty 1-D array"),
        (lambda: reliability_curve([0.1, 0.2], [2, 0]), ValueError, "correct must hold booleans or 0/1"),
        (lambda: reliability_curve([0.1, np.nan], [1, 0]), ValueError, "confidence contains NaN"),
        (lambda: reliability_curve([0.1, 0.2], [1, 0], n_bins=0), ValueError, "n_bins must be >= 1"),
        (lambda: reliability_curve([0.1, 1.5], [1, 0], probabilities=True), ValueError, r"in \[0, 1\]"),
    ],
)
def test_bad_inputs_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_reliability_plot_png_and_svg(tmp_path, noisy):
    matplotlib = pytest.importorskip("matplotlib")
    from latentalign.reports import plot_reliability

    Q, K = noisy
    curves = {}
    for kind in ("margin", "coupling"):
        match, conf = match_confidence(Q, K, kind=kind)
        curves[kind] = reliability_curve(conf, match == np.arange(len(Q)), n_bins=5, probabilities=kind == "coupling")
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        out = plot_reliability(curves, tmp_path / "rel.png", title="planted")
    svg = (tmp_path / "rel.svg").read_text()
    assert out == tmp_path / "rel.png" and out.stat().st_size > 0
    assert f"ECE {curves['coupling'].ece:.3f}" in svg and "perfect calibration" in svg
    assert f"AUROC {curves['margin'].auroc:.2f}" in svg


# ------------------------------------------------------------------------------------------ calibration
@pytest.fixture(scope="module")
def planted_sigmoid():
    """Confidences in [0, 1] whose match is right with probability sigmoid(3c): far from c itself."""
    rng = np.random.default_rng(3)
    conf = rng.random(8000)
    correct = rng.random(8000) < 1 / (1 + np.exp(-3 * conf))
    return conf[:4000], correct[:4000], conf[4000:], correct[4000:]


@pytest.mark.parametrize(("method", "max_ece"), [("sigmoid", 0.03), ("isotonic", 0.03)])
def test_calibration_recovers_planted_probability_on_a_held_out_draw(planted_sigmoid, method, max_ece):
    from latentalign.evaluation import calibrate_confidence

    conf_fit, right_fit, conf_new, right_new = planted_sigmoid
    raw = reliability_curve(conf_new, right_new, probabilities=True)
    assert raw.ece > 0.2  # the raw score is no probability of being right
    p = calibrate_confidence(conf_fit, right_fit, method=method).predict(conf_new)
    assert p.shape == conf_new.shape and p.min() >= 0.0 and p.max() <= 1.0
    assert reliability_curve(p, right_new, probabilities=True).ece < max_ece
    # against the planted truth itself, not only the sampled flags (isotonic is a step function: on average)
    assert np.abs(p - 1 / (1 + np.exp(-3 * conf_new))).mean() < 0.03


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibrated_probability_rises_with_confidence_and_stays_in_range(method):
    from latentalign.evaluation import ConfidenceCalibrator

    conf = np.linspace(0.0, 1.0, 60)
    correct = conf > 0.5  # separates perfectly: the sigmoid's slope must stay finite
    calibrator = ConfidenceCalibrator(method=method).fit(conf, correct)
    p = calibrator.predict(np.array([-5.0, 0.0, 0.25, 0.75, 1.0, 5.0]))
    assert np.all(np.diff(p) >= 0) and p[0] < 0.5 < p[-1] and p.min() >= 0.0 and p.max() <= 1.0
    np.testing.assert_array_equal(calibrator.transform(conf), calibrator.predict(conf))
    assert calibrator.n_calibration_ == 60 and calibrator.accuracy_ == pytest.approx(0.5)


def test_calibrator_is_a_scikit_learn_estimator_and_keeps_torch():
    from sklearn.base import clone

    from latentalign.evaluation import ConfidenceCalibrator

    calibrator = ConfidenceCalibrator(method="sigmoid")
    assert clone(calibrator).get_params() == {"method": "sigmoid"}
    conf = torch.linspace(0.0, 1.0, 20, dtype=torch.float64)
    calibrator.fit(conf, conf > 0.3)
    p = calibrator.predict(conf)
    assert isinstance(p, torch.Tensor) and p.dtype == torch.float64
    np.testing.assert_allclose(p.numpy(), calibrator.predict(conf.numpy()))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda c: c(np.ones(3), np.array([1, 0])), ValueError, r"one entry per confidence value \(3\), got 2"),
        (lambda c: c(np.ones(3), np.array([1, 0, 2])), ValueError, "correct must hold booleans or 0/1"),
        (lambda c: c(np.array([0.1, np.inf]), np.array([1, 0])), ValueError, "confidence contains NaN"),
        (
            lambda c: c(np.ones(3), np.ones(3, dtype=bool)),
            ValueError,
            "every one of the 3 calibration matches right, so the confidence cannot be calibrated",
        ),
        (lambda c: c(np.ones(4), np.zeros(4)), ValueError, "matches wrong, so the confidence cannot be calibrated"),
        (lambda c: c(np.ones(2), np.array([1, 0]), method="platt"), ValueError, "method='platt' is not supported"),
    ],
)
def test_calibration_errors_are_named(call, error, match):
    from latentalign.evaluation import calibrate_confidence

    with pytest.raises(error, match=match):
        call(calibrate_confidence)


def test_predict_before_fit_says_not_fitted():
    from latentalign.evaluation import ConfidenceCalibrator
    from latentalign.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted"):
        ConfidenceCalibrator().predict(np.ones(2))


# ------------------------------------------------------------------------------------------ experiment page
@pytest.mark.parametrize(
    ("correct_from", "verdict", "ours"),
    [
        (0.25, "pass", "least confident bin 0.000, most 1.000; AUROC 1.000; 10 of 40 matches wrong"),
        (0.05, "not evaluable", "2 of 40 matches wrong (fewer than 3 wrong: too few errors to rank)"),
        (2.0, "not evaluable", "40 of 40 matches wrong (all wrong)"),
    ],
)
def test_informative_check_needs_enough_errors_to_decide(correct_from, verdict, ours):
    from latentalign.experiments.confidence import informative_check

    conf = np.linspace(0.0, 1.0, 40)
    check = informative_check(
        reliability_curve(conf, conf >= correct_from, n_bins=4), "toy", min_auroc=0.65, min_errors=3
    )
    assert check.verdict == verdict and ours in check.ours
    assert (
        check.claim
        == "toy: accuracy rises with confidence (least confident bin below the most confident one, AUROC >= 0.65)"
    )


def test_informative_check_fails_a_confidence_that_ranks_errors_first():
    from latentalign.experiments.confidence import informative_check

    conf = np.linspace(0.0, 1.0, 40)
    check = informative_check(reliability_curve(conf, conf < 0.5, n_bins=4), "reversed", min_auroc=0.65, min_errors=3)
    assert check.passed is False and "AUROC 0.000; 20 of 40 matches wrong" in check.ours


def test_calibration_split_halves_are_disjoint_and_seeded():
    from latentalign.experiments.confidence import calibration_split

    calibrate, evaluate = calibration_split(193, seed=0)
    assert len(calibrate) == 96 and len(evaluate) == 97 and not set(calibrate) & set(evaluate)
    assert sorted([*calibrate, *evaluate]) == list(range(193))
    np.testing.assert_array_equal(calibration_split(193, seed=0)[0], calibrate)
    assert not np.array_equal(calibration_split(193, seed=1)[0], calibrate)


def test_calibration_result_uses_the_halves_it_is_given(planted_sigmoid):
    from latentalign.experiments.confidence import calibration_result

    conf, correct = planted_sigmoid[0][:400], planted_sigmoid[1][:400]
    res = calibration_result(conf, correct, np.arange(200), np.arange(200, 400), n_bins=10, n_floor_draws=50)
    assert res["n_calibration"] == res["n_evaluation"] == 200
    assert res["wrong_evaluation"] == int((~correct[200:]).sum())
    assert res["ece_before"] == pytest.approx(reliability_curve(conf[200:], correct[200:], probabilities=True).ece)
    assert res["ece_after"]["sigmoid"] < res["ece_before"] and res["ece_after"]["isotonic"] < res["ece_before"]
    assert 0 < res["ece_floor_mean"] <= res["ece_floor_95"] and 0.0 <= res["ece_floor_share_above"] <= 1.0
    # a calibration half with no wrong match: nothing to calibrate
    right_first = np.r_[np.ones(200, dtype=bool), correct[200:]]
    stuck = calibration_result(conf, right_first, np.arange(200), np.arange(200, 400), n_bins=10)
    assert stuck["ece_after"] == {"sigmoid": None, "isotonic": None}


@pytest.mark.parametrize(
    ("after", "wrong_cal", "wrong_eval", "verdict", "ours"),
    [
        (0.04, 9, 8, "pass", "ECE 0.040 after, 0.200 before; 8 of 50 evaluation matches wrong (9 of 50 in"),
        (0.09, 9, 8, "FAIL", "ECE 0.090 after"),
        (0.01, 9, 2, "not evaluable", "(fewer than 3 wrong: too few errors to judge)"),
        (None, 0, 8, "not evaluable", "cannot be calibrated: 0 of 50 calibration matches wrong"),
    ],
)
def test_calibration_check_verdicts(after, wrong_cal, wrong_eval, verdict, ours):
    from latentalign.experiments.confidence import calibration_check

    res = {
        "n_calibration": 50,
        "wrong_calibration": wrong_cal,
        "n_evaluation": 50,
        "wrong_evaluation": wrong_eval,
        "ece_before": 0.2,
        "ece_after": {"sigmoid": after},
        "ece_floor_mean": 0.03,
        "ece_floor_95": 0.05,
    }
    check = calibration_check(res, "toy", method="sigmoid", max_ece=0.05, min_errors=3)
    assert check.verdict == verdict and ours in check.ours
    assert (
        check.claim == "toy: after sigmoid calibration on half of the held-out queries, ECE <= 0.05 on the other half"
    )


def test_confidence_config_loads_and_states_its_sources():
    from latentalign.experiments import load_config

    config, reduced = load_config("confidence"), load_config("confidence", reduced=True)
    assert config["runner"] == "latentalign.experiments.confidence:run"
    for key in ("citation", "table", "differences", "sources"):
        assert config["paper"].get(key), key
    assert reduced["reduced_run"] and reduced["setup"] != config["setup"]
    assert reduced["setup"]["n_bootstrap"] < config["setup"]["n_bootstrap"]


@pytest.mark.slow
def test_confidence_experiment_reduced_run_on_real_captions(tmp_path):
    import json

    from latentalign.experiments import run_experiment

    result, page = run_experiment("confidence", reduced=True, out_dir=tmp_path)
    informative, calibrated = result.checks[:6], result.checks[6:]
    assert all(c.passed is not False for c in informative), [c for c in informative if c.passed is False]
    assert [r["confidence"] for r in result.rows] == ["cosine margin", "CSLS margin", "OT coupling mass"] * 2
    assert [r["setting"] for r in result.rows] == ["Procrustes on 451 pairs"] * 3 + [
        "Procrustes on 100 pairs (harder)"
    ] * 3
    for row, check in zip(result.rows, informative, strict=True):
        if row["wrong matches"] < 3:  # too few errors to rank: neither pass nor FAIL
            assert check.verdict == "not evaluable", check
            continue
        # the real pair: accuracy rises from the least to the most confident bin
        assert check.verdict == "pass", check
        assert row["accuracy, least confident bin"] < row["accuracy, most confident bin"] and row["AUROC"] > 0.65
    assert all(row["wrong matches"] >= 3 for row in result.rows[3:])  # the harder fit leaves errors to rank
    assert result.rows[0]["recall@1_low"] <= result.rows[0]["recall@1_high"]
    # calibration: one check per row, decided by the evaluation half's ECE when it holds enough errors
    for row, check in zip(result.rows, calibrated, strict=True):
        assert "after sigmoid calibration on half of the held-out queries, ECE <= 0.05" in check.claim
        after = row["ECE after sigmoid, evaluation half"]
        if row["wrong, evaluation half"] < 3 or after is None:
            assert check.verdict == "not evaluable", check
        else:
            assert check.passed == (after <= 0.05), check
    for row in result.rows[3:]:  # the harder fit: calibration brings every score much closer to a probability
        for method in ("sigmoid", "isotonic"):
            assert row[f"ECE after {method}, evaluation half"] < 0.2, row
        if row["ECE before, evaluation half"] is not None:
            assert row["ECE after sigmoid, evaluation half"] < row["ECE before, evaluation half"] - 0.1, row
    for name in ("confidence", "confidence_harder", "confidence_calibrated", "confidence_harder_calibrated"):
        assert (tmp_path / f"{name}.png").exists() and (tmp_path / f"{name}.svg").exists()
    record = json.loads((tmp_path / "confidence.json").read_text())
    assert record["details"]["bootstrap"]["n"] == 20 and len(record["details"]["curves"]) == 3
    assert len(record["details"]["curves_harder"]) == 3 and record["details"]["n_train_harder"] == 100
    split = record["details"]["calibration_split"]
    assert (
        not set(split["calibrate"]) & set(split["evaluate"]) and len(split["calibrate"]) + len(split["evaluate"]) == 193
    )
    assert "95 % bootstrap interval over pairs, n=20" in page.read_text()


def test_gloss_sample_reuses_the_stratified_sample_and_adds_disjoint_seeded_definitions():
    from latentalign.experiments.confidence import gloss_sample
    from latentalign.experiments.text_stitching import wordnet_sample

    parts = gloss_sample(3, 40, seed=0)
    (ids, texts, name), (extra_ids, extra_texts, extra_name) = parts
    assert ids == wordnet_sample(3, 0)[0] and name == "wordnet/definitions-3pc-seed0"  # the cached sample's key
    assert len(extra_ids) == len(extra_texts) == 40 and not set(extra_ids) & set(ids)
    assert len(set(extra_ids)) == 40 and all(extra_texts) and extra_name != name
    assert gloss_sample(3, 40, seed=0)[1][0] == extra_ids and gloss_sample(3, 40, seed=1)[1][0] != extra_ids
    assert len(gloss_sample(3, 0, seed=0)) == 1


def test_confidence_config_sizes_the_wordnet_setting_for_a_thousand_evaluation_queries():
    from latentalign.experiments import load_config
    from latentalign.experiments.confidence import calibration_split
    from latentalign.experiments.text_stitching import wordnet_sample

    setup = load_config("confidence")["setup"]
    n = len(wordnet_sample(int(setup["wordnet_per_category"]), int(setup["seed"]))[0]) + int(setup["wordnet_extra"])
    held_out = n - int(setup["wordnet_n_train"])
    assert len(calibration_split(held_out, 0)[1]) >= 1000
    assert int(setup["wordnet_n_train"]) < 384  # under-determined for MiniLM, so matches go wrong
    assert load_config("confidence", reduced=True)["setup"]["wordnet_per_category"] == 0  # full run only
