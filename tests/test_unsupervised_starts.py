"""Zero pairs: more starts when none confirms the best one, chosen by the unsupervised score only."""

from __future__ import annotations

import numpy as np
import pytest

from latentalign.align.unsupervised import UnsupervisedAligner
from latentalign.exceptions import ConvergenceWarning
from latentalign.functional.unsupervised import unsupervised_alignment


def _planted(n: int = 600, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    spectrum = np.geomspace(3, 0.1, d)
    centres = rng.normal(size=(12, d)) * spectrum
    X = centres[rng.integers(0, 12, n)] + 0.5 * rng.normal(size=(n, d)) * spectrum
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return X, (X @ Q)[rng.permutation(n)], Q


@pytest.mark.parametrize("identity_start", [False, "auto"])
def test_confirmed_start_needs_no_extra_starts(identity_start):
    X, Y, Q = _planted()
    fit = unsupervised_alignment(X, Y, n_init=2, identity_start=identity_start, max_starts=6, screen_iter=40)
    assert len(fit.restarts) == 2  # the two starts found the same map: nothing more to try, not even the identity
    assert sorted(r["gap"] for r in fit.restarts)[1] < 0.05
    assert fit.confirmed and fit.firmly_confirmed  # without judging pairs, one and the same
    assert np.allclose(fit.W.numpy(), Q, atol=1e-6)


def test_starts_that_find_the_same_matches_agree_even_when_their_maps_differ():
    X, Y, Q = _planted()
    # agree_tol so small that no two maps are close enough: only the shared matches can confirm
    fit = unsupervised_alignment(X, Y, n_init=2, identity_start=False, max_starts=6, screen_iter=40, agree_tol=1e-300)
    assert len(fit.restarts) == 2
    assert sorted(r["agreement"] for r in fit.restarts) == [pytest.approx(1.0, abs=0.02), 1.0]
    with pytest.raises(ValueError, match="agree_share"):
        unsupervised_alignment(X, Y, agree_share=0.0)


@pytest.mark.filterwarnings("ignore:unsupervised_alignment stopped after max_iter")
def test_unconfirmed_start_tries_more_and_says_so():
    # Two unrelated clouds: every start ends in a map of its own, none is confirmed.
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(80, 4)), rng.normal(size=(80, 4))
    with pytest.warns(ConvergenceWarning, match="none of the 4 screened starts confirmed"):
        fit = unsupervised_alignment(X, Y, n_init=2, identity_start=False, max_starts=4, screen_iter=10, max_iter=10)
    assert len(fit.restarts) == 4 and not fit.confirmed and not fit.firmly_confirmed
    assert [r["seed"] for r in fit.restarts] == [0, 1, 2, 3]
    assert sorted(r["agreement"] for r in fit.restarts)[-2] < 0.5
    assert sum(r["chosen"] for r in fit.restarts) == 1
    chosen = [r for r in fit.restarts if r["chosen"]][0]
    assert chosen["score"] == max(r["score"] for r in fit.restarts)


@pytest.mark.filterwarnings("ignore:unsupervised_alignment stopped after max_iter")
@pytest.mark.parametrize(("extra_patience", "slow"), [(None, 6), (4, 4)])
def test_extra_starts_explore_longer_than_the_first_ones(extra_patience, slow):
    # Unrelated clouds: no start confirms, so extra starts are screened, with the slower keep_prob growth
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(80, 4)), rng.normal(size=(80, 4))
    with pytest.warns(ConvergenceWarning, match="none of the 4 screened starts confirmed"):
        fit = unsupervised_alignment(
            X, Y, n_init=2, identity_start=False, max_starts=4, patience=3, extra_patience=extra_patience, max_iter=10
        )
    assert [r["patience"] for r in fit.restarts] == [3, 3, slow, slow]
    # a slower schedule needs more rounds to reach keep_prob = 1: the extra starts' screens are longer
    assert max(r["n_iter"] for r in fit.restarts[2:]) > max(r["n_iter"] for r in fit.restarts[:2])
    with pytest.raises(ValueError, match="extra_patience"):
        unsupervised_alignment(X, Y, extra_patience=0)
    with pytest.raises(TypeError, match="extra_patience must be an integer"):
        UnsupervisedAligner(extra_patience=1.5).fit(X, Y)


@pytest.mark.filterwarnings("ignore:unsupervised_alignment stopped after max_iter")
def test_aligner_screens_up_to_24_starts_by_default_before_giving_up():
    # a start that succeeds one time in twelve (as on one split of MiniLM vs e5-small glosses) needs more than 8
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(80, 4)), rng.normal(size=(80, 4))
    with pytest.warns(ConvergenceWarning, match="none of the 24 screened starts confirmed"):
        model = UnsupervisedAligner(identity_start=False, screen_iter=10, max_iter=10).fit(X, Y)
    assert UnsupervisedAligner().max_starts == 24
    assert [r["seed"] for r in model.restarts_] == list(range(24))


@pytest.mark.filterwarnings("ignore:unsupervised_alignment stopped after max_iter")
def test_time_budget_stops_the_extra_starts():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(80, 4)), rng.normal(size=(80, 4))
    with pytest.warns(ConvergenceWarning, match="none of the 2 screened starts"):
        fit = unsupervised_alignment(
            X, Y, n_init=2, identity_start=False, max_starts=6, time_budget=0.0, screen_iter=10, max_iter=10
        )
    assert len(fit.restarts) == 2


def _shared_coordinates(n: int = 300, d: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A flat cloud and a noisy, slightly rotated, shuffled copy: the sorted similarity starts fail on it."""
    from scipy.linalg import expm

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    A = rng.normal(size=(d, d))
    R = expm(0.5 * (A - A.T) / np.linalg.norm(A - A.T, 2))
    perm = rng.permutation(n)
    Y = (X @ R + 0.5 * rng.normal(size=(n, d)))[perm]
    return X, Y, np.argsort(perm)


def _recall_at_1(W: np.ndarray, X: np.ndarray, Y: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.argmax((X @ W) @ Y.T, axis=1) == truth))


@pytest.mark.filterwarnings("ignore::latentalign.exceptions.ConvergenceWarning")
def test_identity_start_recovers_spaces_that_share_coordinates():
    X, Y, truth = _shared_coordinates()
    without = unsupervised_alignment(X, Y, n_init=2, identity_start=False, screen_iter=40, max_iter=60)
    assert _recall_at_1(without.W.numpy(), X, Y, truth) < 0.2  # the similarity-profile starts fail here
    fit = unsupervised_alignment(X, Y, n_init=2, screen_iter=40, max_iter=60)  # "auto": same dimension
    kinds = [r["start"].split(",")[0].split(" (")[0] for r in fit.restarts]
    assert kinds == ["neighbourhood profiles", "sorted similarity", "identity"]
    assert [r["chosen"] for r in fit.restarts] == [False, False, True]
    assert _recall_at_1(fit.W.numpy(), X, Y, truth) > 0.9
    single = unsupervised_alignment(X, Y, n_init=1, screen_iter=40, max_iter=60)  # one start and the identity
    assert [r["chosen"] for r in single.restarts] == [False, True]
    assert _recall_at_1(single.W.numpy(), X, Y, truth) > 0.9


@pytest.mark.filterwarnings("ignore::latentalign.exceptions.ConvergenceWarning")
def test_identity_start_needs_one_dimension():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(60, 6)), rng.normal(size=(60, 4))
    fit = unsupervised_alignment(X, Y, n_init=2, screen_iter=3, max_iter=3)
    assert all("identity" not in r["start"] for r in fit.restarts)  # "auto" leaves it out
    with pytest.raises(ValueError, match=r"identity_start=True needs X and Y of the same dimension, got 6 and 4"):
        unsupervised_alignment(X, Y, identity_start=True)
    with pytest.raises(ValueError, match=r"identity_start='yes' is not supported"):
        unsupervised_alignment(X, X, identity_start="yes")
    with pytest.raises(ValueError, match=r"identity_start='yes' is not supported"):
        UnsupervisedAligner(identity_start="yes").fit(X, X)


def test_known_pairs_judge_the_starts_and_confirm_a_map_they_never_entered():
    X, Y, Q = _planted()
    truth = np.argmax((X @ Q) @ Y.T - 0.5 * (Y**2).sum(1), axis=1)  # Y's row nearest to each x Q: its counterpart
    pairs = np.stack([np.arange(6), truth[:6]], 1)
    plain = unsupervised_alignment(X, Y, n_init=2, identity_start=False, max_starts=6, screen_iter=40)
    judged = unsupervised_alignment(
        X, Y, n_init=2, identity_start=False, max_starts=6, screen_iter=40, judge_pairs=pairs
    )
    assert len(judged.restarts) == 2  # the first starts' maps put every pair at rank 1: confirmed
    assert [r["pair_hits"] for r in judged.restarts] == [6, 6] and judged.firmly_confirmed
    assert all(r["pair_mrr"] == 1.0 for r in judged.restarts)
    # the pairs only judged: the map is the one found without them
    assert np.allclose(judged.W.numpy(), plain.W.numpy())
    assert np.allclose(judged.W.numpy(), Q, atol=1e-6)


@pytest.mark.filterwarnings("ignore:unsupervised_alignment stopped after max_iter")
def test_starts_the_pairs_do_not_confirm_are_screened_up_to_max_starts_and_said_so():
    X, Y, _ = _planted()
    wrong = np.stack([np.arange(8), np.arange(8)], 1)  # not the planted counterparts
    with pytest.warns(ConvergenceWarning, match=r"none of the 4 screened starts' maps put 4 of the 8 known pairs"):
        fit = unsupervised_alignment(
            X, Y, n_init=2, identity_start=False, max_starts=4, screen_iter=10, max_iter=10, judge_pairs=wrong
        )
    assert len(fit.restarts) == 4
    chosen = [r for r in fit.restarts if r["chosen"]][0]
    assert chosen["pair_mrr"] == max(r["pair_mrr"] for r in fit.restarts)


def test_judge_pairs_are_validated():
    X, Y, _ = _planted(n=100)
    with pytest.raises(ValueError, match="judge_pairs must hold at least 2 known pairs"):
        unsupervised_alignment(X, Y, n_init=2, judge_pairs=[[0, 0]])
    with pytest.raises(ValueError, match="pairs"):
        unsupervised_alignment(X, Y, n_init=2, judge_pairs=[[0, 0], [1, 500]])
    with pytest.raises(ValueError, match="judge_pairs must hold at least 2 known pairs"):
        UnsupervisedAligner(n_init=2).fit(X, Y, judge_pairs=[[0, 0]])
