"""Latent functional maps: the pure functions and the LatentFunctionalMap aligner."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

import latentalign
from latentalign import Procrustes
from latentalign.align import LatentFunctionalMap, make_aligner
from latentalign.exceptions import IllConditionedWarning, NotFittedError
from latentalign.functional.functional_map import (
    DENSE_EIGEN_MAX,
    heat_descriptors,
    knn_graph,
    laplacian_eigenbasis,
    map_from_pointwise,
    normalized_laplacian,
    pointwise_map,
    similarity_descriptors,
    solve_functional_map,
    standardize_columns,
    zoomout,
)

ZOOM = {"correspondence": "pointwise", "k_final": 60}


def clustered(n: int = 300, d: int = 8, seed: int = 1, noise: float = 1e-3, n_anchors: int = 10):
    """Two views of one clustered cloud: ``Y = (X Q + noise)[perm]``, and anchor pairs ``(i, inv[i])``.

    Row ``j`` of ``Y`` is row ``perm[j]`` of ``X``. Four anisotropic clusters close enough for a connected
    10-NN graph (seed 1).
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, d)) * 2.0
    scales = rng.uniform(0.3, 1.2, size=(4, d))
    labels = rng.integers(4, size=n)
    X = centers[labels] + rng.normal(size=(n, d)) * scales[labels]
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    perm = rng.permutation(n)
    Y = (X @ Q + noise * rng.normal(size=(n, d)))[perm]
    inv = np.argsort(perm)
    known = rng.choice(n, n_anchors, replace=False)
    return X, Y, Q, perm, np.stack([known, inv[known]], axis=1)


# -- planted truth ----------------------------------------------------------------------------------------
def test_planted_rotation_and_correspondence_are_recovered_from_ten_anchors():
    X, Y, Q, perm, pairs = clustered()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a connected graph, enough rows: nothing to warn about
        lfm = LatentFunctionalMap(**ZOOM).fit(X, Y, pairs=pairs)
    assert (lfm.matches_.numpy() == perm).mean() >= 0.9
    np.testing.assert_allclose(lfm.map_.rotation_.numpy(), Q, atol=0.02)
    assert lfm.n_eigen_ == 60 and lfm.functional_map_.shape == (60, 60)
    assert lfm.history_[0]["changed"] is None and lfm.history_[-1]["changed"] < 0.05
    # without ZoomOut, carrying X's coordinates by the 40 x 40 map already gives the rotation
    default = LatentFunctionalMap().fit(X, Y, pairs=pairs)
    np.testing.assert_allclose(default.map_.rotation_.numpy(), Q, atol=0.05)
    assert default.n_eigen_ == 40 and len(default.history_) == 1


def test_planted_beats_procrustes_on_the_anchors_alone():
    X, Y, Q, perm, pairs = clustered(n_anchors=5)  # fewer anchors than dimensions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)
        anchors_only = Procrustes().fit(X[pairs[:, 0]], Y[pairs[:, 1]])
    lfm = LatentFunctionalMap(**ZOOM).fit(X, Y, pairs=pairs)
    error = {name: np.abs(m.transform(X) - X @ Q).max() for name, m in (("lfm", lfm), ("anchors", anchors_only))}
    assert error["lfm"] < 0.05 < error["anchors"]


def test_paired_rows_with_n_anchors_hide_the_other_pairs():
    X, _, Q, _, _ = clustered()
    Y = X @ Q  # paired row by row
    lfm = LatentFunctionalMap(n_anchors=10, **ZOOM).fit(X, Y)
    assert lfm.anchors_.shape == (10, 2) and bool((lfm.anchors_[:, 0] == lfm.anchors_[:, 1]).all())
    assert (lfm.matches_.numpy() == np.arange(len(X))).mean() >= 0.9
    np.testing.assert_allclose(lfm.map_.rotation_.numpy(), Q, atol=0.02)
    # another seed draws other anchors
    other = LatentFunctionalMap(n_anchors=10, random_state=1, **ZOOM).fit(X, Y)
    assert not torch.equal(other.anchors_, lfm.anchors_)


def test_all_rows_paired_is_the_refine_map_on_all_pairs():
    from latentalign import Affine

    X, _, Q, _, _ = clustered(n=60)
    Y = X @ Q + 1.0
    lfm = LatentFunctionalMap().fit(X, Y)
    np.testing.assert_allclose(lfm.transform(X), Procrustes().fit(X, Y).transform(X), atol=1e-10)
    assert lfm.n_eigen_ == 0 and lfm.functional_map_.shape == (0, 0)
    affine = LatentFunctionalMap(refine="affine").fit(X, Y)
    np.testing.assert_allclose(affine.transform(X), Affine().fit(X, Y).transform(X), atol=1e-8)


def test_estimator_agrees_with_the_pure_functions():
    X, Y, _, _, pairs = clustered(n=150)
    lfm = LatentFunctionalMap(n_neighbors=10, k_init=10, k_final=30, zoomout_step=10, alpha=0.1).fit(X, Y, pairs=pairs)
    bases = [laplacian_eigenbasis(normalized_laplacian(knn_graph(Z, 10)), 30) for Z in (X, Y)]
    (vx, Vx), (vy, Vy) = bases
    F = np.hstack(
        [
            standardize_columns(similarity_descriptors(X, pairs[:, 0])),
            standardize_columns(heat_descriptors(vx, Vx, pairs[:, 0])),
        ]
    )
    G = np.hstack(
        [
            standardize_columns(similarity_descriptors(Y, pairs[:, 1])),
            standardize_columns(heat_descriptors(vy, Vy, pairs[:, 1])),
        ]
    )
    C0 = solve_functional_map(Vx[:, :10].T @ F, Vy[:, :10].T @ G, vx[:10], vy[:10], alpha=0.1)
    C, T, history = zoomout(Vx, Vy, C0, k_final=30, step=10, fixed=pairs)
    np.testing.assert_allclose(lfm.functional_map_.numpy(), C, atol=1e-10)
    np.testing.assert_array_equal(lfm.matches_.numpy(), T)
    np.testing.assert_allclose(lfm.eigenvalues_x_.numpy(), vx, atol=1e-12)
    assert [h["k"] for h in lfm.history_] == [h["k"] for h in history] == [10, 20, 30]


# -- invariances ------------------------------------------------------------------------------------------
def test_rotating_and_scaling_x_leaves_the_functional_map_unchanged():
    X, Y, _, _, pairs = clustered(n=150)
    R, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(8, 8)))
    params = {"k_init": 10, "k_final": 30, "zoomout_step": 10}
    a = LatentFunctionalMap(**params).fit(X, Y, pairs=pairs)
    b = LatentFunctionalMap(**params).fit(3.0 * X @ R, Y, pairs=pairs)
    np.testing.assert_allclose(b.functional_map_.numpy(), a.functional_map_.numpy(), atol=1e-8)
    np.testing.assert_array_equal(b.matches_.numpy(), a.matches_.numpy())
    np.testing.assert_allclose(b.eigenvalues_x_.numpy(), a.eigenvalues_x_.numpy(), atol=1e-10)


def test_numpy_torch_and_float32_inputs_agree():
    X, Y, _, _, pairs = clustered(n=150)
    params = {"k_init": 10, "k_final": 30, "zoomout_step": 10}
    ref = LatentFunctionalMap(**params).fit(X, Y, pairs=pairs)
    tor = LatentFunctionalMap(**params).fit(torch.from_numpy(X), torch.from_numpy(Y), pairs=torch.from_numpy(pairs))
    np.testing.assert_allclose(tor.transform(torch.from_numpy(X)).numpy(), ref.transform(X), atol=1e-8)
    f32 = LatentFunctionalMap(**params).fit(X.astype(np.float32), Y.astype(np.float32), pairs=pairs)
    out = f32.transform(X.astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref.transform(X), atol=1e-3)


@pytest.mark.filterwarnings("ignore::latentalign.exceptions.IllConditionedWarning")  # four separate clusters
def test_float32_rounding_does_not_decide_the_map_outside_the_transferred_span():
    # The transferred rows span at most k_final directions (plus one per anchor): the refining Procrustes
    # must see that rank, and complete the rest of the 64 directions as it documents, not by the float32
    # rounding noise of those rows (which differs with the BLAS thread count).
    X, Y, _, _, pairs = clustered(n=300, d=64, n_anchors=10)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    model = LatentFunctionalMap(k_init=10).fit(X32, Y32, pairs=pairs)
    assert model.map_.rank_ <= 10 + len(pairs)
    # the same fit from the float64 rows: the same completion, so the same map to float32 precision
    ref = LatentFunctionalMap(k_init=10).fit(X, Y, pairs=pairs)
    assert ref.map_.rank_ == model.map_.rank_
    np.testing.assert_allclose(model.transform(X32), ref.transform(X), atol=1e-3)


# -- the pure functions -----------------------------------------------------------------------------------
def test_eigenbasis_is_ascending_orthonormal_and_starts_at_zero():
    X, _, _, _, _ = clustered(n=200)
    vals, vecs = laplacian_eigenbasis(normalized_laplacian(knn_graph(X, 10)), 25)
    assert abs(vals[0]) < 1e-10 and vals[1] > 1e-6  # connected: exactly one zero eigenvalue
    assert np.all(np.diff(vals) >= 0) and vals[-1] <= 2.0
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(25), atol=1e-10)
    # the first eigenvector of the normalised Laplacian is sqrt(degree), up to sign
    degree = np.asarray(knn_graph(X, 10).sum(1)).reshape(-1)
    np.testing.assert_allclose(np.abs(vecs[:, 0]), np.sqrt(degree / degree.sum()), atol=1e-8)


def test_sparse_eigensolver_matches_the_dense_one():
    n = DENSE_EIGEN_MAX + 200  # above the dense threshold: ARPACK in shift-invert mode
    X = np.random.default_rng(0).normal(size=(n, 5))
    L = normalized_laplacian(knn_graph(X, 8))
    vals, vecs = laplacian_eigenbasis(L, 12)
    dense_vals, dense_vecs = scipy.linalg.eigh(L.toarray(), subset_by_index=[0, 11])
    np.testing.assert_allclose(vals, dense_vals, atol=1e-9)
    np.testing.assert_allclose(np.abs(vecs.T @ dense_vecs), np.eye(12), atol=1e-6)  # same vectors, up to sign


def test_disconnected_graph_warns_and_is_joined():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + 100.0])
    with pytest.warns(IllConditionedWarning, match=r"has 2 connected components .* Raise n_neighbors"):
        W = knn_graph(X, 5, metric="euclidean")
    vals, _ = laplacian_eigenbasis(normalized_laplacian(W), 3)
    assert vals[1] > 1e-8  # one zero eigenvalue: one component


def test_knn_graph_is_invariant_to_rotation_and_keeps_duplicates_attached():
    X = np.random.default_rng(0).normal(size=(60, 4))
    Q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
    W, WQ = knn_graph(X, 6), knn_graph(X @ Q, 6)
    assert abs(W - WQ).max() < 1e-10
    dup = np.concatenate([X, np.repeat(X[:1], 10, axis=0)])  # 11 copies of one row: zero local scale
    Wd = knn_graph(dup, 6)
    assert np.isfinite(Wd.data).all() and (np.asarray(Wd.sum(1)) > 0).all()


def test_solve_functional_map_uses_the_commutativity_penalty():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 2))  # too few descriptors to determine a 6 x 6 map
    vals = np.linspace(0.0, 1.0, 6)
    free = solve_functional_map(A, A, vals, vals, alpha=0.0)
    penalised = solve_functional_map(A, A, vals, vals, alpha=10.0)

    def off_diagonal(C):
        return np.sum(C**2) - np.sum(np.diag(C) ** 2)

    assert off_diagonal(penalised) < 0.1 * off_diagonal(free)
    Co = solve_functional_map(A, A, vals, vals, alpha=1.0, orthogonal=True)
    np.testing.assert_allclose(Co @ Co.T, np.eye(6), atol=1e-10)


def test_pointwise_and_functional_maps_invert_each_other():
    Phi = np.linalg.qr(np.random.default_rng(0).normal(size=(30, 30)))[0]
    perm = np.random.default_rng(1).permutation(30)
    C = map_from_pointwise(Phi, Phi[perm], perm)  # full basis: the permutation is exactly representable
    np.testing.assert_array_equal(pointwise_map(Phi, Phi[perm], C), perm)


# -- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"k_init": 40}, r"k_init=40 exceeds the number of rows \(X has 30, Y has 30\).*Pass k_init <= 30"),
        ({"n_neighbors": 30, "k_init": 5}, r"n_neighbors=30 must be smaller than the number of rows.*<= 29"),
    ],
    ids=["k-larger-than-n", "neighbours-larger-than-n"],
)
def test_sizes_larger_than_the_data_are_refused(params, match):
    X, Y, _, _, pairs = clustered(n=30, n_anchors=5)
    with pytest.raises(ValueError, match=match):
        LatentFunctionalMap(**params).fit(X, Y, pairs=pairs)


def test_k_larger_than_n_in_the_eigensolver_is_refused():
    W = knn_graph(np.random.default_rng(0).normal(size=(10, 2)), 3)
    with pytest.raises(ValueError, match=r"k=11 eigenvectors were asked of a graph with 10 nodes.*k <= 10"):
        laplacian_eigenbasis(normalized_laplacian(W), 11)


def test_k_final_is_capped_at_the_rows():
    X, Y, _, _, pairs = clustered(n=40, n_anchors=5)
    lfm = LatentFunctionalMap(k_init=10, k_final=500, zoomout_step=10).fit(X, Y, pairs=pairs)
    assert lfm.n_eigen_ == 40


def test_too_few_anchors_are_refused():
    X, Y, _, _, pairs = clustered(n=50)
    with pytest.raises(ValueError, match=r"needs at least 2 distinct anchor pairs .* got 1 of 1 pairs"):
        LatentFunctionalMap(k_init=5).fit(X, Y, pairs=pairs[:1])
    with pytest.raises(ValueError, match=r"n_anchors must be >= 2, got 1"):
        LatentFunctionalMap(n_anchors=1).fit(X, X)
    with pytest.raises(ValueError, match=r"n_anchors=20 exceeds the 10 known pairs"):
        LatentFunctionalMap(n_anchors=20).fit(X, Y, pairs=pairs)


def test_repeated_pairs_count_once_and_repeated_rows_add_no_descriptor():
    X, Y, _, _, pairs = clustered(n=50)
    doubled = np.concatenate([pairs, pairs[:3]])  # the same pairs twice
    with pytest.warns(IllConditionedWarning, match=r"3 of 13 anchor pairs are listed more than once"):
        lfm = LatentFunctionalMap(k_init=5).fit(X, Y, pairs=doubled)
    assert len(lfm.anchors_) == 10
    # one row of X paired with two rows of Y: a single distinct anchor, too few for descriptors
    with pytest.raises(ValueError, match=r"needs at least 2 distinct anchor pairs .* got 1 of 2 pairs"):
        LatentFunctionalMap(k_init=5).fit(X, Y, pairs=np.array([[0, 0], [0, 1]]))
    # equal embeddings in known pairs are fine when nothing is left to match (every row paired)
    labels = np.repeat(np.arange(3.0), 10)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aligned = LatentFunctionalMap().fit(labels, 2.0 * labels)
    np.testing.assert_allclose(aligned.transform(labels), Procrustes().fit(labels, 2.0 * labels).transform(labels))


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"k_init": 30, "k_final": 20}, ValueError, r"k_final=20 is smaller than k_init=30"),
        ({"descriptors": "geodesic"}, ValueError, r"descriptors entry='geodesic' is not supported"),
        ({"descriptors": ["cosine", "cosine"]}, ValueError, r"with a repeat"),
        ({"descriptors": []}, ValueError, r"non-empty list"),
        ({"correspondence": "soft"}, ValueError, r"correspondence='soft' is not supported"),
        ({"metric": "l1"}, ValueError, r"metric='l1' is not supported"),
        ({"refine": "ridge"}, ValueError, r"refine='ridge' is not supported"),
        ({"alpha": -1.0}, ValueError, r"alpha must be >= 0.0"),
        ({"n_neighbors": 2.5}, TypeError, r"n_neighbors must be an integer"),
    ],
)
def test_bad_parameters_name_themselves(params, error, match):
    X, Y, _, _, pairs = clustered(n=50)
    with pytest.raises(error, match=match):
        LatentFunctionalMap(**params).fit(X, Y, pairs=pairs)


def test_bad_pairs_and_rows_are_refused():
    X, Y, _, _, pairs = clustered(n=50)
    with pytest.raises(ValueError, match=r"pairs\[0, 1\] = 50 is not a row of Y, which has 50 rows"):
        LatentFunctionalMap().fit(X, Y, pairs=[[0, 50], [1, 2]])
    with pytest.raises(ValueError, match=r"pairs must be an integer array of shape \(m, 2\)"):
        LatentFunctionalMap().fit(X, Y, pairs=[0, 1, 2])
    with pytest.raises(ValueError, match="must be paired row by row"):
        LatentFunctionalMap().fit(X, Y[:40])  # no pairs: rows are paired
    Xz = X.copy()
    Xz[7] = 0.0
    with pytest.raises(ValueError, match=r"X has 1 zero row\(s\) \(first: row 7\).*metric='euclidean'"):
        LatentFunctionalMap(k_init=5).fit(Xz, Y, pairs=pairs)


def test_unpaired_sides_may_have_different_counts_and_dimensions():
    X, Y, _, perm, pairs = clustered(n=200)
    Y_wide = np.hstack([Y, np.zeros((len(Y), 4))])  # the same geometry in 12 dimensions
    lost = np.flatnonzero(~np.isin(np.arange(200), pairs[:, 1]))[:10]
    rows = np.setdiff1d(np.arange(200), lost)  # Y loses 10 free rows: X has items Y lacks
    new_index = {old: new for new, old in enumerate(rows)}
    sub_pairs = np.stack([pairs[:, 0], [new_index[j] for j in pairs[:, 1]]], 1)
    # a small, lightly penalised initial map (partial matching is sensitive to the penalty's weight)
    lfm = LatentFunctionalMap(n_neighbors=10, k_init=20, alpha=0.1, **ZOOM).fit(X, Y_wide[rows], pairs=sub_pairs)
    assert lfm.matches_.shape == (190,) and lfm.n_features_in_ == 8 and lfm.n_features_out_ == 12
    # partial correspondence costs accuracy (about 1.0 with no row lost, 0.65 with 20 lost); chance is 0.005
    assert (lfm.matches_.numpy() == perm[rows]).mean() >= 0.85


# -- the estimator contract -------------------------------------------------------------------------------
def test_unfitted_clone_refit_and_registry():
    X, Y, _, _, pairs = clustered(n=150)
    lfm = make_aligner("lfm", k_init=10)
    assert isinstance(lfm, LatentFunctionalMap)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        lfm.transform(X)
    first = lfm.fit(X, Y, pairs=pairs).transform(X)
    np.testing.assert_allclose(lfm.fit(X, Y, pairs=pairs).transform(X), first, atol=1e-12)
    twin = lfm.clone()
    assert not twin.is_fitted and twin.get_params() == lfm.get_params()
    np.testing.assert_allclose(twin.fit(X, Y, pairs=pairs).transform(X), first, atol=1e-12)


def test_save_load_round_trip_keeps_the_spectral_state(tmp_path):
    X, Y, _, _, pairs = clustered(n=150)
    lfm = LatentFunctionalMap(k_init=10, k_final=30, zoomout_step=10, descriptors=["heat"]).fit(X, Y, pairs=pairs)
    path = lfm.save(tmp_path / "lfm")
    for loaded in (LatentFunctionalMap.load(path), latentalign.load(path)):
        assert type(loaded) is LatentFunctionalMap and loaded.get_params() == lfm.get_params()
        np.testing.assert_allclose(loaded.transform(X), lfm.transform(X), atol=1e-12)
        np.testing.assert_allclose(loaded.inverse_transform(loaded.transform(X)), X, atol=1e-8)
        for name in ("functional_map_", "eigenvalues_x_", "eigenvalues_y_", "matches_", "anchors_"):
            assert torch.equal(getattr(loaded, name), getattr(lfm, name)), name
        assert loaded.history_ == lfm.history_ and loaded.n_eigen_ == 30


def test_to_module_matches_transform_and_inverse():
    X, Y, _, _, pairs = clustered(n=150)
    lfm = LatentFunctionalMap(k_init=10).fit(X, Y, pairs=pairs)
    Xt = torch.from_numpy(X)
    forward = lfm.to_module(dtype=torch.float64)
    torch.testing.assert_close(forward(Xt), lfm.transform(Xt))
    backward = lfm.to_module(inverse=True, dtype=torch.float64)
    torch.testing.assert_close(backward(forward(Xt)), Xt)


def _errors_of_the_pure_functions():
    X = np.random.default_rng(0).normal(size=(12, 3))
    W = knn_graph(X, 3)
    Phi = np.linalg.qr(np.random.default_rng(1).normal(size=(12, 4)))[0]
    isolated = scipy.sparse.csr_matrix(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    return {
        "neighbours": (lambda: knn_graph(X, 12), r"n_neighbors=12 must be smaller than the number of rows \(12\)"),
        "1-d": (lambda: knn_graph(X[0], 3), r"X must be a 2-D array .* got shape \(3,\)"),
        "weights": (lambda: knn_graph(X, 3, weights="gauss"), r"weights='gauss' is not supported"),
        "isolated": (lambda: normalized_laplacian(isolated), r"W has isolated nodes \(row 2 has no edge\)"),
        "square": (lambda: normalized_laplacian(scipy.sparse.csr_matrix(np.ones((2, 3)))), r"square affinity matrix"),
        "descriptor-count": (
            lambda: solve_functional_map(np.ones((3, 4)), np.ones((3, 5)), np.zeros(3), np.zeros(3)),
            r"must hold the same p descriptors, got shapes \(3, 4\) and \(3, 5\)",
        ),
        "eigenvalue-count": (
            lambda: solve_functional_map(np.ones((3, 4)), np.ones((3, 4)), np.zeros(2), np.zeros(3)),
            r"eigenvalues_x must have k_x = 3 values .* got 2 and 3",
        ),
        "C-shape": (lambda: pointwise_map(Phi, Phi, np.eye(3)), r"C must have shape \(k_y, k_x\) = \(4, 4\)"),
        "matches-shape": (lambda: map_from_pointwise(Phi, Phi, np.arange(5)), r"one entry per row .* \(12\)"),
        "k_final": (lambda: zoomout(Phi, Phi, np.eye(2), k_final=5), r"k_final=5 exceeds the basis sizes given"),
        "L-eigen": (lambda: laplacian_eigenbasis(normalized_laplacian(W), 0), r"k must be >= 1, got 0"),
    }


@pytest.mark.parametrize("case", list(_errors_of_the_pure_functions()))
def test_pure_functions_name_what_is_wrong(case):
    call, match = _errors_of_the_pure_functions()[case]
    with pytest.raises(ValueError, match=match):
        call()
