"""Reproductions 4-7: text stitching, word translation (NN vs CSLS), mutual kNN, ASIF zero-shot.

Fast tests check the runners' building blocks on planted data; the slow tests re-run each experiment's
``[reduced]`` config on the real offline models and data and check the paper's finding with margins.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentalign.encoders.word_vectors import WordVectorEncoder
from latentalign.experiments import load_config, run_experiment
from latentalign.experiments.asif import asif_predict
from latentalign.experiments.text_stitching import definition
from latentalign.experiments.word_translation import (
    _fit,
    _preprocess,
    as_word_vectors,
    owned_words,
    precision_at_1,
    split_dictionary,
)
from latentalign.functional.retrieval import csls_scores

NAMES = ("text_stitching", "word_translation_csls", "mutual_knn", "asif_zero_shot")


# ------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("name", NAMES)
def test_configs_load_and_state_their_sources(name):
    config = load_config(name)
    reduced = load_config(name, reduced=True)
    assert config["runner"].startswith("latentalign.experiments.")
    for key in ("citation", "table", "differences", "sources"):
        assert config["paper"].get(key), key
    assert reduced["reduced_run"] and reduced["setup"] != config["setup"]


# ------------------------------------------------------------------------------------------ text stitching
def test_definition_strips_the_quoted_examples():
    gloss = 'a member of the genus Canis; "the dog barked all night"; "a lapdog"'
    assert definition(gloss) == "a member of the genus Canis"
    assert definition("(physics) a unit of force") == "(physics) a unit of force"
    assert definition('having a sharp edge;"a keen knife"') == "having a sharp edge"


def test_stitching_table_relative_coordinates_are_the_relative_projection_estimators():
    from latentalign.align import RelativeProjection
    from latentalign.functional.relative import relative_projection

    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((40, 6)), rng.standard_normal((40, 9))
    anchors = np.arange(0, 40, 3)
    rel = RelativeProjection(metric="cosine", center=True).fit(X[anchors], Y[anchors])
    np.testing.assert_allclose(
        relative_projection(X, X[anchors], metric="cosine", center=True), rel.transform(X), atol=1e-10
    )
    np.testing.assert_allclose(
        relative_projection(Y, Y[anchors], metric="cosine", center=True), rel.transform_target(Y), atol=1e-10
    )


def test_stitching_table_on_planted_rotated_spaces():
    from latentalign.experiments.text_stitching import stitching_table

    rng = np.random.default_rng(0)
    n_cls, per = 5, 40
    centres = rng.standard_normal((n_cls, 8)) * 2
    X = np.repeat(centres, per, axis=0) + 0.5 * rng.standard_normal((n_cls * per, 8))
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    spaces = {"a": X, "b": 3.0 * X @ Q + 1.0}  # b is a rotated, rescaled, shifted copy of a
    labels = np.repeat(np.arange(n_cls), per)
    order = rng.permutation(len(labels))
    train, test = np.sort(order[:120]), np.sort(order[120:])
    rows = stitching_table("planted", spaces, labels, train, test, train[:60], [("a", "b")], C=1.0, seed=0)
    by = {r["method"]: r for r in rows}
    assert by["relative"]["macro_f1"] == pytest.approx(by["relative"]["non-stitched macro_f1"])
    assert by["procrustes"]["macro_f1"] == pytest.approx(by["procrustes"]["non-stitched macro_f1"], abs=0.02)
    assert by["absolute"]["macro_f1"] < by["relative"]["macro_f1"]


@pytest.mark.filterwarnings("ignore:MLPAligner reached max_epochs")  # a few dozen anchors
def test_stitching_sweep_scores_every_method_at_every_budget_on_nested_anchors():
    from latentalign.experiments.text_stitching import _sweep, stitching_table

    rng = np.random.default_rng(1)
    centres = rng.standard_normal((4, 6)) * 2
    X = np.repeat(centres, 30, axis=0) + 0.5 * rng.standard_normal((120, 6))
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    spaces = {"a": X, "b": np.tanh(X @ Q)}  # b is a curved copy of a
    labels = np.repeat(np.arange(4), 30)
    order = rng.permutation(120)
    train, test = np.sort(order[:80]), np.sort(order[80:])
    sweep = _sweep("planted", spaces, labels, train, test, [("a", "b")], budgets=[20], check_budget=40, C=1.0, seed=0)
    assert list(sweep.tables) == [20, 40] and sweep.check_budget == 40
    methods = ["absolute", "relative", "procrustes", "mlp", "kernel_ridge"]
    for k, table in sweep.tables.items():
        assert [r["method"] for r in table] == methods and {r["anchors"] for r in table} == {k}
    # the checks' table is stitching_table on the checks' own draw of 40 anchors (the draw they were first run with)
    anchors = np.sort(np.random.default_rng(1).choice(train, size=40, replace=False))
    assert sweep.rows == stitching_table("planted", spaces, labels, train, test, anchors, [("a", "b")], C=1.0, seed=0)
    means = sweep.means()
    assert means[20]["mlp"] == (sweep.tables[20][3]["macro_f1"], 0.0)  # one pair: its score, no spread
    mean_rows = sweep.mean_rows()
    assert len(mean_rows) == 2 * len(methods) and {r["encoder A (input)"] for r in mean_rows} == {"mean over pairs"}
    assert mean_rows[0]["anchors"] == 20 and mean_rows[0]["note"] == "1 pair"


# ------------------------------------------------------------------------------------------ word translation
def test_split_dictionary_holds_out_whole_source_words():
    pairs = [(f"w{i}", f"t{j}") for i in range(50) for j in range(i % 3 + 1)]
    train, test = split_dictionary(pairs, n_train=40, n_test=10, seed=0)
    assert len(test) == 10 and len(train) == 40
    assert not {s for s, _ in train} & set(test)
    by_source = {}
    for s, t in pairs:
        by_source.setdefault(s, set()).add(t)
    assert all(test[w] == by_source[w] for w in test)  # every translation of a test word is gold
    assert split_dictionary(pairs, 40, 10, seed=0) == (train, test)


def test_owned_words_keeps_the_first_word_of_each_distinct_vector():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    enc = WordVectorEncoder(["chat", "chien", "chats", "Chat"], vectors, rows=[0, 1, 0, 0])
    words, V = owned_words(enc, chunk=3)
    assert words == ["chat", "chien"]
    np.testing.assert_array_equal(V, vectors)


def test_as_word_vectors_returns_a_word_vector_table_and_refuses_other_encoders():
    from latentalign.encoders import ArrayEncoder

    enc = WordVectorEncoder(["chat", "chien"], np.eye(2, dtype=np.float32))
    assert as_word_vectors(enc) is enc
    with pytest.raises(TypeError, match="encoder must be a WordVectorEncoder.*got ArrayEncoder"):
        as_word_vectors(ArrayEncoder(np.eye(2, dtype=np.float32), ids=["chat", "chien"]))


def test_precision_at_1_nn_and_csls_match_brute_force():
    rng = np.random.default_rng(0)
    K = rng.standard_normal((60, 8)).astype(np.float32)
    Q = K[:20] + 0.8 * rng.standard_normal((20, 8)).astype(np.float32)
    gold = [{i} for i in range(20)]
    cos = (Q / np.linalg.norm(Q, axis=1, keepdims=True)) @ (K / np.linalg.norm(K, axis=1, keepdims=True)).T
    expected_nn = np.mean(cos.argmax(1) == np.arange(20))
    assert precision_at_1(Q, K, gold) == pytest.approx(expected_nn)
    # With the queries as the whole source vocabulary, CSLS is the library's csls_scores.
    S = np.asarray(csls_scores(torch.as_tensor(Q), torch.as_tensor(K), k=5))
    expected_csls = np.mean(S.argmax(1) == np.arange(20))
    got = precision_at_1(Q, K, gold, csls_k=5, source_vocab=Q, query_rows=np.arange(20), chunk=7)
    assert got == pytest.approx(expected_csls)


def test_precision_at_1_csls_needs_the_source_vocabulary():
    Q = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="CSLS needs source_vocab and query_rows"):
        precision_at_1(Q, Q, [{0}, {1}, {2}], csls_k=1)


def test_preprocess_and_fit_reject_unknown_names():
    X = np.ones((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="normalisation must be one of"):
        _preprocess(X, "zscore")
    with pytest.raises(ValueError, match="mapping must be one of"):
        _fit("ridge", X, X)


def test_unit_center_preprocessing_is_unit_length_then_zero_mean():
    X = np.random.default_rng(1).standard_normal((30, 5)).astype(np.float32) + 3.0
    U = _preprocess(X, "unit")
    np.testing.assert_allclose(np.linalg.norm(U, axis=1), 1.0, rtol=1e-6)
    C = _preprocess(X, "unit+center")
    np.testing.assert_allclose(C.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(C, U - U.mean(axis=0), atol=1e-6)


# ------------------------------------------------------------------------------------------ ASIF
def test_asif_predict_recovers_planted_classes_across_unrelated_spaces():
    # Image and text spaces are unrelated linear views of the same latent class structure.
    rng = np.random.default_rng(0)
    n_cls, per = 4, 30
    centres = rng.standard_normal((n_cls, 6)) * 3
    latent = np.repeat(centres, per, axis=0) + 0.3 * rng.standard_normal((n_cls * per, 6))
    y = np.repeat(np.arange(n_cls), per)
    to_image, to_text = rng.standard_normal((6, 20)), rng.standard_normal((6, 12))
    images, texts = latent @ to_image, latent @ to_text
    anchors = np.arange(0, n_cls * per, 2)
    test = np.arange(1, n_cls * per, 2)
    prompts = centres @ to_text
    for top_k, power in ((None, 1.0), (5, 8.0)):
        pred = asif_predict(
            images[anchors], texts[anchors], images[test], prompts, top_k=top_k, power=power, center=True
        )
        assert np.mean(pred == y[test]) > 0.95, (top_k, power)


# ------------------------------------------------------------------------------------------ slow: reduced runs
def _run(name, tmp_path):
    result, page = run_experiment(name, reduced=True, out_dir=tmp_path)
    record = json.loads((tmp_path / f"{name}.json").read_text())
    assert page.exists() and (tmp_path / f"{name}.png").exists()
    assert record["checks"] and len(record["checks"]) == len(result.checks)
    return result


@pytest.mark.slow
def test_word_translation_reduced_csls_beats_nn_and_ablation_ordering_holds(tmp_path):
    result = _run("word_translation_csls", tmp_path)
    rows = result.rows
    p1 = {(r["direction"], r["retrieval"]): r["P@1"] for r in rows if r["part"] == "NN vs CSLS"}
    for direction in ("en->fr", "fr->en"):
        assert p1[(direction, "NN")] > 0.2, direction  # far above chance (~1e-4)
        assert p1[(direction, "CSLS")] >= p1[(direction, "NN")] + 0.04, direction  # paper's claim: >= 2 points
    ablation = {(r["mapping"], r["normalisation"]): r["P@1"] for r in rows if r["part"] == "normalisation ablation"}
    assert max(ablation, key=ablation.get) == ("orthogonal", "unit+center")
    for norm in ("original", "unit", "unit+center"):
        assert ablation[("orthogonal", norm)] > ablation[("unconstrained", norm)], norm
    assert ablation[("orthogonal", "unit+center")] >= ablation[("orthogonal", "original")] + 0.03
    assert result.passed


@pytest.mark.slow
def test_text_stitching_reduced_relative_survives_where_absolute_collapses(tmp_path):
    result = _run("text_stitching", tmp_path)
    rows = {(r["task"].split(" ")[0], r["encoder A (input)"], r["head B"], r["method"]): r for r in result.rows}
    chance = 1 / 45
    wordnet = {k[1:]: r for k, r in rows.items() if k[0] == "WordNet" and k[1] != "mean over pairs"}
    for (a, b, method), row in wordnet.items():
        if method != "relative":
            continue
        absolute = wordnet[(a, b, "absolute")]["macro_f1"]
        # Relative stitching keeps most of the non-stitched head (claim: >= 70 %; 5 points of slack).
        assert row["macro_f1"] >= 0.65 * row["non-stitched macro_f1"], (a, b)
        if "e5-small" in (a, b):
            # Independently trained encoders: absolute stitching is near chance, relative far above it.
            assert absolute < 3 * chance, (a, b)
            assert row["macro_f1"] >= 5 * max(absolute, chance), (a, b)
    # Known deviation from the paper's premise: MiniLM-L6 and paraphrase-MiniLM-L3 share their origin, so
    # absolute stitching between them is far above chance (the 2x check fails on this pair).
    assert wordnet[("minilm-l3-onnx", "minilm", "absolute")]["macro_f1"] > 5 * chance
    tux = {k[1:]: r for k, r in rows.items() if k[0] == "Tux"}
    rel, ab = tux[("e5-small:fr", "minilm:en", "relative")], tux[("e5-small:fr", "minilm:en", "absolute")]
    assert rel["macro_f1"] >= 3 * ab["macro_f1"]
    assert rel["accuracy"] >= ab["accuracy"] + 0.2


@pytest.mark.slow
def test_mutual_knn_reduced_cross_modal_alignment_is_far_above_chance(tmp_path):
    result = _run("mutual_knn", tmp_path)
    config = load_config("mutual_knn", reduced=True)["setup"]
    images, texts = config["image_models"], config["text_models"]
    matrix = {r["model"]: r for r in result.rows}
    n = config["limit"] - sum("dropped" in note for note in result.notes)  # at most a few repeated pictures
    chance = config["k"] / (n - 1)
    for a in images:
        for t in texts:
            assert matrix[a][t] >= 4 * chance, (a, t)  # claim: >= 3x chance; measured ~6x at n = 240
            assert matrix[a][t] == pytest.approx(matrix[t][a])
    # Within a modality, models agree far more than across modalities.
    assert matrix[images[0]][images[1]] > max(matrix[a][t] for a in images for t in texts)
    assert matrix[texts[0]][texts[1]] > max(matrix[a][t] for a in images for t in texts)
    shuffled = next(note for note in result.notes if "shuffled pairing" in note)
    assert "gives 0.0" in shuffled  # the measured chance level is a few hundredths, like k/(n-1)
    # The trend with image-model size is checked (and reported) by the full run only: Lite0 and Lite2 differ by
    # 1.4 M parameters and the reduced scores are within noise of each other.


@pytest.mark.slow
def test_asif_reduced_accuracy_rises_with_anchors_and_beats_the_majority_class(tmp_path):
    result = _run("asif_zero_shot", tmp_path)
    sparse = [r for r in result.rows if r["variant"] == "sparse"]
    dense = {r["n_anchors"]: r["accuracy"] for r in result.rows if r["variant"] == "dense"}
    accs = [r["accuracy"] for r in sparse]
    assert [r["n_anchors"] for r in sparse] == sorted(r["n_anchors"] for r in sparse)
    assert accs[-1] >= accs[0] + 0.2  # claim: accuracy rises with the number of anchors
    assert all(b >= a - 0.02 for a, b in zip(accs, accs[1:]))
    assert accs[-1] >= sparse[-1]["majority_class"] + 0.2
    # Sparse vs dense: at most a few hundred anchors the two are close (the full run's headline pair has dense
    # ahead); the reduced run must not show sparse far behind.
    full = sparse[-1]["n_anchors"]
    assert sparse[-1]["accuracy"] >= dense[full] - 0.03
