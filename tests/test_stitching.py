"""Stitcher and evaluate_stitching on planted problems with real heads (torch and scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from latentalign import Procrustes, RelativeProjection
from latentalign.evaluation.stitching import evaluate_stitching
from latentalign.stitching import Stitcher, apply_head, map_embeddings


def clustered(n=600, d=16, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)) * 3
    labels = rng.integers(0, classes, n)
    Y = centres[labels] + rng.standard_normal((n, d))
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    X = Y @ Q.T  # model A sees a rotated copy of B's space: Y = X Q
    return X, Y, labels


def test_stitched_head_recovers_its_own_accuracy_on_a_planted_rotation():
    X, Y, labels = clustered()
    head = LogisticRegression(max_iter=1000).fit(Y[:400], labels[:400])
    aligner = Procrustes().fit(X[:100], Y[:100])
    scores = evaluate_stitching(head, X[400:], Y[400:], labels[400:], aligner)
    assert scores["native"]["accuracy"] > 0.9
    assert scores["stitched"]["accuracy"] == pytest.approx(scores["native"]["accuracy"], abs=1e-12)
    # Without the map the head reads rotated features and falls towards chance.
    assert scores["absolute"]["accuracy"] < scores["native"]["accuracy"] - 0.3


def test_relative_stitching_uses_the_head_trained_on_relative_coordinates():
    X, Y, labels = clustered(seed=1)
    rel = RelativeProjection().fit(X[:100], Y[:100])
    head = LogisticRegression(max_iter=1000).fit(rel.transform_target(Y[:400]), labels[:400])
    scores = evaluate_stitching(head, X[400:], Y[400:], labels[400:], rel)
    assert scores["stitched"]["accuracy"] == pytest.approx(scores["native"]["accuracy"], abs=0.02)
    assert scores["absolute"] is None  # relative space has 100 dims, A's space 16


def test_stitcher_module_with_torch_encoder_and_head():
    torch.manual_seed(0)
    encoder_a = torch.nn.Linear(5, 8).double()
    Q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    head_b = torch.nn.Linear(8, 3).double()
    inputs = torch.randn(200, 5, dtype=torch.float64)
    with torch.no_grad():
        Xa = encoder_a(inputs)
    aligner = Procrustes(center=False).fit(Xa, Xa @ Q)
    stitched = Stitcher(encoder_a, aligner, head_b)
    assert not stitched.training
    out = stitched(inputs)
    with torch.no_grad():
        expected = head_b(Xa @ Q)
    torch.testing.assert_close(out, expected, atol=1e-8, rtol=1e-8)
    np.testing.assert_array_equal(stitched.predict(inputs), expected.argmax(1).numpy())


def test_binary_decision_function_becomes_two_columns():
    X, Y, labels = clustered(classes=2, seed=2)
    head = LogisticRegression(max_iter=1000).fit(Y, labels)
    scores = apply_head(head, torch.from_numpy(Y))
    assert scores.shape == (Y.shape[0], 2)
    np.testing.assert_array_equal(scores.argmax(1).numpy(), head.predict(Y))


def test_universal_space_requires_model_names():
    class FakeUniversal:  # only the interface matters for the error path
        def translate(self, Z, *, src, dst):
            return Z

    with pytest.raises(ValueError, match="needs the source and destination model names"):
        map_embeddings(FakeUniversal(), torch.zeros(2, 2))


def test_bad_components_are_rejected():
    with pytest.raises(TypeError, match="encoder_a must be"):
        Stitcher(42, None, torch.nn.Identity())
    with pytest.raises(TypeError, match="aligner must be a fitted latentalign aligner"):
        map_embeddings(object(), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="head_b must be"):
        apply_head(42, torch.zeros(2, 2))


def test_evaluate_stitching_validates_labels():
    X, Y, labels = clustered(n=50)
    head = LogisticRegression(max_iter=500).fit(Y, labels)
    with pytest.raises(ValueError, match="labels must be a 1-D array with one label per row of X_test"):
        evaluate_stitching(head, X, Y, labels[:10], None)
    with pytest.raises(TypeError, match="labels must be integer class indices"):
        evaluate_stitching(head, X, Y, labels.astype(float), None)
    with pytest.raises(ValueError, match="X_test and Y_test must be paired"):
        evaluate_stitching(head, X, Y[:10], labels, None)
