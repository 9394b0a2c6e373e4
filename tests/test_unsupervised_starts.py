"""Zero pairs: more starts when none confirms the best one, chosen by the unsupervised score only."""

from __future__ import annotations

import numpy as np
import pytest

from latentalign.exceptions import ConvergenceWarning
from latentalign.functional.unsupervised import unsupervised_alignment


def _planted(n: int = 600, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    spectrum = np.geomspace(3, 0.1, d)
    centres = rng.normal(size=(12, d)) * spectrum
    X = centres[rng.integers(0, 12, n)] + 0.5 * rng.normal(size=(n, d)) * spectrum
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return X, (X @ Q)[rng.permutation(n)], Q


def test_confirmed_start_needs_no_extra_starts():
    X, Y, Q = _planted()
    fit = unsupervised_alignment(X, Y, n_init=2, max_starts=6, screen_iter=40)
    assert len(fit.restarts) == 2  # the two starts found the same map: nothing more to try
    assert sorted(r["gap"] for r in fit.restarts)[1] < 0.05
    assert np.allclose(fit.W.numpy(), Q, atol=1e-6)


@pytest.mark.filterwarnings("ignore:unsupervised_alignment stopped after max_iter")
def test_unconfirmed_start_tries_more_and_says_so():
    # Two unrelated clouds: every start ends in a map of its own, none is confirmed.
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(80, 4)), rng.normal(size=(80, 4))
    with pytest.warns(ConvergenceWarning, match="none of the 4 screened starts confirmed"):
        fit = unsupervised_alignment(X, Y, n_init=2, max_starts=4, screen_iter=10, max_iter=10)
    assert len(fit.restarts) == 4
    assert [r["seed"] for r in fit.restarts] == [0, 1, 2, 3]
    assert sum(r["chosen"] for r in fit.restarts) == 1
    chosen = [r for r in fit.restarts if r["chosen"]][0]
    assert chosen["score"] == max(r["score"] for r in fit.restarts)


@pytest.mark.filterwarnings("ignore:unsupervised_alignment stopped after max_iter")
def test_time_budget_stops_the_extra_starts():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(80, 4)), rng.normal(size=(80, 4))
    with pytest.warns(ConvergenceWarning, match="none of the 2 screened starts"):
        fit = unsupervised_alignment(X, Y, n_init=2, max_starts=6, time_budget=0.0, screen_iter=10, max_iter=10)
    assert len(fit.restarts) == 2
