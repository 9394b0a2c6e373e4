"""Bootstrap intervals over pairs: calibrated on planted truth, narrower with more pairs, seeded, checked inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentalign.align import Procrustes
from latentalign.evaluation import BootstrapResult, bootstrap
from latentalign.evaluation.bootstrap import bca_interval, resolve_metric

ANGLE = 0.5


def _rotation(theta: float) -> np.ndarray:
    return np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])


def _planted(n: int, seed: int, noise: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Y = X R(ANGLE) + isotropic noise in 2-D."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    return X, X @ _rotation(ANGLE) + noise * rng.standard_normal((n, 2))


def fitted_angle(aligner, X_test, Y_test) -> float:
    """The rotation angle the fitted map applies (read off the images of the unit vectors)."""
    images = np.asarray(aligner.transform(np.array([[0.0, 0.0], [1.0, 0.0]])))
    return float(np.arctan2(images[1, 1] - images[0, 1], images[1, 0] - images[0, 0]))


@pytest.fixture(scope="module")
def pairs():
    X, Y = _planted(120, seed=1, noise=0.3)
    return X[:80], Y[:80], X[80:], Y[80:]


def test_percentile_interval_covers_the_planted_angle_about_95_percent_of_the_time():
    # Isotropic noise is rotation-invariant, so the fitted angle is symmetric about the true one: its
    # expectation over draws of the pairs is exactly ANGLE. 100 independent draws, each with its interval.
    test = _planted(4, seed=10_000)
    covered, widths = 0, []
    for rep in range(100):
        X, Y = _planted(40, seed=rep)
        res = bootstrap(Procrustes(), X, Y, fitted_angle, n=50, test=test, random_state=rep)
        covered += res.low <= ANGLE <= res.high
        widths.append(res.high - res.low)
    assert covered >= 85, covered
    assert covered < 100 or np.mean(widths) < 0.6  # not covering by being uselessly wide
    assert 0.1 < np.mean(widths) < 0.6


def test_interval_shrinks_as_the_number_of_pairs_grows():
    test = _planted(4, seed=99)
    widths = []
    for n_pairs in (30, 300):
        X, Y = _planted(n_pairs, seed=n_pairs)
        res = bootstrap(Procrustes(), X, Y, fitted_angle, n=50, test=test, random_state=0)
        widths.append(res.high - res.low)
    # the spread of an estimate from n pairs falls like 1 / sqrt(n): sqrt(10) ~ 3.2 here
    assert widths[1] < widths[0] / 2, widths


def test_seeded_runs_are_identical_and_seeds_differ(pairs):
    X, Y, Xt, Yt = pairs
    a = bootstrap(Procrustes(), X, Y, fitted_angle, n=20, test=(Xt, Yt), random_state=3)
    b = bootstrap(Procrustes(), X, Y, fitted_angle, n=20, test=(Xt, Yt), random_state=3)
    c = bootstrap(Procrustes(), X, Y, fitted_angle, n=20, test=(Xt, Yt), random_state=4)
    np.testing.assert_array_equal(a.replicates, b.replicates)
    assert (a.low, a.high, a.estimate) == (b.low, b.high, b.estimate)
    assert not np.array_equal(a.replicates, c.replicates)


def test_threads_give_the_same_replicates(pairs):
    X, Y, Xt, Yt = pairs
    one = bootstrap(Procrustes(), X, Y, "mrr", n=12, test=(Xt, Yt), random_state=0)
    two = bootstrap(Procrustes(), X, Y, "mrr", n=12, test=(Xt, Yt), random_state=0, n_jobs=2)
    np.testing.assert_array_equal(one.replicates, two.replicates)


def test_result_fields_and_record_row(pairs):
    X, Y, Xt, Yt = pairs
    res = bootstrap(Procrustes(), X, Y, "recall@1", n=30, test=(Xt, Yt), random_state=0)
    assert isinstance(res, BootstrapResult)
    assert res.n == 30 and res.n_pairs == 80 and res.held_out == "test" and res.confidence == 0.95
    # the point estimate is the map fitted on all pairs
    from latentalign.functional.retrieval import retrieval_scores

    full = Procrustes().fit(X, Y)
    assert res.estimate == retrieval_scores(full.transform(Xt), Yt, k=1)["recall@1"]
    assert res.low == np.quantile(res.replicates, 0.025) and res.high == np.quantile(res.replicates, 0.975)
    row = res.as_row()
    assert row == {
        "recall@1": res.estimate,
        "recall@1_low": res.low,
        "recall@1_high": res.high,
        "recall@1_interval": "95 % bootstrap interval over pairs, n=30",
    }
    assert res.to_dict()["replicates"] == res.replicates.tolist()


def test_out_of_bag_scores_each_replicate_on_the_pairs_it_left_out():
    # a metric that reports how many held-out rows it got and whether any was in the training draw
    X, Y = _planted(50, seed=0)
    X = np.column_stack([X, np.arange(50.0)])  # column 2 = row id
    Y = np.column_stack([Y, np.arange(50.0)])
    seen: list[tuple[set, set]] = []

    class Recorder(Procrustes):
        def fit(self, X, Y):
            super().fit(X, Y)
            self.ids_ = set(np.asarray(X)[:, 2].astype(int).tolist())
            return self

    def held_out_share(aligner, X_test, Y_test):
        seen.append((aligner.ids_, set(np.asarray(X_test)[:, 2].astype(int).tolist())))
        return len(X_test) / 50

    res = bootstrap(Recorder(), X, Y, held_out_share, n=40, random_state=0)
    assert res.held_out == "out-of-bag" and len(seen) == 40
    for train, held in seen:
        assert train.isdisjoint(held) and train | held == set(range(50))
    assert abs(res.estimate - np.exp(-1)) < 0.05  # (1 - 1/n)^n of the rows stay out of a draw
    assert res.estimate == pytest.approx(res.replicates.mean())


def test_torch_inputs(pairs):
    X, Y, Xt, Yt = (torch.from_numpy(a) for a in pairs)
    res = bootstrap(Procrustes(), X, Y, "recall@1", n=10, test=(Xt, Yt), random_state=0)
    ref = bootstrap(Procrustes(), *pairs[:2], "recall@1", n=10, test=pairs[2:], random_state=0)
    np.testing.assert_allclose(res.replicates, ref.replicates)


def test_bca_interval_matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    data = rng.exponential(size=40)  # skewed: BCa differs from the percentile interval
    ref = stats.bootstrap((data,), np.mean, n_resamples=999, method="BCa", rng=np.random.default_rng(1))
    jack = np.array([np.delete(data, i).mean() for i in range(data.size)])
    low, high, a = bca_interval(ref.bootstrap_distribution, data.mean(), jack, 0.95)
    np.testing.assert_allclose([low, high], [ref.confidence_interval.low, ref.confidence_interval.high], rtol=1e-12)
    assert a > 0


def test_bca_interval_on_a_fit(pairs):
    X, Y, Xt, Yt = pairs
    res = bootstrap(Procrustes(), X[:30], Y[:30], fitted_angle, n=60, test=(Xt, Yt), random_state=0, bca=True)
    assert res.bca_low is not None and res.bca_low < res.estimate < res.bca_high
    assert abs(res.acceleration) < 0.1
    assert res.as_row()["fitted_angle_low"] == res.bca_low
    assert res.describe() == "95 % BCa bootstrap interval over pairs, n=60"


def test_degenerate_replicates_make_bca_raise():
    with pytest.raises(ValueError, match="BCa interval is undefined"):
        bca_interval(np.ones(50), 0.5, np.linspace(0, 1, 10))


def test_metric_names_resolve():
    assert resolve_metric("recall@5")[0] == "recall@5"
    assert resolve_metric("linear_cka")[0] == "linear_cka"
    assert resolve_metric(fitted_angle)[0] == "fitted_angle"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"metric": "recall@0"}, ValueError, "metric must be one of .* got 'recall@0'"),
        ({"metric": "accuracy"}, ValueError, "metric must be one of"),
        ({"metric": 3}, TypeError, "metric must be a metric name or a callable"),
        ({"n": 1}, ValueError, "n must be >= 2"),
        ({"n": 2.5}, TypeError, "n must be an integer"),
        ({"confidence": 1.0}, ValueError, "confidence must lie strictly between 0 and 1"),
        ({"confidence": 0.0}, ValueError, "confidence must be > 0"),
        ({"test": np.ones((5, 2))}, TypeError, "test must be a pair"),
        ({"bca": True}, ValueError, "bca=True needs test"),
        ({"aligner": Procrustes}, TypeError, "aligner must be a scikit-learn style estimator"),
        ({"Y": np.ones((7, 2))}, ValueError, "X and Y must be paired row by row"),
        ({"test": (np.ones((5, 2)), np.ones((4, 2)))}, ValueError, "X_test and Y_test must be paired"),
    ],
)
def test_bad_inputs_are_named(kwargs, error, match):
    X, Y = _planted(20, seed=0)
    args = {"aligner": Procrustes(), "X": X, "Y": Y, "metric": "recall@1", **kwargs}
    with pytest.raises(error, match=match):
        bootstrap(args.pop("aligner"), args.pop("X"), args.pop("Y"), args.pop("metric"), n=args.pop("n", 5), **args)


def test_recall_at_k_larger_than_the_test_set_is_named(pairs):
    X, Y, Xt, Yt = pairs
    with pytest.raises(ValueError, match="'recall@10' needs at least 10 held-out keys, but only 3"):
        bootstrap(Procrustes(), X, Y, "recall@10", n=3, test=(Xt[:3], Yt[:3]))


def test_non_finite_metric_values_are_refused(pairs):
    X, Y, Xt, Yt = pairs
    with pytest.raises(ValueError, match="returned a non-finite value on 4 of 4 replicates"):
        bootstrap(Procrustes(), X, Y, lambda a, x, y: float("nan"), n=4, test=(Xt, Yt))


def test_report_bars_carry_the_bootstrap_interval_and_say_what_it_is(tmp_path, pairs):
    matplotlib = pytest.importorskip("matplotlib")
    from latentalign.reports import plot_metric

    X, Y, Xt, Yt = pairs
    res = bootstrap(Procrustes(), X, Y, "recall@1", n=10, test=(Xt, Yt), random_state=0)
    with_interval = [{"pair": "a -> b", "method": "procrustes", **res.as_row()}, {"pair": "a -> b", "method": "x"}]
    without = [{"pair": "a -> b", "method": "procrustes", "recall@1": res.estimate}, {"pair": "a -> b", "method": "x"}]
    with_interval[1]["recall@1"] = without[1]["recall@1"] = 0.5
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text kept as text in the SVG
        plot_metric(with_interval, tmp_path / "bars.png", metric="recall@1", group="pair", series="method")
        plot_metric(without, tmp_path / "plain.png", metric="recall@1", group="pair", series="method")
    bars, plain = (tmp_path / "bars.svg").read_text(), (tmp_path / "plain.svg").read_text()
    assert "error bars: 95 % bootstrap interval over pairs, n=10" in bars and "error bars" not in plain
    assert bars.count("LineCollection") == 1 and "LineCollection" not in plain  # one error bar drawn


def test_budget_curves_draw_intervals_only_when_the_records_carry_them(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    from latentalign.experiments.few_and_no_pairs_plot import plot_curves

    def records(interval: bool) -> list[dict]:
        out = []
        for budget, value in ((5, 0.4), (20, 0.7), (100, 0.9)):
            row = {"method": "procrustes", "unpaired": "none", "is_all": budget == 100, "budget": budget}
            row["r1_csls"] = value
            if interval:
                row |= {"r1_csls_low": value - 0.1, "r1_csls_high": value + 0.05}
                row["r1_csls_interval"] = "95 % bootstrap interval over pairs, n=200"
            out.append(row)
        return out

    svgs = {}
    for interval in (True, False):
        curves = [{"label": "a -> b", "identity": None, "records": records(interval)}]
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            plot_curves(curves, tmp_path / f"{interval}.svg", n_seeds=1, title="t")
        svgs[interval] = (tmp_path / f"{interval}.svg").read_text()
    assert "capped bars: 95 % bootstrap interval over pairs, n=200" in svgs[True]
    assert "capped bars" not in svgs[False]
    assert svgs[True].count("LineCollection") == svgs[False].count("LineCollection") + 1


def test_a_score_that_needs_every_distinct_pair_is_biased_low_and_warns():
    # 30 pairs in 24 dimensions: a resample keeps about 19 distinct pairs, fewer than the dimension, so
    # every refit recovers the rotation worse than the fit on all pairs.
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((24, 24)))
    X = rng.standard_normal((90, 24))
    Y = X @ Q + 0.05 * rng.standard_normal((90, 24))
    with pytest.warns(UserWarning, match="lies outside its 95 % percentile interval"):
        res = bootstrap(Procrustes(), X[:30], Y[:30], "recall@1", n=20, test=(X[30:], Y[30:]), random_state=0)
    assert res.bias < 0 and res.high < res.estimate


def test_no_bias_warning_on_a_well_determined_fit(pairs, recwarn):
    X, Y, Xt, Yt = pairs
    res = bootstrap(Procrustes(), X, Y, fitted_angle, n=30, test=(Xt, Yt), random_state=0)
    assert res.low <= res.estimate <= res.high and abs(res.bias) < res.std
    assert not [w for w in recwarn if "percentile interval" in str(w.message)]
