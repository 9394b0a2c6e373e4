"""Anchor selection (uniform, farthest-point, k-means, stratified) and anchor checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist, pdist

from latentalign import IllConditionedWarning
from latentalign.anchors import ANCHOR_METHODS, check_anchors, select_anchors


def pool(seed: int = 0, n: int = 400, d: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def blobs(seed: int = 0, n_blobs: int = 8, per: int = 40, d: int = 5):
    rng = np.random.default_rng(seed)
    centers = 20 * rng.standard_normal((n_blobs, d))
    labels = np.repeat(np.arange(n_blobs), per)
    return centers[labels] + rng.standard_normal((n_blobs * per, d)), labels


def select(X, n, method, **kw):
    if method == "stratified":
        kw.setdefault("labels", np.arange(len(X)) % 5)
    return select_anchors(X, n, method=method, **kw)


# -- shared properties --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ANCHOR_METHODS)
def test_distinct_int64_indices_deterministic_under_seed(method):
    X = pool()
    first = select(X, 25, method, seed=3)
    assert first.dtype == np.int64 and first.shape == (25,)
    assert len(set(first.tolist())) == 25 and first.min() >= 0 and first.max() < len(X)
    np.testing.assert_array_equal(select(X, 25, method, seed=3), first)


@pytest.mark.parametrize("method", ["uniform", "fps", "stratified"])
def test_different_seeds_give_different_selections(method):
    X = pool()
    assert not np.array_equal(select(X, 25, method, seed=0), select(X, 25, method, seed=1))


@pytest.mark.parametrize("method", ANCHOR_METHODS)
def test_torch_input_gives_the_numpy_result(method):
    X = pool()
    from_numpy = select(X, 20, method, seed=2)
    from_torch = select(torch.from_numpy(X), 20, method, seed=2)
    assert isinstance(from_torch, np.ndarray) and from_torch.dtype == np.int64
    np.testing.assert_array_equal(from_torch, from_numpy)


def test_selecting_every_row_returns_a_permutation():
    X = pool(n=30)
    for method in ("uniform", "fps"):
        assert sorted(select_anchors(X, 30, method=method).tolist()) == list(range(30))


# -- farthest-point sampling --------------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_fps_spread_beats_uniform(seed):
    X = np.random.default_rng(seed).standard_normal((800, 4))
    fps = pdist(X[select_anchors(X, 30, method="fps", seed=seed)]).min()
    uniform = pdist(X[select_anchors(X, 30, method="uniform", seed=seed)]).min()
    assert fps > uniform


def test_fps_matches_a_direct_greedy_implementation():
    X = pool(4, n=200)
    ours = select_anchors(X, 15, method="fps", seed=5)
    D = cdist(X, X)
    chosen = [int(ours[0])]
    for _ in range(14):
        chosen.append(int(np.argmax(D[:, chosen].min(1))))
    np.testing.assert_array_equal(ours, chosen)


def test_fps_cosine_uses_directions():
    rng = np.random.default_rng(6)
    directions = rng.standard_normal((5, 3))
    # many rescaled copies of 5 directions: cosine fps must find all 5 directions first
    X = np.vstack([d * s for d in directions for s in (0.5, 1.0, 2.0, 4.0)])
    idx = select_anchors(X, 5, method="fps", metric="cosine", seed=0)
    assert sorted(i // 4 for i in idx) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"X has only 5 distinct rows \(directions\) under metric='cosine'"):
        select_anchors(X, 6, method="fps", metric="cosine", seed=0)


def test_fps_refuses_duplicates():
    X = np.repeat(pool(7, n=3), 4, axis=0)
    with pytest.raises(ValueError, match="X has only 3 distinct rows under metric='euclidean', so fps cannot select 4"):
        select_anchors(X, 4, method="fps")


# -- k-means ------------------------------------------------------------------------------------------
def test_kmeans_picks_one_real_row_per_blob():
    X, labels = blobs()
    idx = select_anchors(X, 8, method="kmeans", seed=0)
    assert sorted(labels[idx].tolist()) == list(range(8))


def test_kmeans_rows_are_nearest_to_their_centroid():
    from sklearn.cluster import KMeans

    X, _ = blobs(1)
    idx = select_anchors(X, 8, method="kmeans", seed=4)
    centers = KMeans(n_clusters=8, n_init=1, random_state=4).fit(X).cluster_centers_
    nearest = cdist(centers, X).argmin(1)
    # well separated blobs: nearest rows are distinct, so the unique matching is the plain argmin
    assert len(set(nearest.tolist())) == 8
    np.testing.assert_array_equal(np.sort(idx), np.sort(nearest))


def test_kmeans_stays_unique_when_centroids_share_a_nearest_row():
    X = np.vstack([np.zeros((1, 2)), 100 + np.random.default_rng(0).standard_normal((60, 2))])
    # 10 clusters on 61 points: several centroids compete for the same rows; indices stay unique
    idx = select_anchors(X, 10, method="kmeans", seed=0)
    assert len(set(idx.tolist())) == 10


def test_kmeans_cosine():
    X, labels = blobs(2)
    idx = select_anchors(X, 8, method="kmeans", metric="cosine", seed=0)
    assert len(set(idx.tolist())) == 8
    Xz = X.copy()
    Xz[5] = 0.0
    with pytest.raises(ValueError, match=r"X rows \[5\] have zero norm; metric='cosine' needs nonzero rows"):
        select_anchors(Xz, 8, method="kmeans", metric="cosine")


# -- stratified ---------------------------------------------------------------------------------------
def test_stratified_is_balanced_and_respects_small_classes():
    sizes = [100, 50, 3, 40, 40]
    labels = np.repeat(np.arange(5), sizes)
    X = pool(8, n=len(labels))
    idx = select_anchors(X, 20, method="stratified", labels=labels, seed=1)
    counts = np.bincount(labels[idx], minlength=5)
    assert counts.sum() == 20 and counts[2] == 3  # the small class gives everything it has
    others = np.delete(counts, 2)
    assert others.max() - others.min() <= 1
    assert len(set(idx.tolist())) == 20


def test_stratified_fewer_anchors_than_classes_covers_as_many_classes_as_possible():
    labels = np.repeat(np.array(["a", "b", "c", "d", "e", "f"]), 10)
    X = pool(9, n=60)
    idx = select_anchors(X, 4, method="stratified", labels=torch.arange(60) // 10, seed=0)
    assert len(set((np.arange(60) // 10)[idx].tolist())) == 4
    idx = select_anchors(X, 12, method="stratified", labels=labels, seed=0)
    assert (np.unique(labels[idx], return_counts=True)[1] == 2).all()


# -- checks -------------------------------------------------------------------------------------------
def test_check_anchors_reports_rank_and_condition():
    A = pool(10, n=30, d=5)
    report = check_anchors(A)
    assert (report.n_anchors, report.n_features, report.rank) == (30, 5, 5) and report.full_rank
    s = np.linalg.svd(A, compute_uv=False)
    assert report.condition_number == pytest.approx(s.max() / s.min())
    assert report.rank == np.linalg.matrix_rank(A)


def test_duplicates_are_an_error_with_their_indices():
    A = pool(11, n=10, d=4)
    A[6] = A[1]
    A[9] = A[1]
    A[8] = A[3]
    with pytest.raises(
        ValueError, match=r"exactly duplicated rows \(row indices that repeat each other: \[1, 6, 9\]; \[3, 8\]\)"
    ):
        check_anchors(A)
    B = pool(11, n=4, d=3)
    B[2] = B[0]
    with pytest.raises(ValueError, match=r"^embeddings has exactly duplicated rows"):
        check_anchors(torch.from_numpy(B), name="embeddings")


def test_negative_zero_counts_as_a_duplicate():
    A = np.array([[0.0, 1.0], [-0.0, 1.0], [2.0, 3.0]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_anchors(A)


def test_rank_and_count_warnings():
    with pytest.warns(
        IllConditionedWarning,
        match="3 anchors of dimension 6 with numerical rank 3 \\(fewer anchors than dimensions\\)",
    ):
        report = check_anchors(pool(12, n=3, d=6))
    assert not report.full_rank and report.condition_number > 0
    low_rank = pool(13, n=20, d=2) @ np.random.default_rng(0).standard_normal((2, 5))
    with pytest.warns(
        IllConditionedWarning, match="20 anchors of dimension 5 with numerical rank 2: they span only 2 of 5"
    ):
        report = check_anchors(low_rank)
    assert report.rank == 2 and report.condition_number == float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_anchors(low_rank, warn=False).rank == 2


def test_cosine_checks():
    A = pool(14, n=8, d=4)
    A[5] = 3.0 * A[2]
    with pytest.warns(
        IllConditionedWarning, match=r"1 pair\(s\) of rows point in the same direction \(e.g. rows \[2, 5\]\)"
    ):
        report = check_anchors(A, metric="cosine")
    assert report.parallel_pairs == ((2, 5),)
    A[5] = 0.0
    with pytest.raises(ValueError, match=r"anchors rows \[5\] have zero norm; their cosine similarity is undefined"):
        check_anchors(A, metric="cosine")


def test_check_anchors_errors():
    A = pool(15, n=8, d=4)
    with pytest.raises(ValueError, match="anchors has 8 rows, but at least 10 anchors are required"):
        check_anchors(A, min_count=10)
    with pytest.raises(ValueError, match="metric='dot' is not supported"):
        check_anchors(A, metric="dot")
    with pytest.raises(ValueError, match="anchors contains NaN or infinity"):
        check_anchors(np.full((3, 2), np.nan))


def test_select_anchors_errors():
    X = pool(16, n=10, d=3)
    with pytest.raises(ValueError, match=r"Cannot select n=11 anchors from X with 10 rows; use n <= 10"):
        select_anchors(X, 11)
    with pytest.raises(ValueError, match="n must be >= 1"):
        select_anchors(X, 0)
    with pytest.raises(TypeError, match="n must be an integer"):
        select_anchors(X, 2.5)
    with pytest.raises(ValueError, match=r"method='random' is not supported; choose one of \['uniform'"):
        select_anchors(X, 3, method="random")
    with pytest.raises(ValueError, match=r"metric='l1' is not supported"):
        select_anchors(X, 3, method="fps", metric="l1")
    with pytest.raises(ValueError, match="seed must be >= 0"):
        select_anchors(X, 3, seed=-1)
    with pytest.raises(ValueError, match="labels are only used by method='stratified', but method='uniform'"):
        select_anchors(X, 3, labels=np.zeros(10))
    with pytest.raises(ValueError, match="method='stratified' needs labels"):
        select_anchors(X, 3, method="stratified")
    with pytest.raises(
        ValueError, match=r"labels must be a 1-D array with one label per row of X \(10\), got shape \(9,\)"
    ):
        select_anchors(X, 3, method="stratified", labels=np.zeros(9))
    Xz = X.copy()
    Xz[4] = 0.0
    with pytest.raises(ValueError, match=r"X rows \[4\] have zero norm; cosine distances to them are undefined"):
        select_anchors(Xz, 3, method="fps", metric="cosine")
    with pytest.raises(ValueError, match="must be a 2-D array"):
        select_anchors(X[0], 1)
