"""Evaluation on embeddings at the edges of the float range, and on degenerate (constant) embeddings.

Cosine rankings do not depend on the scale of the rows, so they must come out the same at 1e20 or 1e-30 as
at 1; dot and l2 scores that float32 cannot hold are refused with the range; k-NN measures on constant
embeddings raise the zero-variance error that CKA and SVCCA raise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentalign.evaluation import RetrievalEvaluator, SimilarityEvaluator
from latentalign.functional.norms import row_norms
from latentalign.functional.retrieval import csls_knn, knn, retrieval_scores
from latentalign.functional.similarity import cknna, linear_cka, mutual_knn, similarity_scores

RNG = np.random.default_rng(0)
X = RNG.standard_normal((200, 16)).astype(np.float32)
Y = RNG.standard_normal((200, 16)).astype(np.float32)  # unrelated to X
NOISY = X + 0.3 * RNG.standard_normal(X.shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Cosine scores at any scale
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e20, 1e-20, 1e30, 1e-30, 1e37])
def test_identical_data_is_retrieved_perfectly_at_any_scale(scale):
    assert retrieval_scores(X * scale, X * scale, k=1)["recall@1"] == 1.0
    assert retrieval_scores(torch.from_numpy(X * scale), torch.from_numpy(X * scale), k=1)["recall@1"] == 1.0


@pytest.mark.parametrize("scale", [1e20, 1e-20])
def test_rescaling_queries_or_keys_leaves_every_cosine_metric_unchanged(scale):
    reference = retrieval_scores(NOISY, X, k=(1, 5))
    assert retrieval_scores(NOISY * scale, X, k=(1, 5)) == pytest.approx(reference)
    assert retrieval_scores(NOISY, X * scale, k=(1, 5)) == pytest.approx(reference)
    csls = retrieval_scores(NOISY, X, k=(1, 5), csls=True)
    assert retrieval_scores(NOISY * scale, X * scale, k=(1, 5), csls=True) == pytest.approx(csls)


def test_the_stateful_retrieval_evaluator_agrees_at_large_scale():
    evaluator = RetrievalEvaluator(k=(1, 5))
    evaluator.update(NOISY * 1e25, X * 1e25)
    assert evaluator.compute() == pytest.approx(retrieval_scores(NOISY, X, k=(1, 5)))


@pytest.mark.parametrize("scale", [1e20, 1e-20])
def test_knn_cosine_values_stay_cosines_at_extreme_scales(scale):
    values, indices = knn(X * scale, X * scale, k=1)
    assert indices.ravel().tolist() == list(range(len(X)))
    np.testing.assert_allclose(values.ravel(), 1.0, rtol=1e-5)
    _, idx = csls_knn(X * scale, X * scale, k=1, csls_k=5)
    assert idx.ravel().tolist() == list(range(len(X)))


@pytest.mark.parametrize("index", ["faiss"])
def test_the_faiss_index_normalises_rows_without_overflow(index):
    pytest.importorskip("faiss")
    assert retrieval_scores(X * 1e20, X * 1e20, k=1, index=index)["recall@1"] == 1.0


def test_float64_rows_beyond_the_square_root_of_the_float64_range_are_normalised():
    big = X.astype(np.float64) * 1e200  # squares overflow even in float64
    tiny = X.astype(np.float64) * 1e-200  # squares underflow even in float64
    assert retrieval_scores(big, big, k=1)["recall@1"] == 1.0
    assert retrieval_scores(tiny, tiny, k=1)["recall@1"] == 1.0


@pytest.mark.parametrize("scale", [1e30, 1e-30, 1e20, 1e-20])
def test_mutual_knn_of_a_space_and_its_rescaled_self_is_one(scale):
    assert mutual_knn(X, X * scale) == 1.0
    assert cknna(X, X * scale) == pytest.approx(1.0)


def test_mutual_knn_of_unrelated_spaces_is_as_low_at_1e30_as_at_1():
    at_one = mutual_knn(X, Y)
    assert at_one < 0.2
    assert mutual_knn(X * 1e30, Y * 1e30) == pytest.approx(at_one, abs=0.01)
    assert cknna(X * 1e30, Y * 1e30) == pytest.approx(cknna(X, Y), abs=0.02)


def test_row_norms_match_a_float64_reference_from_1e_minus_40_to_3e38():
    for scale in (1e-40, 1e-30, 1e-20, 1.0, 1e20, 1e30, 1e37):
        rows = (X[:5, :4] * np.float32(scale)).astype(np.float32)
        reference = np.sqrt((rows.astype(np.float64) ** 2).sum(1))
        np.testing.assert_allclose(row_norms(torch.from_numpy(rows)).numpy(), reference, rtol=1e-6)
    huge = torch.tensor([[1e300, -1e300], [3e-300, 4e-300]], dtype=torch.float64)
    np.testing.assert_allclose(row_norms(huge).numpy(), [np.sqrt(2) * 1e300, 5e-300], rtol=1e-12)


def test_a_zero_row_is_still_refused_for_cosine():
    zeros = X.copy()
    zeros[3] = 0.0
    with pytest.raises(ValueError, match=r"K has a zero row \(row 3\), whose cosine similarity is undefined"):
        retrieval_scores(X * 1e20, zeros, k=1)


# ---------------------------------------------------------------------------------------------------------
# dot and l2 scores that float32 cannot hold
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("metric", "scale"), [("dot", 1e20), ("l2", 1e20), ("dot", 1e-20), ("l2", 1e-20)])
def test_dot_and_l2_scores_beyond_float32_are_refused_with_the_range(metric, scale):
    with pytest.raises(
        ValueError,
        match=rf"metric='{metric}' scores of Q \(largest row norm .*\) and K .* reach .*, outside the range "
        r"9\.86e-32 to 3\.4e\+38 that torch\.float32 scores can hold.*Rescale the embeddings",
    ):
        retrieval_scores(X * scale, X * scale, k=1, metric=metric)
    with pytest.raises(ValueError, match=rf"metric='{metric}' scores of X .* outside the range"):
        mutual_knn(X * scale, X, metric=metric)
    with pytest.raises(ValueError, match=rf"metric='{metric}' scores of Q .* outside the range"):
        knn(X * scale, X * scale, k=1, metric=metric, index="exact")


def test_dot_and_l2_scores_beyond_float32_are_refused_by_faiss_too():
    pytest.importorskip("faiss")
    with pytest.raises(ValueError, match=r"outside the range .* that torch\.float32 scores can hold"):
        knn(X.astype(np.float64) * 1e20, X.astype(np.float64) * 1e20, k=1, metric="dot", index="faiss")


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_dot_and_l2_in_float64_hold_what_float32_cannot(metric):
    queries, keys = NOISY.astype(np.float64), X.astype(np.float64)
    reference = retrieval_scores(queries, keys, k=(1, 5), metric=metric)
    assert retrieval_scores(queries * 1e20, keys * 1e20, k=(1, 5), metric=metric) == pytest.approx(reference)


# ---------------------------------------------------------------------------------------------------------
# Constant embeddings
# ---------------------------------------------------------------------------------------------------------
CONSTANT = np.ones((50, 4), dtype=np.float32)


@pytest.mark.parametrize(("measure", "what"), [(mutual_knn, "mutual_knn"), (cknna, "CKNNA")])
def test_knn_measures_on_constant_embeddings_raise_like_cka(measure, what):
    with pytest.raises(ValueError, match=r"X has zero variance \(all rows are identical\)") as cka_error:
        linear_cka(CONSTANT, X[:50, :4])
    with pytest.raises(ValueError, match=rf"X has zero variance \(all rows are identical\), so {what} is undefined"):
        measure(CONSTANT, X[:50, :4])
    with pytest.raises(ValueError, match=rf"Y has zero variance \(all rows are identical\), so {what} is undefined"):
        measure(X[:50, :4], CONSTANT)
    assert "Check that the embeddings were extracted correctly." in str(cka_error.value)


def test_constant_embeddings_raise_through_similarity_scores_and_the_evaluator():
    with pytest.raises(ValueError, match=r"Y has zero variance .* so mutual_knn is undefined"):
        similarity_scores(X[:50, :4], CONSTANT, metrics=("mutual_knn",))
    evaluator = SimilarityEvaluator(metrics=("cknna",), k=5).update(X[:50, :4], CONSTANT)
    with pytest.raises(ValueError, match=r"Y has zero variance .* so CKNNA is undefined"):
        evaluator.compute()


def test_rows_that_differ_in_one_entry_are_not_constant():
    almost = CONSTANT.copy()
    almost[7, 2] = 2.0
    assert 0.0 <= mutual_knn(almost, X[:50, :4], k=5) <= 1.0
