"""Self-learning on fewer rows than dimensions: rounds on span coordinates, the same dictionaries and map."""

from __future__ import annotations

import numpy as np
import torch

from latentalign.functional.row_span import reduces, row_span, with_length_column
from latentalign.functional.unsupervised import normalize_rows, self_learning_map


def few_rows_many_dims(n=90, d=150, d_y=None, extra_y=0, seed=0):
    """``n`` clustered rows in ``d`` dimensions, and a rotated (into ``d_y``), shuffled, noisy copy."""
    rng = np.random.default_rng(seed)
    d_y = d_y or d
    spectrum = np.geomspace(3.0, 0.1, d)
    centres = rng.normal(size=(9, d)) * spectrum
    X = centres[rng.integers(0, 9, n)] + 0.5 * rng.normal(size=(n, d)) * spectrum
    Q, _ = np.linalg.qr(rng.normal(size=(d_y, d_y)))
    Y = X @ Q[:d] + 0.01 * rng.normal(size=(n, d_y))
    Y = np.vstack([Y, rng.normal(size=(extra_y, d_y)) * 0.3])
    perm = rng.permutation(len(Y))
    A = normalize_rows(torch.as_tensor(X))
    B = normalize_rows(torch.as_tensor(Y[perm]))
    truth = torch.as_tensor(np.argsort(perm)[:n])
    return A, B, truth


def start(truth, right_every=3, seed=1):
    """A first dictionary with one row in ``right_every`` matched right, the others at random."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.arange(truth.numel())
    wrong = torch.randint(0, int(truth.max()) + 1, (truth.numel(),), generator=gen)
    return rows, torch.where(rows % right_every == 0, truth, wrong)


def test_row_span_keeps_rows_and_lengths_and_leaves_tall_inputs_alone():
    A = torch.randn(5, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    span = row_span(A)
    assert span.coords.shape == (5, 5) and span.basis.shape == (9, 5)
    assert torch.allclose(span.basis.T @ span.basis, torch.eye(5, dtype=torch.float64))
    assert torch.allclose(span.coords @ span.basis.T, A)
    tall = torch.randn(9, 5)
    assert row_span(tall).basis is None and row_span(tall).coords is tall


def test_only_fewer_source_rows_than_dimensions_with_a_length_preserving_map_reduce():
    assert reduces(torch.zeros(10, 20), torch.zeros(10, 20))
    assert reduces(torch.zeros(10, 20), torch.zeros(30, 40))  # the target side as it is
    assert not reduces(torch.zeros(30, 20), torch.zeros(10, 40))  # the target side alone: a small gain
    assert not reduces(torch.zeros(30, 20), torch.zeros(30, 20))
    assert not reduces(torch.zeros(10, 40), torch.zeros(10, 20))  # d_x > d_y: the map shortens rows


def test_length_column_keeps_dot_products_and_restores_full_lengths():
    gen = torch.Generator().manual_seed(0)
    mapped, targets = torch.randn(6, 4, generator=gen), torch.randn(7, 4, generator=gen)
    lengths = mapped.norm(dim=1) * 1.5
    Z, T = with_length_column(mapped, lengths, targets)
    assert torch.allclose(Z @ T.T, mapped @ targets.T)
    assert torch.allclose(Z.norm(dim=1), lengths)


def test_rounds_on_span_coordinates_match_rounds_on_the_rows_themselves():
    A, B, truth = few_rows_many_dims()
    rows, cols = start(truth)
    reduced = self_learning_map(A, B, rows, cols, random_state=0)  # 90 rows of 150 dimensions
    # The span coordinates themselves have as many rows as dimensions: the plain d x d rounds.
    span_a, span_b = row_span(A.to(torch.float32)), row_span(B.to(torch.float32))
    plain = self_learning_map(span_a.coords, span_b.coords, rows, cols, random_state=0)
    assert torch.equal(reduced.rows, plain.rows) and torch.equal(reduced.cols, plain.cols)
    assert reduced.n_iter == plain.n_iter and reduced.converged == plain.converged
    objectives = [(r["objective"], s["objective"]) for r, s in zip(reduced.history, plain.history) if "objective" in r]
    assert len(objectives) == reduced.n_iter - reduced.converged
    assert max(abs(a - b) for a, b in objectives) < 1e-5


def test_planted_map_into_a_larger_space_is_recovered_from_fewer_rows_than_dimensions():
    A, B, truth = few_rows_many_dims(n=80, d=120, d_y=160, extra_y=10, seed=2)
    rows, cols = start(truth, seed=3)
    fit = self_learning_map(A, B, rows, cols, random_state=0)
    assert fit.converged
    matched = (A.to(torch.float32) @ fit.W.to(torch.float32)) @ B.to(torch.float32).T
    assert float((matched.argmax(1) == truth).double().mean()) == 1.0
    assert fit.W.shape == (120, 160)
    assert torch.allclose(fit.W @ fit.W.T, torch.eye(120, dtype=torch.float64), atol=1e-8)


def test_a_round_on_span_coordinates_gives_the_full_maps_cosines_with_more_source_than_target_rows():
    # 70 source rows and 40 target rows in 100 dimensions: the rotation on the span coordinates is 70 x 40
    # and shortens source rows, which the full 100 x 100 rotation does not; the length column restores it.
    from latentalign.functional.procrustes import polar_factor

    gen = torch.Generator().manual_seed(0)
    X = normalize_rows(torch.randn(70, 100, generator=gen, dtype=torch.float64))
    Y = normalize_rows(torch.randn(40, 100, generator=gen, dtype=torch.float64))
    # a dictionary as the rounds induce it: every source row with a target, every target row with a source
    rows = torch.cat([torch.arange(70), torch.randint(0, 70, (40,), generator=gen)])
    cols = torch.cat([torch.randint(0, 40, (70,), generator=gen), torch.arange(40)])
    W = polar_factor(X[rows].T @ Y[cols])[0]
    full = torch.nn.functional.normalize(X @ W, dim=1) @ Y.T
    Xs, Ys = row_span(X).coords, row_span(Y).coords
    P = polar_factor(Xs[rows].T @ Ys[cols])[0]
    assert float((Xs @ P).norm(dim=1).min()) < 0.9  # shortened rows: plain cosines would be wrong
    Z, T = with_length_column(Xs @ P, X.norm(dim=1), Ys)
    assert torch.allclose(torch.nn.functional.normalize(Z, dim=1) @ T.T, full, atol=1e-10)
