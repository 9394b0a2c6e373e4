"""functional.ot_rounds: the Wasserstein-Procrustes loop as a pure function, with the map fit passed in."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("ot")

from latentalign.align.ot import OTAligner, make_map  # noqa: E402
from latentalign.exceptions import ConvergenceWarning  # noqa: E402
from latentalign.functional.ot_rounds import check_pairs, ot_alignment_rounds  # noqa: E402


def planted(n: int = 150, d: int = 6, seed: int = 0):
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


def test_planted_rotation_and_matching_are_recovered_without_pairs():
    X, Y, Q, inv = planted()
    out = ot_alignment_rounds(X, Y, procrustes_fit, method="emd")
    assert out.converged and out.history[0]["step"] == "gw" and out.history[-1]["changed"] == 0.0
    assert (out.matches == inv).float().mean() >= 0.99
    torch.testing.assert_close(out.transform(X), X @ Q, atol=0.01, rtol=0)
    torch.testing.assert_close(out.map.transform(X), X @ Q, atol=0.01, rtol=0)


@pytest.mark.parametrize("params", [{"method": "emd"}, {"method": "sinkhorn", "reg": 0.1, "n_iter": 2}])
def test_agrees_with_the_estimator_on_the_same_inputs(params):
    X, Y, _, inv = planted(seed=1)
    pairs = torch.stack([torch.arange(8), inv[:8]], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # two Sinkhorn rounds may not settle
        out = ot_alignment_rounds(X, Y, procrustes_fit, pairs=pairs, **params)
        est = OTAligner(**params).fit(X, Y, pairs=pairs)
    assert torch.equal(out.matches, est.matches_) and out.history == est.history_
    assert (out.converged, out.n_iter) == (est.converged_, est.n_iter_)
    assert torch.equal(out.transform(X), est.transform(X))


def test_known_pairs_join_every_map_fit_and_keep_their_matches():
    X, Y, _, inv = planted(seed=2)
    pairs = torch.stack([torch.arange(10), inv[:10]], 1)
    sizes = []

    def counting_fit(Xa, Ya):
        sizes.append(Xa.shape[0])
        return procrustes_fit(Xa, Ya)

    out = ot_alignment_rounds(X, Y, counting_fit, pairs=pairs, method="emd", init="relative")
    assert sizes == [10 + h["n_coupled"] for h in out.history]  # the pairs, then every coupled row
    assert out.history[0]["step"] == "relative" and torch.equal(out.matches[:10], inv[:10])


def test_convergence_warning_names_the_caller_and_history_logs_every_round():
    X, Y, _, _ = planted(seed=3)
    wrong = torch.stack([torch.arange(40), torch.arange(40)], 1)  # wrong pairs: the matches keep moving
    with pytest.warns(ConvergenceWarning, match=r"my loop stopped after n_iter=2 rounds without converging"):
        out = ot_alignment_rounds(X, Y, procrustes_fit, pairs=wrong, method="emd", n_iter=2, label="my loop")
    assert not out.converged and out.n_iter == 2
    assert [h["round"] for h in out.history] == [0, 1, 2]
    assert all(h["residual"] > 0.0 for h in out.history)  # wrong pairs cannot be fitted exactly


def test_zero_rounds_keep_the_start_and_count_as_converged():
    X, Y, _, _ = planted(seed=4)
    out = ot_alignment_rounds(X, Y, procrustes_fit, method="emd", n_iter=0)
    assert out.converged and out.n_iter == 0 and [h["step"] for h in out.history] == ["gw"]


def test_errors_name_the_argument():
    X, Y, _, _ = planted(n=30, d=3)
    with pytest.raises(ValueError, match=r"init='identity' with n_iter=0 .* fits no map"):
        ot_alignment_rounds(X, Y, procrustes_fit, init="identity", n_iter=0)
    with pytest.raises(ValueError, match=r"init='identity' compares X and Y directly, but X has 3 features"):
        ot_alignment_rounds(X, Y[:, :2], procrustes_fit, init="identity")
    with pytest.raises(ValueError, match=r"pairs\[0, 0\] = 30 is not a row of X, which has 30 rows"):
        ot_alignment_rounds(X, Y, procrustes_fit, pairs=[[30, 0]])
    with pytest.raises(ValueError, match=r"batch_size is only used by method='sinkhorn'"):
        ot_alignment_rounds(X, Y, procrustes_fit, method="emd", batch_size=8)
    assert check_pairs(None, 3, 3).shape == (0, 2)
