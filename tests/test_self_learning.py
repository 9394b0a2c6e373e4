"""functional.self_learning: mutual-CSLS self-learning rounds as a pure function, with the map fit passed in."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from latentalign.align.ot import make_map
from latentalign.align.refine import SelfLearning
from latentalign.exceptions import ConvergenceWarning
from latentalign.functional.retrieval import csls_scores
from latentalign.functional.self_learning import (
    mutual_csls_matches,
    mutual_csls_tensors,
    pairs_mrr,
    self_learning_rounds,
)


def planted(n: int = 200, d: int = 6, seed: int = 0):
    """X (skewed, float64 tensor), Y = shuffled X Q + noise; inv[i] is the row of Y that X[i] became."""
    rng = np.random.default_rng(seed)
    X = rng.exponential(size=(n, d)) * rng.uniform(0.3, 1.5, size=d)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    perm = rng.permutation(n)
    Y = (X @ Q + 0.01 * rng.normal(size=(n, d)))[perm]
    return torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(Q), torch.from_numpy(np.argsort(perm))


def procrustes_fit(Xa, Ya):
    mapping = make_map("procrustes").fit(Xa, Ya)
    return mapping._transform, mapping


def test_planted_rotation_is_recovered_from_a_few_pairs():
    X, Y, Q, inv = planted()
    seeds = torch.stack([torch.arange(8), inv[:8]], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        out = self_learning_rounds(X, Y, procrustes_fit, pairs=seeds)
    assert out.converged and out.history[-1]["changed"] == 0.0 and out.history[0]["changed"] is None
    torch.testing.assert_close(out.transform(X), X @ Q, atol=0.01, rtol=0)
    assert (inv[out.matches[:, 0]] == out.matches[:, 1]).float().mean() >= 0.99
    assert torch.equal(out.matches[:8], seeds)  # the known pairs are kept first


def test_agrees_with_the_estimator_on_the_same_inputs():
    X, Y, _, inv = planted(seed=1)
    seeds = torch.stack([torch.arange(8), inv[:8]], 1)
    out = self_learning_rounds(X, Y, procrustes_fit, pairs=seeds, n_iter=6, csls_k=5)
    est = SelfLearning(n_iter=6, csls_k=5).fit(X, Y, pairs=seeds)
    assert torch.equal(out.matches, est.matches_) and out.history == est.history_
    assert (out.converged, out.n_iter) == (est.converged_, est.n_iter_)
    assert torch.equal(out.transform(X), est.transform(X))


def test_start_gives_the_first_map_when_there_are_no_pairs():
    X, Y, Q, inv = planted(seed=2)
    calls = []

    def start(Xs, Ys):  # a start that knows 20 true pairs, as an unsupervised aligner would find
        calls.append((Xs.shape, Ys.shape))
        return procrustes_fit(Xs[:20], Ys[inv[:20]])

    out = self_learning_rounds(X, Y, procrustes_fit, start=start)
    assert calls == [(X.shape, Y.shape)] and out.converged
    torch.testing.assert_close(out.transform(X), X @ Q, atol=0.01, rtol=0)
    zero = self_learning_rounds(X, Y, procrustes_fit, start=start, n_iter=0)
    assert zero.converged and zero.n_iter == 0 and zero.history == [] and zero.matches.shape == (0, 2)


def test_convergence_warning_names_the_caller():
    X, Y, _, inv = planted(seed=3)
    seeds = torch.stack([torch.arange(3), inv[:3]], 1)  # 3 pairs in 6-d: a poor start that keeps moving
    with pytest.warns(ConvergenceWarning, match=r"my loop stopped after n_iter=1 rounds without converging"):
        out = self_learning_rounds(X, Y, procrustes_fit, pairs=seeds, n_iter=1, label="my loop")
    assert not out.converged and out.n_iter == 1 and out.history[0]["changed"] is None


def test_errors_name_the_argument():
    X, Y, _, _ = planted(n=30, d=3)
    with pytest.raises(ValueError, match=r"my loop needs a start: pass known pairs, or a start map"):
        self_learning_rounds(X, Y, procrustes_fit, label="my loop")
    with pytest.raises(ValueError, match=r"csls_k=31 exceeds the rows available \(X has 30, Y has 30\)"):
        self_learning_rounds(X, Y, procrustes_fit, pairs=[[0, 0], [1, 1]], csls_k=31)
    with pytest.raises(ValueError, match=r"pairs has 1 row; a map needs at least 2 known pairs"):
        self_learning_rounds(X, Y, procrustes_fit, pairs=[[0, 0]])


def test_tensor_core_agrees_with_the_checked_function():
    rng = np.random.default_rng(4)
    Z, Y = rng.normal(size=(40, 5)), rng.normal(size=(35, 5))
    rows, cols, scores = mutual_csls_matches(Z, Y, k=3)
    rt, ct, st = mutual_csls_tensors(torch.from_numpy(Z), torch.from_numpy(Y), 3)
    assert rows.tolist() == rt.tolist() and cols.tolist() == ct.tolist() and len(rows) > 0
    np.testing.assert_array_equal(scores, st.numpy())


def test_pairs_mrr_ranks_by_the_csls_of_the_retrieval_module():
    # Reference: CSLS over every mapped source row (the pairs' and the free ones) against every candidate
    # target, computed by latentalign.functional.retrieval; each pair's target ranked in its row.
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(60, 8, generator=gen, dtype=torch.float64)
    Y = X @ torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=torch.float64))[0]
    Y = Y + 0.8 * torch.randn(60, 8, generator=gen, dtype=torch.float64)
    pairs = torch.stack([torch.arange(12), torch.arange(12)], 1)
    free_x, free_y = torch.arange(12, 45), torch.arange(20, 60)  # part of the free rows, on both sides

    def transform(Z):
        return Z @ torch.eye(8, dtype=torch.float64)

    keys = torch.cat([Y[:12], Y[free_y]])
    sources = torch.cat([X[:12], X[free_x]])
    S = torch.as_tensor(csls_scores(transform(sources), keys, k=5))[:12]
    expected = (1.0 / (1.0 + (S > S.diagonal()[:, None]).sum(1).double())).mean()
    assert pairs_mrr(transform, X, Y, pairs, free_y, free_x=free_x, csls_k=5) == pytest.approx(float(expected))
    cosine = torch.nn.functional.normalize(X[:12], dim=1) @ torch.nn.functional.normalize(keys, dim=1).T
    by_cosine = (1.0 / (1.0 + (cosine > cosine.diagonal()[:, None]).sum(1).double())).mean()
    assert pairs_mrr(transform, X, Y, pairs, free_y, csls_k=None) == pytest.approx(float(by_cosine))
    assert float(expected) != pytest.approx(float(by_cosine))  # the two rules rank differently here
