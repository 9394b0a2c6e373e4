"""Optimal transport: functional couplings against POT, OTAligner on planted truth, self-learning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

ot = pytest.importorskip("ot")

import latentalign  # noqa: E402
from latentalign.align.affine import Affine  # noqa: E402
from latentalign.align.ot import OTAligner, check_pairs  # noqa: E402
from latentalign.align.procrustes import Procrustes  # noqa: E402
from latentalign.align.refine import SelfLearning, mutual_csls_matches  # noqa: E402
from latentalign.align.registry import make_aligner  # noqa: E402
from latentalign.align.unsupervised import UnsupervisedAligner  # noqa: E402
from latentalign.exceptions import ConvergenceWarning  # noqa: E402
from latentalign.functional.ot import (  # noqa: E402
    barycentric_projection,
    cost_matrix,
    default_tol,
    gw_loss,
    gw_plan,
    mean_cost,
    ot_plan,
    plan_matches,
    sinkhorn_projection,
)
from latentalign.functional.retrieval import csls_scores  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def skewed_cloud(n: int = 500, d: int = 32, seed: int = 0) -> np.ndarray:
    """Clusters of unequal sizes with exponential (skewed) spreads: no symmetry for OT to get lost in."""
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(n, rng.dirichlet(np.full(6, 2.0)))
    centers = rng.normal(size=(6, d)) * 3
    spread = rng.uniform(0.3, 1.5, size=d)
    return np.concatenate([c + rng.exponential(1.0, size=(s, d)) * spread for c, s in zip(centers, sizes)])


def planted(n: int = 500, d: int = 32, noise: float = 0.01, seed: int = 0):
    """X, Y = shuffled (X Q + noise); inv[i] is the row of Y that X[i] became."""
    rng = np.random.default_rng(seed + 1)
    X = skewed_cloud(n, d, seed)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    perm = rng.permutation(n)
    Y = (X @ Q + noise * rng.normal(size=(n, d)))[perm]
    return X, Y, Q, np.argsort(perm)


@pytest.fixture(scope="module")
def problem():
    return planted()


# -- functional: costs ------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_cost_matrix_matches_pot_and_mean_cost_is_exact(metric):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 5)), rng.normal(size=(30, 5)) + 0.5
    M = cost_matrix(X, Y, metric=metric)
    np.testing.assert_allclose(M, ot.dist(X, Y, metric=metric), atol=1e-10)
    assert mean_cost(X, Y, metric=metric) == pytest.approx(M.mean(), rel=1e-12)


def test_cost_matrix_keeps_float32_and_torch():
    X = torch.randn(10, 3)
    M = cost_matrix(X, X + 1)
    assert isinstance(M, torch.Tensor) and M.dtype == torch.float32 and M.shape == (10, 10)


# -- functional: linear OT against POT ---------------------------------------------------------------
def test_emd_plan_equals_pot():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(60, 4)), rng.normal(size=(50, 4))
    P = ot_plan(X, Y, method="emd", normalize_cost=None)
    ref = ot.emd(ot.unif(60), ot.unif(50), ot.dist(X, Y))
    np.testing.assert_allclose(P, ref, atol=1e-12)


def test_sinkhorn_plan_equals_pot_in_both_domains():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(60, 4)), rng.normal(size=(50, 4))
    M = ot.dist(X, Y)
    a, b = ot.unif(60), ot.unif(50)
    for log_domain, method in ((False, "sinkhorn"), (True, "sinkhorn_log")):
        P = ot_plan(X, Y, reg=1.0, normalize_cost=None, max_iter=5000, tol=1e-11, log_domain=log_domain)
        ref = ot.sinkhorn(a, b, M, 1.0, method=method, numItermax=5000, stopThr=1e-11)
        np.testing.assert_allclose(P, ref, atol=1e-12)


def test_small_reg_does_not_overflow_in_float32():
    X, Y, _, _ = planted(n=60, d=8)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        P = ot_plan(X32, Y32, reg=5e-3, tol=1e-6)  # max(M)/reg ~ 1e3 > 50: chosen log domain
    assert P.dtype == np.float32 and np.isfinite(P).all()
    np.testing.assert_allclose(P.sum(1), 1 / 60, rtol=1e-4)
    np.testing.assert_allclose(P, ot_plan(X, Y, reg=5e-3), atol=1e-6)
    with pytest.raises(FloatingPointError, match=r"classic iterations under/overflowed at reg=0.005"):
        ot_plan(X32, Y32, reg=5e-3, log_domain=False)


def test_sinkhorn_convergence_warning_names_the_fix():
    X, Y, _, _ = planted(n=100, d=8)
    with pytest.warns(ConvergenceWarning, match=r"Sinkhorn did not converge in 3 iterations .*Increase max_iter"):
        ot_plan(X, Y, reg=0.01, max_iter=3)


def test_default_tol_is_scaled_to_the_dtype():
    assert default_tol(torch.float32) >= 8 * np.finfo(np.float32).eps  # float32 marginals stall near 1e-7
    assert default_tol(torch.float64) <= 1e-8


@pytest.mark.parametrize("kind", ["emd", "sinkhorn"])
def test_barycentric_mapping_agrees_with_pot_da(kind):
    """POT's own domain-adaptation estimators give the same barycentric mapping on equal-dim inputs."""
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(80, 6)), rng.normal(size=(70, 6)) @ np.diag(np.linspace(0.5, 2, 6)) + 1.0
    if kind == "emd":
        da = ot.da.EMDTransport().fit(Xs=X, Xt=Y)
        P = ot_plan(X, Y, method="emd")  # EMD is invariant to the cost's scale
    else:
        reg = 0.05
        da = ot.da.SinkhornTransport(reg_e=reg * mean_cost(X, Y), max_iter=5000, tol=1e-12).fit(Xs=X, Xt=Y)
        P = ot_plan(X, Y, reg=reg, max_iter=5000, tol=1e-12)
    np.testing.assert_allclose(P, da.coupling_, atol=1e-9)
    np.testing.assert_allclose(barycentric_projection(P, Y), da.transform(Xs=X), atol=1e-7)


@pytest.mark.parametrize("kind", ["emd", "sinkhorn"])
def test_ot_aligner_map_agrees_with_pot_da(kind):
    """init='identity' + one round = an affine map fitted on POT's barycentric mapping."""
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(80, 6)), rng.normal(size=(70, 6)) * 1.5 + 0.5
    reg = 0.1
    if kind == "emd":
        da = ot.da.EMDTransport().fit(Xs=X, Xt=Y)
    else:
        da = ot.da.SinkhornTransport(reg_e=reg * mean_cost(X, Y), max_iter=5000, tol=1e-12).fit(Xs=X, Xt=Y)
    with pytest.warns(ConvergenceWarning, match="a single round cannot be compared"):
        aligner = OTAligner(
            method=kind,
            reg=reg,
            init="identity",
            n_iter=1,
            refine="affine",
            tol=1e-12,
            max_iter=5000 if kind == "sinkhorn" else None,
        ).fit(X, Y)
    reference = Affine().fit(X, da.transform(Xs=X))
    Xnew = rng.normal(size=(20, 6))
    np.testing.assert_allclose(aligner.transform(Xnew), reference.transform(Xnew), atol=1e-6)


def test_lazy_sinkhorn_equals_dense():
    """POT's lazy solver (row blocks, no n x m matrix) and the dense one run the same iterations."""
    X, Y, _, _ = planted(n=100, d=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # both run exactly max_iter iterations
        dense = ot_plan(X, Y, reg=0.05, tol=1e-30, max_iter=200)
        proj, best = sinkhorn_projection(X, Y, reg=0.05, batch_size=32, tol=1e-30, max_iter=200)
    np.testing.assert_allclose(proj, barycentric_projection(dense, Y), atol=1e-8)
    np.testing.assert_array_equal(best, plan_matches(dense))


# -- functional: Gromov-Wasserstein ------------------------------------------------------------------
def test_gw_matches_pot_and_recovers_a_permutation_across_dimensions():
    X, _, _, _ = planted(n=120, d=6)
    rng = np.random.default_rng(5)
    R, _ = np.linalg.qr(rng.normal(size=(9, 6)))  # (9, 6) orthonormal columns: 6-d -> 9-d isometry
    perm = rng.permutation(120)
    Y = (X @ R.T)[perm]
    P = gw_plan(X, Y)
    assert (P.argmax(1) == np.argsort(perm)).mean() == 1.0
    C1, C2 = ot.dist(X, X), ot.dist(Y, Y)
    ref = ot.gromov.gromov_wasserstein(C1 / C1.mean(), C2 / C2.mean(), ot.unif(120), ot.unif(120))
    np.testing.assert_allclose(P, ref, atol=1e-9)


def test_entropic_gw_converges_in_float32_with_scaled_tolerance():
    X, Y, _, inv = planted(n=100, d=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        P = gw_plan(X.astype(np.float32), Y.astype(np.float32), reg=0.05)
    assert P.dtype == np.float32 and abs(P.sum() - 1) < 1e-4


def test_entropic_gw_underflow_raises_instead_of_returning_garbage():
    X, Y, _, _ = planted(n=60, d=4)
    with pytest.raises(FloatingPointError, match=r"underflowed .*Use reg >= 1e-2, float64 inputs, or reg=0"):
        gw_plan(X.astype(np.float32), Y.astype(np.float32), reg=1e-3)


def test_exact_gw_warns_when_it_runs_out_of_steps():
    rng = np.random.default_rng(10)
    X, Y = rng.normal(size=(50, 3)), rng.normal(size=(50, 4))
    with pytest.warns(ConvergenceWarning, match=r"stopped at max_iter=2 steps before its relative tolerance"):
        gw_plan(X, Y, max_iter=2)


def test_gw_starts_from_g0():
    X, Y, _, inv = planted(n=60, d=4)
    start = np.zeros((60, 60))
    start[np.arange(60), inv] = 1 / 60
    P = gw_plan(X, Y, G0=start)
    assert (P.argmax(1) == inv).all()
    assert (gw_plan(X, Y, G0=start * 7.0 + 1e-6).argmax(1) == inv).all()  # rescaled to the marginals first
    with pytest.raises(ValueError, match=r"G0 has a row or a column without mass"):
        gw_plan(X, Y, G0=np.eye(60)[::-1] * np.arange(60)[:, None])
    with pytest.raises(ValueError, match=r"G0 must be a non-negative coupling of shape \(60, 60\)"):
        gw_plan(X, Y, G0=start[:, :5])


def test_gw_loss_of_the_truth_is_zero_for_an_isometry():
    X, Y, _, inv = planted(n=60, d=4, noise=0.0)
    truth = np.zeros((60, 60))
    truth[np.arange(60), inv] = 1 / 60
    assert gw_loss(X, Y, truth) < 1e-12 < gw_loss(X, Y, np.full((60, 60), 1 / 3600))
    with pytest.raises(ValueError, match=r"P must have shape \(n, m\) = \(60, 60\)"):
        gw_loss(X, Y, truth[:5])


def test_fused_gw_uses_the_feature_cost():
    X, Y, Q, inv = planted(n=80, d=5)
    M = cost_matrix(X @ Q, Y)
    P = gw_plan(X, Y, M=M, alpha=0.3)
    assert (P.argmax(1) == inv).mean() == 1.0


# -- functional: error messages ----------------------------------------------------------------------
def test_functional_errors():
    X = np.ones((5, 3)) + np.arange(5)[:, None]
    with pytest.raises(ValueError, match=r"metric='manhattan' is not supported"):
        cost_matrix(X, X, metric="manhattan")
    with pytest.raises(ValueError, match=r"method='greedy' is not supported"):
        ot_plan(X, X, method="greedy")
    with pytest.raises(ValueError, match=r"reg must be >= 0.0"):
        ot_plan(X, X, reg=-1.0)
    with pytest.raises(ValueError, match=r"method='sinkhorn' needs reg > 0"):
        ot_plan(X, X, reg=0.0)
    with pytest.raises(ValueError, match=r"X has 3 features and Y has 2; a linear OT cost"):
        ot_plan(X, X[:, :2])
    with pytest.raises(ValueError, match=r"a has 4 weights, but there are 5 points"):
        ot_plan(X, X, a=np.ones(4))
    with pytest.raises(ValueError, match=r"All costs are zero"):
        ot_plan(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"M must have shape \(n, m\) = \(5, 5\)"):
        gw_plan(X, X, M=np.ones((5, 4)))
    with pytest.raises(ValueError, match=r"alpha must be <= 1"):
        gw_plan(X, X, alpha=2.0)
    with pytest.raises(ValueError, match=r"P has 3 columns but Y has 5 rows"):
        barycentric_projection(np.ones((2, 3)), X)
    with pytest.raises(ValueError, match=r"P has negative entries"):
        barycentric_projection(-np.ones((2, 5)), X)
    with pytest.raises(ValueError, match=r"Row 1 of the coupling has no mass"):
        barycentric_projection(np.array([[1.0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]), X)
    with pytest.raises(TypeError, match="mix numpy arrays and torch tensors"):
        ot_plan(X, torch.from_numpy(X))
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        ot_plan(X, np.full((5, 3), np.nan))


# -- OTAligner: planted truth with NO pairs ----------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [{"method": "emd"}, {"method": "sinkhorn", "tol": 1e-7}, {"method": "gw", "reg": 0.0}],
    ids=["emd", "sinkhorn", "gw"],
)
def test_unsupervised_recovers_rotation_and_permutation(problem, params):
    X, Y, Q, inv = problem
    aligner = OTAligner(**params).fit(X, Y)
    assert (aligner.matches_.numpy() == inv).mean() >= 0.95
    np.testing.assert_allclose(aligner.map_.rotation_.numpy(), Q, atol=0.01)
    assert aligner.converged_ and aligner.history_[0]["step"] == "gw"


def test_default_without_pairs_takes_the_unsupervised_aligners_route():
    X, Y, Q, inv = planted(n=300, d=12)
    aligner = OTAligner(random_state=3).fit(X, Y)
    reference = UnsupervisedAligner(random_state=3).fit(X, Y)
    assert aligner.method_ == "unsupervised" and aligner.score_ == reference.score_
    assert torch.equal(aligner.map_.rotation_, reference.map_.rotation_)
    assert [r["chosen"] for r in aligner.restarts_] == [r["chosen"] for r in reference.restarts_]
    matched = aligner.matches_.numpy() >= 0
    assert matched.mean() >= 0.9 and (aligner.matches_.numpy()[matched] == inv[matched]).mean() >= 0.95
    np.testing.assert_allclose(aligner.transform(X), X @ Q, atol=0.05)
    assert make_aligner("ot").fit(X, Y).method_ == "unsupervised"


def test_unsupervised_route_with_an_affine_map_and_the_explicit_gw_start():
    X, Y, Q, _ = planted(n=300, d=12)
    affine = OTAligner(refine="affine").fit(X, Y)
    assert isinstance(affine.map_, Affine)
    np.testing.assert_allclose(affine.transform(X), X @ Q, atol=0.05)
    # an explicit start keeps the OT rounds
    assert OTAligner(init="gw", n_iter=1).fit(X, Y).method_ == "sinkhorn"
    with pytest.raises(ValueError, match=r"method='unsupervised' takes no pairs, got 2\. Pass pairs=None"):
        OTAligner(method="unsupervised").fit(X, Y, pairs=[[0, 0], [1, 1]])


def test_unsupervised_float32_and_torch(problem):
    X, Y, Q, inv = problem
    Xt, Yt = torch.from_numpy(X).float(), torch.from_numpy(Y).float()
    aligner = OTAligner(method="emd").fit(Xt, Yt)
    assert (aligner.matches_.numpy() == inv).mean() >= 0.95
    Z = aligner.transform(Xt)
    assert Z.dtype == torch.float32
    np.testing.assert_allclose(Z.numpy(), X @ Q, atol=0.05)


def test_map_generalises_to_unseen_points_and_inverts(problem):
    X, Y, Q, inv = problem
    keep = np.sort(inv[:400])  # the 400 targets of X[:400], still shuffled
    aligner = OTAligner(method="emd").fit(X[:400], Y[keep])
    assert (aligner.matches_.numpy() == np.searchsorted(keep, inv[:400])).mean() >= 0.95
    unseen = X[400:]
    np.testing.assert_allclose(aligner.transform(unseen), unseen @ Q, atol=0.05)
    np.testing.assert_allclose(aligner.inverse_transform(aligner.transform(unseen)), unseen, atol=1e-10)


def test_different_row_counts():
    """Y holds two noisy copies of every target: each X row must land on one of its own two copies."""
    X, Y, Q, inv = planted(n=200, d=8)
    rng = np.random.default_rng(9)
    Y2 = np.concatenate([Y, Y + 0.01 * rng.normal(size=Y.shape)])
    aligner = OTAligner(method="emd").fit(X, Y2)
    assert aligner.matches_.shape == (200,)
    assert (aligner.matches_.numpy() % 200 == inv).mean() >= 0.95
    np.testing.assert_allclose(aligner.map_.rotation_.numpy(), Q, atol=0.02)


def test_gw_aligns_spaces_of_different_dimensions():
    X, _, _, _ = planted(n=300, d=16)
    rng = np.random.default_rng(7)
    R, _ = np.linalg.qr(rng.normal(size=(24, 16)))
    perm = rng.permutation(300)
    Y = (X @ R.T)[perm] + 0.01 * rng.normal(size=(300, 24))
    aligner = OTAligner(method="gw", reg=0.0).fit(X, Y)
    assert aligner.n_features_in_ == 16 and aligner.n_features_out_ == 24
    assert (aligner.matches_.numpy() == np.argsort(perm)).mean() >= 0.95
    np.testing.assert_allclose(aligner.inverse_transform(aligner.transform(X)), X, atol=1e-10)


def test_semi_supervised_five_pairs_beat_procrustes_on_the_five_pairs(problem):
    X, Y, Q, inv = problem
    pairs = np.stack([np.arange(5), inv[:5]], axis=1)
    truth = X @ Q

    def error(Z):
        return np.linalg.norm(Z - truth) / np.linalg.norm(truth - truth.mean(0))

    baseline = error(Procrustes().fit(X[:5], Y[inv[:5]]).transform(X))
    aligner = OTAligner(method="emd").fit(X, Y, pairs=pairs)
    assert error(aligner.transform(X)) < 0.01 < 0.5 < baseline
    assert aligner.matches_[:5].tolist() == inv[:5].tolist()
    # with enough pairs to determine the map, the first map comes from the pairs themselves
    many = np.stack([np.arange(40), inv[:40]], axis=1)
    aligner = OTAligner(method="emd").fit(X, Y, pairs=many)
    assert aligner.history_[0]["step"] == "pairs" and error(aligner.transform(X)) < 0.01


def test_relative_start_matches_free_rows_by_their_similarities_to_the_pairs(problem):
    X, Y, Q, inv = problem
    pairs = np.stack([np.arange(10), inv[:10]], axis=1)  # 10 pairs in 32 dimensions: no map from them alone
    start = OTAligner(method="emd", init="relative", n_iter=0).fit(X, Y, pairs=pairs)
    assert start.history_[0]["step"] == "relative" and start.converged_
    assert (start.matches_.numpy()[10:] == inv[10:]).mean() >= 0.95  # before any map: relative coords only
    auto = OTAligner(method="emd").fit(X, Y, pairs=pairs)
    assert auto.history_[0]["step"] == "relative"
    np.testing.assert_allclose(auto.transform(X), X @ Q, atol=0.05)


def test_relative_start_needs_two_pairs(problem):
    X, Y, _, inv = problem
    with pytest.raises(ValueError, match=r"init='relative' .* needs at least 2 pairs .* got 1 pairs"):
        OTAligner(init="relative").fit(X, Y, pairs=[[0, inv[0]]])
    assert OTAligner(method="emd", n_iter=1).fit(X, Y, pairs=[[0, inv[0]]]).history_[0]["step"] == "gw"


def test_lazy_sinkhorn_aligner_matches_dense():
    X, Y, _, _ = planted(n=150, d=6)
    params = {"method": "sinkhorn", "reg": 0.2, "n_iter": 1, "max_iter": 20_000, "tol": 1e-10}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # one round: the matches move from the GW start
        dense = OTAligner(**params).fit(X, Y)
        lazy = OTAligner(batch_size=64, **params).fit(X, Y)
    assert torch.equal(lazy.matches_, dense.matches_)
    np.testing.assert_allclose(lazy.transform(X), dense.transform(X), atol=1e-6)


def test_history_and_convergence_warning(problem):
    X, Y, _, _ = problem
    pairs = np.stack([np.arange(40), np.arange(40)], axis=1)  # wrong pairs: matches keep moving
    with pytest.warns(ConvergenceWarning, match=r"OTAligner stopped after n_iter=2 rounds without converging"):
        aligner = OTAligner(method="emd", n_iter=2).fit(X, Y, pairs=pairs)
    assert not aligner.converged_ and aligner.n_iter_ == 2
    assert [h["round"] for h in aligner.history_] == [0, 1, 2]
    assert set(aligner.history_[0]) == {"round", "step", "changed", "residual", "n_coupled"}
    assert all(
        set(h) == {"round", "step", "changed", "map_change", "residual", "n_coupled"} for h in aligner.history_[1:]
    )


def test_save_load_keeps_map_history_and_matches(problem, tmp_path):
    X, Y, _, _ = problem
    aligner = OTAligner(method="emd", preprocess=["center"]).fit(X, Y)
    path = aligner.save(tmp_path / "ot")
    loaded = latentalign.load(path)
    np.testing.assert_allclose(loaded.transform(X), aligner.transform(X), atol=1e-12)
    assert loaded.history_ == aligner.history_
    assert torch.equal(loaded.matches_, aligner.matches_)


def test_ot_aligner_errors():
    X, Y, _, _ = planted(n=40, d=4)
    with pytest.raises(ValueError, match=r"pairs must be an integer array of shape \(m, 2\)"):
        OTAligner().fit(X, Y, pairs=np.arange(6))
    with pytest.raises(ValueError, match=r"pairs\[1, 1\] = 40 is not a row of Y, which has 40 rows"):
        OTAligner().fit(X, Y, pairs=[[0, 0], [1, 40]])
    with pytest.raises(TypeError, match=r"pairs must hold integer row indices, got dtype float64"):
        OTAligner().fit(X, Y, pairs=np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match=r"init='identity' compares X and Y directly, but X has 4 features"):
        OTAligner(init="identity").fit(X, Y[:, :3])
    with pytest.raises(ValueError, match=r"batch_size is only used by method='sinkhorn'"):
        OTAligner(method="emd", batch_size=10).fit(X, Y)
    with pytest.raises(ValueError, match=r"method='sinkhorn' needs reg > 0"):
        OTAligner(reg=0).fit(X, Y)
    with pytest.raises(ValueError, match=r"method='exact' is not supported"):
        OTAligner(method="exact").fit(X, Y)
    with pytest.raises(ValueError, match=r"refine='linear' is not supported"):
        OTAligner(refine="linear").fit(X, Y)
    with pytest.raises(ValueError, match=r"init='pairs' is not supported"):
        OTAligner(init="pairs").fit(X, Y)
    with pytest.raises(ValueError, match=r"X has 1 rows, but at least 2 are required"):
        OTAligner().fit(X[:1], Y)
    with pytest.raises(ValueError, match=r"Every row is already paired"):
        OTAligner(init="gw").fit(X[:3], Y[:3], pairs=[[0, 0], [1, 1], [2, 2]])
    with pytest.raises(ValueError, match=r"init='identity' with n_iter=0"):
        OTAligner(init="identity", n_iter=0).fit(X, Y)


def test_check_pairs_accepts_integral_floats_and_empty():
    assert check_pairs(np.array([[1.0, 2.0]]), 3, 3).dtype == torch.long
    assert check_pairs(None, 3, 3).shape == (0, 2)


# -- self-learning ----------------------------------------------------------------------------------
def test_mutual_csls_matches_agree_with_the_full_csls_matrix():
    rng = np.random.default_rng(8)
    Z, Y = rng.normal(size=(70, 5)), rng.normal(size=(60, 5))
    rows, cols, scores = mutual_csls_matches(Z, Y, k=5)
    S = csls_scores(Z, Y, k=5)
    fwd, bwd = S.argmax(1), S.argmax(0)
    expected = [i for i in range(70) if bwd[fwd[i]] == i]
    assert rows.tolist() == expected and cols.tolist() == fwd[expected].tolist()
    np.testing.assert_allclose(scores, S[expected, fwd[expected]], atol=1e-6)


def test_self_learning_from_a_few_pairs(problem):
    X, Y, Q, inv = problem
    seeds = np.stack([np.arange(40), inv[:40]], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = SelfLearning(n_iter=10).fit(X, Y, pairs=seeds)
    assert model.converged_ and model.history_[-1]["changed"] == 0.0
    assert model.history_[-1]["n_matches"] >= 450
    np.testing.assert_allclose(model.transform(X), X @ Q, atol=0.01)
    m = model.matches_.numpy()
    assert (inv[m[:, 0]] == m[:, 1]).mean() >= 0.99


def test_self_learning_from_an_unsupervised_gw_start(problem, tmp_path):
    X, Y, Q, inv = problem
    model = SelfLearning(init=OTAligner(method="gw", reg=0.0, n_iter=0)).fit(X, Y)
    assert model.converged_
    np.testing.assert_allclose(model.transform(X), X @ Q, atol=0.01)
    loaded = SelfLearning.load(model.save(tmp_path / "sl"))
    assert isinstance(loaded.init_, OTAligner)
    np.testing.assert_allclose(loaded.transform(X), model.transform(X), atol=1e-12)


def test_self_learning_warns_when_it_does_not_converge(problem):
    X, Y, _, inv = problem
    seeds = np.stack([np.arange(3), inv[:3]], axis=1)  # 3 pairs in 32-d: a poor start
    with pytest.warns(ConvergenceWarning, match=r"SelfLearning stopped after n_iter=1 rounds without converging"):
        model = SelfLearning(n_iter=1).fit(X, Y, pairs=seeds)
    assert not model.converged_ and model.history_[0]["changed"] is None


def test_self_learning_errors():
    X, Y, _, _ = planted(n=30, d=4)
    with pytest.raises(ValueError, match=r"SelfLearning needs a start: pass known pairs"):
        SelfLearning().fit(X, Y)
    with pytest.raises(TypeError, match=r"init must be an Aligner"):
        SelfLearning(init="gw").fit(X, Y)
    with pytest.raises(ValueError, match=r"csls_k=50 exceeds the rows available"):
        SelfLearning(csls_k=50).fit(X, Y, pairs=[[0, 0], [1, 1]])
    with pytest.raises(ValueError, match=r"pairs has 1 row; refine='procrustes' needs at least 2"):
        SelfLearning().fit(X, Y, pairs=[[0, 0]])
