"""Zero-pair alignment: planted truth, seed stability, the map convergence criterion, the estimator."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from latentalign.align import make_aligner
from latentalign.align.unsupervised import UnsupervisedAligner
from latentalign.exceptions import ConvergenceWarning
from latentalign.functional.retrieval import csls_scores
from latentalign.functional.unsupervised import (
    candidate_starts,
    dictionary_score,
    gw_dictionary,
    induce_dictionary,
    map_change,
    neighbourhood_similarity_dictionary,
    normalize_rows,
    self_learning_map,
    sorted_similarity_dictionary,
    unsupervised_alignment,
)


def clustered(n=600, d=16, k=12, noise=0.01, seed=0):
    """A clustered cloud with a long-tailed spectrum, and a rotated, shuffled, noisy copy of it."""
    rng = np.random.default_rng(seed)
    spectrum = np.geomspace(3.0, 0.1, d)
    centres = rng.normal(size=(k, d)) * spectrum
    X = centres[rng.integers(0, k, n)] + 0.5 * rng.normal(size=(n, d)) * spectrum
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    perm = rng.permutation(n)
    Y = (X @ Q + noise * rng.normal(size=(n, d)))[perm]
    return X, Y, Q, np.argsort(perm)


def recall_at_1(model, X, Y, truth):
    Z = model.transform(X)
    unit = lambda A: A / np.linalg.norm(A, axis=1, keepdims=True)  # noqa: E731
    return float(((unit(Z) @ unit(Y).T).argmax(1) == truth).mean())


# -- the starts ---------------------------------------------------------------------------------------
def test_induced_matches_are_the_csls_nearest_neighbours_both_ways():
    # hubs (rows near the centre of the other side) are where CSLS and a differently weighted penalty part
    gen = torch.Generator().manual_seed(0)
    Z = torch.randn(300, 12, generator=gen, dtype=torch.float64)
    Y = torch.randn(280, 12, generator=gen, dtype=torch.float64) + 0.8 * torch.randn(
        12, generator=gen, dtype=torch.float64
    )
    rows, cols, _ = induce_dictionary(Z, Y, csls_k=10)
    forward = csls_scores(Z, Y, k=10).argmax(1)
    backward = csls_scores(Y, Z, k=10).argmax(1)
    assert torch.equal(cols[:300], forward) and torch.equal(rows[300:], backward)
    assert torch.equal(rows[:300], torch.arange(300)) and torch.equal(cols[300:], torch.arange(280))


def test_sorted_similarity_start_is_invariant_to_rotation_and_row_order():
    X, Y, _, truth = clustered(n=300)
    A, B = normalize_rows(torch.as_tensor(X)), normalize_rows(torch.as_tensor(Y))
    rows, cols = sorted_similarity_dictionary(A, B, n=300)
    # Most of the forward half of the start is right on a noiseless-enough planted problem (chance: 1/300).
    assert float((truth[rows[:300].numpy()] == cols[:300].numpy()).mean()) > 0.5
    assert rows.shape == cols.shape == (600,)


def forward_hits(rows, cols, truth, n):
    """Share of the first ``n`` rows of a start matched to their own item."""
    return float((truth[rows[:n].numpy()] == cols[:n].numpy()).mean())


def test_neighbourhood_start_matches_more_rows_right_than_sorted_similarities_between_noisy_copies():
    # a noisy copy is only roughly isometric, like two models' spaces; the neighbours' mean profile
    # averages out the noise of each row's own profile
    for seed in range(3):
        X, Y, _, truth = clustered(n=400, noise=0.3, seed=seed)
        A, B = normalize_rows(torch.as_tensor(X)), normalize_rows(torch.as_tensor(Y))
        plain = forward_hits(*sorted_similarity_dictionary(A, B, n=400), truth, 400)
        smoothed = forward_hits(*neighbourhood_similarity_dictionary(A, B, n=400), truth, 400)
        assert smoothed >= 1.3 * plain and smoothed > 0.3, (seed, plain, smoothed)


def test_neighbourhood_start_without_neighbours_is_the_sorted_similarity_start():
    X, Y, _, _ = clustered(n=200, noise=0.3)
    A, B = normalize_rows(torch.as_tensor(X)), normalize_rows(torch.as_tensor(Y))
    for got, expected in zip(
        neighbourhood_similarity_dictionary(A, B, neighbours=0), sorted_similarity_dictionary(A, B)
    ):
        assert torch.equal(got, expected)


@pytest.mark.parametrize("neighbours", [-1, 200, 500])
def test_neighbourhood_start_names_a_bad_neighbour_count(neighbours):
    X, Y, _, _ = clustered(n=200)
    A, B = normalize_rows(torch.as_tensor(X)), normalize_rows(torch.as_tensor(Y))
    with pytest.raises(ValueError, match=rf"neighbours must be between 0 and .*199\), got {neighbours}"):
        neighbourhood_similarity_dictionary(A, B, neighbours=neighbours)


@pytest.mark.slow
def test_gw_start_recovers_a_rotated_skewed_cloud():
    X, Y, _, truth = clustered(n=200, d=8)
    A, B = normalize_rows(torch.as_tensor(X)), normalize_rows(torch.as_tensor(Y))
    rows, cols, info = gw_dictionary(A, B, n=200)
    assert float((truth[rows[:200].numpy()] == cols[:200].numpy()).mean()) > 0.5
    assert info["reached"] <= 0.01 and info["gw_loss"] >= 0


# -- planted truth, zero pairs ------------------------------------------------------------------------
@pytest.mark.parametrize("init", ["neighbourhood", "vecmap", pytest.param("gw", marks=pytest.mark.slow)])
def test_zero_pairs_recover_a_planted_rotation_and_permutation(init):
    X, Y, Q, truth = clustered()
    model = UnsupervisedAligner(init=init, n_init=1, init_size=600).fit(X, Y)
    assert recall_at_1(model, X, Y, truth) >= 0.95
    assert model.converged_
    np.testing.assert_allclose(model.map_.rotation_, Q, atol=0.05)


@pytest.mark.slow
def test_seeds_agree_on_the_planted_problem():
    X, Y, _, truth = clustered(seed=1)
    scores = [recall_at_1(UnsupervisedAligner(n_init=1, random_state=s).fit(X, Y), X, Y, truth) for s in range(3)]
    assert min(scores) >= 0.95


def test_restarts_screen_every_start_and_continue_the_best_one():
    X, Y, _, _ = clustered(n=300)
    fit = unsupervised_alignment(X, Y, n_init=3, random_state=5, screen_iter=4, keep_prob=0.5, identity_start=False)
    assert [r["seed"] for r in fit.restarts] == [5, 6, 7]
    assert all(r["n_iter"] <= 4 for r in fit.restarts)
    chosen = [r for r in fit.restarts if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["score"] == max(r["score"] for r in fit.restarts)
    assert fit.converged


def test_starts_differ_so_that_restarts_do_not_fail_together():
    X, Y, _, _ = clustered(n=300, noise=0.3)  # a copy noisy enough that no start is all right
    A, B = normalize_rows(torch.as_tensor(X)), normalize_rows(torch.as_tensor(Y))
    starts = candidate_starts(A, B, n_init=4, random_state=0)
    assert len({info["start"] for _, _, info in starts}) == 4
    for i in range(4):
        for j in range(i):
            same = (starts[i][0][:100] == starts[j][0][:100]) & (starts[i][1][:100] == starts[j][1][:100])
            assert not bool(same.all())
    # the random subsets depend on the seed
    again = candidate_starts(A, B, n_init=4, random_state=1)
    assert not torch.equal(again[3][1], starts[3][1])
    vecmap = candidate_starts(A, B, init="vecmap", n_init=3, random_state=0)
    assert not torch.equal(candidate_starts(A, B, init="vecmap", n_init=3, random_state=1)[2][1], vecmap[2][1])


def test_neighbourhood_starts_alternate_with_the_vecmap_start():
    X, Y, _, _ = clustered(n=320)
    A, B = normalize_rows(torch.as_tensor(X)), normalize_rows(torch.as_tensor(Y))
    names = [info["start"] for _, _, info in candidate_starts(A, B, n_init=4, random_state=0)]
    assert names[0] == "neighbourhood profiles (20 neighbours), first 320 rows"
    assert names[1] == "sorted similarity, first 320 rows"
    assert names[2] == "neighbourhood profiles (40 neighbours), first 320 rows"
    assert names[3].startswith("neighbourhood profiles") and "random 256 of the first 320 rows (seed 3)" in names[3]


@pytest.mark.slow
def test_mixed_starts_end_with_a_gromov_wasserstein_start():
    X, Y, _, _ = clustered(n=200, d=8)
    A, B = normalize_rows(torch.as_tensor(X)), normalize_rows(torch.as_tensor(Y))
    starts = candidate_starts(A, B, init="mixed", n_init=2)
    assert starts[0][2]["start"].startswith("sorted similarity")
    assert starts[1][2]["start"].startswith("Gromov-Wasserstein") and "gw_loss" in starts[1][2]


def test_rounds_run_in_float32_but_the_map_keeps_the_input_precision():
    X, Y, Q, _ = clustered(n=300)
    fit = unsupervised_alignment(X, Y, n_init=1)
    assert fit.W.dtype == torch.float64
    np.testing.assert_allclose(fit.W.T @ fit.W, np.eye(16), atol=1e-12)
    np.testing.assert_allclose(fit.W.numpy(), Q, atol=0.05)


def test_dictionary_score_prefers_the_true_map():
    X, Y, Q, truth = clustered(n=300)
    A = normalize_rows(torch.as_tensor(X))
    B = normalize_rows(torch.as_tensor(Y))
    wrong, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    assert dictionary_score(A @ torch.as_tensor(Q), B) > dictionary_score(A @ wrong, B) + 0.1


# -- the convergence criterion on the map -------------------------------------------------------------
def test_map_change_is_the_relative_frobenius_change():
    W = torch.eye(3, dtype=torch.float64)
    assert map_change(W, 2 * W) == pytest.approx(0.5)
    assert map_change(None, W) == float("inf")


def test_a_converging_fit_emits_no_warning():
    X, Y, _, _ = clustered(n=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = UnsupervisedAligner(n_init=1).fit(X, Y)
    assert model.converged_
    assert model.history_[-1]["map_change"] < model.tol and model.history_[-1]["keep_prob"] == 1.0


def test_a_capped_fit_warns_once_naming_the_criterion():
    X, Y, _, _ = clustered(n=300)
    with pytest.warns(ConvergenceWarning) as caught:
        model = UnsupervisedAligner(n_init=2, max_starts=2, max_iter=3, screen_iter=3).fit(X, Y)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(messages) == 1
    assert "relative change of the map ||W_t - W_(t-1)||_F / ||W_t||_F" in messages[0]
    assert "max_iter=3" in messages[0] and "Increase max_iter" in messages[0]
    assert not model.converged_ and model.n_iter_ == 3


def test_self_learning_map_stops_at_a_fixed_point():
    X, Y, Q, truth = clustered(n=300)
    A, B = normalize_rows(torch.as_tensor(X)), normalize_rows(torch.as_tensor(Y))
    rows = torch.arange(300)
    fit = self_learning_map(A, B, rows, torch.as_tensor(truth), keep_prob=1.0)
    assert fit.converged and fit.history[-1]["map_change"] < 1e-6
    assert fit.n_iter <= 4  # the right dictionary is a fixed point: one refit, then no change


# -- the estimator ------------------------------------------------------------------------------------
def test_registry_builds_the_unsupervised_aligner():
    assert isinstance(make_aligner("unsupervised", init="gw"), UnsupervisedAligner)


def test_functional_and_estimator_agree():
    X, Y, _, _ = clustered(n=300)
    fit = unsupervised_alignment(X, Y, n_init=1)
    model = UnsupervisedAligner(n_init=1).fit(X, Y)
    np.testing.assert_allclose(model.map_.rotation_, fit.W.numpy(), atol=1e-8)
    assert model.score_ == pytest.approx(fit.score)


def test_unpaired_counts_and_dimensions_may_differ():
    X, Y, _, _ = clustered(n=300)
    model = UnsupervisedAligner(n_init=1).fit(X[:250], np.hstack([Y, np.zeros((300, 4))]))
    assert model.transform(X).shape == (300, 20)


def test_torch_in_torch_out_and_inverse_round_trip():
    X, Y, _, _ = clustered(n=300)
    model = UnsupervisedAligner(n_init=1).fit(torch.as_tensor(X), torch.as_tensor(Y))
    Z = model.transform(torch.as_tensor(X))
    assert isinstance(Z, torch.Tensor) and Z.dtype == torch.float64
    torch.testing.assert_close(model.inverse_transform(Z), torch.as_tensor(X))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"init": "random"}, "init"),
        ({"n_init": 0}, "n_init"),
        ({"keep_prob": 0.0}, "keep_prob"),
        ({"tol": 0.0}, "tol"),
        ({"screen_iter": 0}, "screen_iter"),
        ({"screen_size": 1}, "screen_size"),
    ],
)
def test_bad_parameters_are_named(params, match):
    X, Y, _, _ = clustered(n=50)
    with pytest.raises(ValueError, match=match):
        UnsupervisedAligner(**params).fit(X, Y)
