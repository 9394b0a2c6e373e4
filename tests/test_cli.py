"""The command line end to end on tiny planted data (typer's CliRunner, real files in tmp_path)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from latentalign import load
from latentalign.cli import app
from latentalign.store.integrity import manifest_digest

runner = CliRunner()


@pytest.fixture()
def pair_files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 6)).astype(np.float32)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    Y = (X @ Q).astype(np.float32)
    np.save(tmp_path / "a.npy", X)
    np.save(tmp_path / "b.npy", Y)
    return tmp_path, X, Y, Q


def one_record(folder, kind):
    """The one run record ``kind-<time>-<hash>.json`` in ``folder``: its path and content."""
    found = sorted(folder.glob(f"{kind}-*.json"))
    assert len(found) == 1, found
    return found[0], json.loads(found[0].read_text())


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_list_aligners_and_datasets():
    out = invoke("list", "aligners")
    assert "procrustes" in out and "relative" in out
    assert "fashion_mnist" in invoke("list", "datasets")
    assert "word_translation_csls" in invoke("list", "experiments")


def test_list_rejects_unknown_section():
    result = runner.invoke(app, ["list", "planets"])
    assert result.exit_code == 2  # a usage error, listing the choices
    assert "'planets' is not one of 'models', 'datasets', 'aligners', 'experiments', 'all'" in flat(result.output)


def test_fit_saves_a_map_that_recovers_the_rotation(pair_files):
    tmp, X, Y, Q = pair_files
    out = invoke("fit", tmp / "a.npy", tmp / "b.npy", "-m", "procrustes", "-p", "center=false", "-o", tmp / "m")
    assert "saved map to" in out and str(tmp / "m.safetensors") in out
    aligner = load(tmp / "m.safetensors")
    np.testing.assert_allclose(aligner.rotation_, Q, atol=1e-4)


def test_fit_rejects_malformed_param(pair_files):
    tmp, *_ = pair_files
    result = runner.invoke(app, ["fit", str(tmp / "a.npy"), str(tmp / "b.npy"), "-p", "alpha"])
    assert result.exit_code != 0
    assert "NAME=VALUE" in result.output


def test_evaluate_writes_a_record_and_report_tables_it(pair_files):
    tmp, *_ = pair_files
    invoke("fit", tmp / "a.npy", tmp / "b.npy", "-o", tmp / "m.safetensors")
    out = invoke("evaluate", tmp / "a.npy", tmp / "b.npy", "--map", tmp / "m.safetensors", "-o", tmp / "runs")
    assert "wrote run record" in out
    record = one_record(tmp / "runs", "evaluate")[1]
    assert record["rows"][0]["recall@1"] == 1.0
    assert "torch" in record["versions"]
    out = invoke("report", tmp / "runs", "-o", tmp / "report")
    assert (tmp / "report" / "report.md").read_text().count("| 1.000 |") >= 1
    assert (tmp / "report" / "report.csv").exists()
    assert (tmp / "report" / "recall_at_1.png").stat().st_size > 1000


def test_evaluate_without_map_is_at_chance_level_on_rotated_data(pair_files):
    tmp, *_ = pair_files
    invoke("evaluate", tmp / "a.npy", tmp / "b.npy", "-o", tmp / "runs")
    record = one_record(tmp / "runs", "evaluate")[1]
    assert record["rows"][0]["recall@1"] < 0.3


def test_every_command_has_help_with_an_example():
    for command in ("list", "embed", "fit", "evaluate", "diagnose", "stitch", "report", "demo", "run"):
        out = invoke(command, "--help")
        assert "Example" in out, command


# ---------------------------------------------------------------------------------------------- embed / stitch
# Real offline encoders: GloVe-50 word vectors (model A) and paraphrase-MiniLM-L3 ONNX (model B).
WORD_CLASSES = {
    "animal": "dog cat horse cow sheep pig goat lion tiger bear wolf fox rabbit mouse deer elephant monkey zebra "
    "giraffe camel donkey squirrel leopard kangaroo otter",
    "color": "red blue green yellow orange purple pink brown black white gray violet crimson scarlet turquoise "
    "beige maroon magenta cyan indigo lavender tan olive teal navy",
    "country": "france germany italy spain japan china india brazil canada mexico russia egypt kenya peru chile "
    "norway sweden poland greece turkey iran iraq vietnam thailand argentina",
    "body": "arm leg hand foot head neck shoulder knee elbow finger toe ankle wrist chest stomach back hip thumb "
    "ear nose mouth eye lip chin forehead",
}


def flat(text):
    """Error output without rich's box drawing and line wrapping, for matching messages."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def fails(*args, match):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code != 0, result.output
    assert re.search(match, flat(result.output)), result.output
    return result


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    """Train/test word lists with category labels, embedded by both models through the CLI."""
    tmp = tmp_path_factory.mktemp("words")
    items = [(w, c) for c, ws in WORD_CLASSES.items() for w in ws.split()]
    order = np.random.default_rng(0).permutation(len(items))
    items = [items[i] for i in order]
    train, test = items[:60], items[60:]
    for split, rows in (("train", train), ("test", test)):
        write_lines(tmp / f"{split}.txt", [w for w, _ in rows])
        write_lines(tmp / f"{split}_y.txt", [c for _, c in rows])
        for model, tag in (("glove-50", "a"), ("minilm-l3-onnx", "b")):
            out = invoke(
                "embed", model, tmp / f"{split}.txt", "-o", tmp / f"{tag}_{split}.safetensors", "--no-progress"
            )
            assert f"saved embeddings to {tmp / f'{tag}_{split}.safetensors'}" in out
    return tmp, train, test


def test_embed_writes_the_encoders_own_vectors_in_input_order(words):
    from safetensors import safe_open

    from latentalign.encoders import load_encoder
    from latentalign.store import EmbeddingStore

    tmp, train, _ = words
    path = tmp / "a_train.safetensors"
    with safe_open(str(path), framework="numpy") as fh:
        X = fh.get_tensor("embeddings")
        meta = fh.metadata()
    expected = load_encoder("glove-50").encode([w for w, _ in train], progress=False)
    np.testing.assert_array_equal(X, expected)
    assert meta["encoder"] == "glove-50" and meta["n"] == "60" and meta["dim"] == "50"
    store = EmbeddingStore(tmp / "a_train.store")
    assert store.ids == list(range(60))
    np.testing.assert_array_equal(store.to_numpy(), X)


def test_embed_resumes_a_killed_run_from_its_last_finished_shard(tmp_path):
    words_list = WORD_CLASSES["animal"].split()[:14]
    src = write_lines(tmp_path / "w.txt", words_list)
    out = tmp_path / "w.safetensors"
    invoke("embed", "glove-50", src, "-o", out, "--shard-size", 4, "--no-progress")
    full = load_matrix_file(out)
    store = tmp_path / "w.store"
    # Put the store in the state a run killed while writing shard 2 leaves: the manifest (the commit
    # point) lists shards 0-1 only, later shard files and a half-written temp file lie around.
    manifest = json.loads((store / "manifest.json").read_text())
    assert [s["rows"] for s in manifest["shards"]] == [4, 4, 4, 2]
    manifest["shards"], manifest["complete"] = manifest["shards"][:2], False
    manifest.pop("finished", None)
    manifest["manifest_sha256"] = manifest_digest(manifest)  # as the killed writer wrote it
    (store / "manifest.json").write_text(json.dumps(manifest))
    (store / "embeddings" / "emb_00003.npy").unlink()
    (store / "embeddings" / ".emb_00002.npy.999.tmp").write_bytes(b"partial")
    out.unlink()
    kept = (store / "embeddings" / "emb_00000.npy").stat().st_mtime_ns
    text = invoke("embed", "glove-50", src, "-o", out, "--shard-size", 4, "--no-progress")
    assert f"resumed store {store}: rows 0-7 were already written, encoded rows 8-13" in text
    assert (store / "embeddings" / "emb_00000.npy").stat().st_mtime_ns == kept  # not re-encoded
    assert not list((store / "embeddings").glob(".*.tmp"))
    np.testing.assert_array_equal(load_matrix_file(out), full)
    again = invoke("embed", "glove-50", src, "-o", out, "--shard-size", 4, "--no-progress")
    assert "was already complete" in again


def load_matrix_file(path):
    from latentalign.cli.inputs import load_matrix

    return np.asarray(load_matrix(path, "X"))


def test_embed_refuses_a_store_of_other_inputs_unless_overwrite(tmp_path):
    src = write_lines(tmp_path / "w.txt", ["cat", "dog"])
    out = tmp_path / "w.npy"
    invoke("embed", "glove-50", src, "-o", out, "--no-progress")
    write_lines(src, ["red", "blue"])  # same ids (row numbers), other content
    fails("embed", "glove-50", src, "-o", out, "--no-progress", match=r"another key .* Pass --overwrite")
    invoke("embed", "glove-50", src, "-o", out, "--overwrite", "--no-progress")
    from latentalign.encoders import load_encoder

    np.testing.assert_array_equal(np.load(out), load_encoder("glove-50").encode(["red", "blue"], progress=False))


def test_embed_reads_a_csv_column_with_ids_and_normalizes(tmp_path):
    from latentalign.store import EmbeddingStore

    (tmp_path / "t.csv").write_text("key,word\nk1,Cat\nk2,dog\n")
    out = tmp_path / "t.safetensors"
    invoke(
        "embed",
        "glove-50",
        tmp_path / "t.csv",
        "--column",
        "word",
        "--id-column",
        "key",
        "--normalize",
        "-o",
        out,
        "--no-progress",
    )
    X = load_matrix_file(out)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-6)
    assert EmbeddingStore(tmp_path / "t.store").ids == ["k1", "k2"]


def test_embed_images_from_a_directory_and_from_a_manifest(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for name in ("a.png", "b.jpg", "sub/c.png"):
        Image.fromarray((rng.random((40, 30, 3)) * 255).astype("uint8")).save(tmp_path / "imgs" / name)
    invoke("embed", "efficientnet-lite0", tmp_path / "imgs", "-o", tmp_path / "d.npy", "--no-progress")
    write_lines(tmp_path / "imgs" / "list.txt", ["sub/c.png", "a.png"])
    invoke("embed", "efficientnet-lite0", tmp_path / "imgs" / "list.txt", "-o", tmp_path / "m.npy", "--no-progress")
    D, M = np.load(tmp_path / "d.npy"), np.load(tmp_path / "m.npy")
    assert D.shape == (3, 1280)  # sorted: a.png, b.jpg, sub/c.png
    np.testing.assert_allclose(M, D[[2, 0]], rtol=1e-5, atol=1e-6)


def test_embed_errors(tmp_path):
    src = write_lines(tmp_path / "w.txt", ["cat", "", "dog"])
    fails("embed", "glove-50", src, "-o", tmp_path / "o.safetensors", match=r"empty lines \(line 2\)")
    fails("embed", "no-such-model", src, match=r"unknown encoder 'no-such-model'\. Registered: .*glove-50")
    fails("embed", "glove-50", src, "-o", tmp_path / "o.txt", match=r"--out must end in \.safetensors or \.npy")
    good = write_lines(tmp_path / "g.txt", ["cat"])
    fails("embed", "glove-50", good, "--device", "cpu", "-o", tmp_path / "o.npy", match=r"takes no --device")
    (tmp_path / "t.csv").write_text("word\ncat\n")
    fails("embed", "glove-50", tmp_path / "t.csv", match=r"name the column to embed with --column")
    fails(
        "embed",
        "glove-50",
        tmp_path / "t.csv",
        "--column",
        "text",
        match=r"has no column 'text'; its columns are \['word'\]",
    )
    fails("embed", "glove-50", tmp_path / "missing.txt", match=r"does not exist")
    fails("embed", "glove-50", tmp_path, match=r"is a directory, but a word encoder needs")
    unknown = write_lines(tmp_path / "u.txt", ["cat", "qqxzvbnonword"])
    fails("embed", "glove-50", unknown, "-o", tmp_path / "u.npy", "--no-progress", match=r"qqxzvbnonword")


def test_fit_and_stitch_glove_into_minilm_head_end_to_end(words):
    from sklearn.linear_model import LogisticRegression

    from latentalign.cli.inputs import load_map

    tmp, train, test = words
    out = invoke("fit", tmp / "a_train.safetensors", tmp / "b_train.safetensors", "-o", tmp / "a2b.safetensors")
    assert f"saved map to {tmp / 'a2b.safetensors'}" in out
    out = invoke(
        "stitch",
        tmp / "a_test.safetensors",
        tmp / "b_test.safetensors",
        tmp / "test_y.txt",
        "--map",
        tmp / "a2b.safetensors",
        "--train",
        tmp / "b_train.safetensors",
        "--train-labels",
        tmp / "train_y.txt",
        "--save-head",
        tmp / "head.safetensors",
        "-o",
        tmp / "runs",
    )
    path, record = one_record(tmp / "runs", "stitch")
    assert f"wrote run record {path}" in out
    assert f"saved head to {tmp / 'head.safetensors'}" in out
    assert record["kind"] == "stitch" and record["classes"] == ["animal", "body", "color", "country"]
    rows = {r["method"]: r for r in record["rows"]}
    assert set(rows) == {"native", "absolute", "stitched (Procrustes)"}
    assert rows["absolute"]["accuracy"] is None  # 50-d GloVe cannot feed a 384-d head unmapped
    # Reference: scikit-learn's own classifier on the same embeddings, and on A's mapped embeddings.
    Xa, Yb = load_matrix_file(tmp / "a_test.safetensors"), load_matrix_file(tmp / "b_test.safetensors")
    clf = LogisticRegression(max_iter=2000).fit(
        load_matrix_file(tmp / "b_train.safetensors").astype(np.float64), [c for _, c in train]
    )
    y = np.array([c for _, c in test])
    mapped = np.asarray(load_map(tmp / "a2b.safetensors").transform(Xa), dtype=np.float64)
    assert rows["native"]["accuracy"] == pytest.approx((clf.predict(Yb.astype(np.float64)) == y).mean())
    assert rows["stitched (Procrustes)"]["accuracy"] == pytest.approx((clf.predict(mapped) == y).mean())
    assert rows["native"]["accuracy"] >= 0.9
    assert rows["stitched (Procrustes)"]["accuracy"] >= 0.8  # 4 classes: chance is 0.25
    # The saved head gives the same scores when passed back with --head.
    invoke(
        "stitch",
        tmp / "a_test.safetensors",
        tmp / "b_test.safetensors",
        tmp / "test_y.txt",
        "--map",
        tmp / "a2b.safetensors",
        "--head",
        tmp / "head.safetensors",
        "-o",
        tmp / "runs",
        "--name",
        "again",
    )
    again = one_record(tmp / "runs", "again")[1]
    assert again["rows"] == record["rows"] and again["settings"]["head"] == "file"
    out = invoke("report", tmp / "runs", "-o", tmp / "report", "--metric", "accuracy")
    assert "stitched (Procrustes)" in (tmp / "report" / "report.md").read_text()


@pytest.fixture()
def clustered_files(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 8)) * 3
    labels = rng.integers(0, 3, 300)
    Y = centres[labels] + rng.standard_normal((300, 8))
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    X = Y @ Q.T  # model A sees a rotated copy of B's space
    for name, arr in (
        ("a_fit", X[:100]),
        ("b_fit", Y[:100]),
        ("b_train", Y[100:200]),
        ("a_test", X[200:]),
        ("b_test", Y[200:]),
        ("y_train", labels[100:200]),
        ("y_test", labels[200:]),
    ):
        np.save(tmp_path / f"{name}.npy", arr)
    invoke("fit", tmp_path / "a_fit.npy", tmp_path / "b_fit.npy", "-o", tmp_path / "map.safetensors")
    return tmp_path


def test_stitch_recovers_native_accuracy_on_a_planted_rotation(clustered_files):
    tmp = clustered_files
    invoke(
        "stitch",
        tmp / "a_test.npy",
        tmp / "b_test.npy",
        tmp / "y_test.npy",
        "--map",
        tmp / "map.safetensors",
        "--train",
        tmp / "b_train.npy",
        "--train-labels",
        tmp / "y_train.npy",
        "-o",
        tmp / "runs",
    )
    rows = {r["method"]: r for r in one_record(tmp / "runs", "stitch")[1]["rows"]}
    assert rows["native"]["accuracy"] > 0.9
    assert rows["stitched (Procrustes)"]["accuracy"] == pytest.approx(rows["native"]["accuracy"], abs=1e-12)
    assert rows["absolute"]["accuracy"] < rows["native"]["accuracy"] - 0.3


def test_stitch_with_a_relative_projection_fits_the_head_on_relative_coordinates(clustered_files):
    tmp = clustered_files
    invoke("fit", tmp / "a_fit.npy", tmp / "b_fit.npy", "-m", "relative", "-o", tmp / "rel.safetensors")
    invoke(
        "stitch",
        tmp / "a_test.npy",
        tmp / "b_test.npy",
        tmp / "y_test.npy",
        "--map",
        tmp / "rel.safetensors",
        "--train",
        tmp / "b_train.npy",
        "--train-labels",
        tmp / "y_train.npy",
        "-o",
        tmp / "runs",
    )
    rows = {r["method"]: r for r in one_record(tmp / "runs", "stitch")[1]["rows"]}
    assert rows["stitched (RelativeProjection)"]["accuracy"] == pytest.approx(rows["native"]["accuracy"], abs=0.03)


def test_stitch_errors(clustered_files):
    from safetensors.numpy import save_file

    tmp = clustered_files
    base = ["stitch", tmp / "a_test.npy", tmp / "b_test.npy", tmp / "y_test.npy", "--map", tmp / "map.safetensors"]
    fails(*base, match=r"give exactly one head")
    fails(*base, "--train", tmp / "b_train.npy", match=r"--train needs --train-labels")
    save_file({"w": np.ones((3, 8), np.float32)}, str(tmp / "bad_head.safetensors"))
    fails(*base, "--head", tmp / "bad_head.safetensors", match=r"expected 'weight' of shape \(classes, dim\)")
    save_file({"weight": np.ones((3, 5), np.float32)}, str(tmp / "narrow.safetensors"))
    fails(*base, "--head", tmp / "narrow.safetensors", match=r"the head reads 5-d inputs, but B_TEST gives 8-d ones")
    save_file({"weight": np.ones((2, 8), np.float32)}, str(tmp / "two.safetensors"))
    fails(*base, "--head", tmp / "two.safetensors", match=r"class indices 0\.\.1 .* got e\.g\. \[2")
    write_lines(tmp / "names.txt", ["x", "y"] * 50)
    fails(
        *base,
        "--train",
        tmp / "b_train.npy",
        "--train-labels",
        tmp / "names.txt",
        match=r"LABELS has 3 label\(s\) the head has no class for .* classes are \['x', 'y'\]",
    )
    fails(
        "stitch",
        tmp / "a_test.npy",
        tmp / "b_test.npy",
        tmp / "y_test.npy",
        "--map",
        tmp / "a_test.npy",
        "--head",
        tmp / "two.safetensors",
        match=r"--map must be a \.safetensors map written by `latentalign fit`",
    )
    fails(
        *base[:5],
        tmp / "two.safetensors",
        "--head",
        tmp / "two.safetensors",
        match=r"is a safetensors file but was not written by latentalign's save\(\)",
    )
    np.save(tmp / "y_float.npy", np.zeros(100))
    fails(
        *base[:3],
        tmp / "y_float.npy",
        *base[4:],
        "--head",
        tmp / "two.safetensors",
        match=r"has dtype float64; labels must be integers",
    )
    fails(
        *base[:1],
        tmp / "map.safetensors",
        *base[2:],
        "--head",
        tmp / "two.safetensors",
        match=r"A_TEST .* is a fitted map .*not embeddings",
    )


def test_map_and_embedding_files_are_not_confused(clustered_files, tmp_path):
    tmp = clustered_files
    fails("fit", tmp / "map.safetensors", tmp / "b_fit.npy", match=r"SOURCE .* is a fitted map")
    fails("fit", tmp / "a_fit.npy", tmp / "b_fit.txt", match=r"TARGET .* does not exist")
    (tmp / "b_fit.txt").write_text("1 2\n")
    fails("fit", tmp / "a_fit.npy", tmp / "b_fit.txt", match=r"must be a \.npy or \.safetensors file")
    src = write_lines(tmp_path / "w.txt", ["cat", "dog"])
    invoke("embed", "glove-50", src, "-o", tmp_path / "w.safetensors", "--no-progress")
    fails(
        "evaluate",
        tmp_path / "w.safetensors",
        tmp_path / "w.safetensors",
        "--map",
        tmp_path / "w.safetensors",
        match=r"holds embeddings \(written by `latentalign embed`\), not a fitted map",
    )


def test_library_errors_exit_non_zero_with_a_message_not_a_traceback(pair_files):
    tmp, *_ = pair_files
    np.save(tmp / "short.npy", np.ones((5, 6), np.float32))
    result = fails("fit", tmp / "a.npy", tmp / "short.npy", match=r"^Error: .*\((ValueError|TypeError)\)")
    assert "Traceback" not in result.output


def test_a_saved_map_loads_in_a_fresh_process(pair_files):
    """`latentalign.load` alone does not know lazily imported aligner classes; the CLI registers them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    tmp, *_ = pair_files
    invoke("fit", tmp / "a.npy", tmp / "b.npy", "-o", tmp / "m.safetensors")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "latentalign.cli",
            "evaluate",
            str(tmp / "a.npy"),
            str(tmp / "b.npy"),
            "--map",
            str(tmp / "m.safetensors"),
            "-o",
            str(tmp / "fresh"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    path, record = one_record(tmp / "fresh", "evaluate")
    assert f"wrote run record {path}" in proc.stdout
    assert record["rows"][0]["recall@1"] == 1.0


def test_diagnose_prints_a_verdict_and_writes_the_report(pair_files):
    tmp, X, Y, _ = pair_files
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 6)).astype(np.float32)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    np.save(tmp / "x.npy", X)
    np.save(tmp / "y.npy", (X @ Q + 0.01 * rng.standard_normal((400, 6))).astype(np.float32))
    np.save(tmp / "noise.npy", rng.standard_normal((400, 6)).astype(np.float32))
    out = invoke(
        "diagnose", tmp / "x.npy", tmp / "y.npy", "-m", "procrustes", "-b", "10", "-b", "100", "-o", tmp / "diag"
    )
    assert "Verdict: likely to stitch well" in out
    doc = json.loads((tmp / "diag" / "report.json").read_text())
    assert doc["verdict"] == "likely to stitch well"
    assert (tmp / "diag" / "anchor_budget_curve.png").stat().st_size > 0
    assert str(tmp / "diag" / "report.md") in out
    out = invoke(
        "diagnose", tmp / "x.npy", tmp / "noise.npy", "-m", "procrustes", "-b", "10", "-b", "100", "-o", tmp / "diag2"
    )
    assert "Verdict: unlikely to stitch well" in out


def test_run_all_summary_only_rebuilds_the_table_from_records(tmp_path):
    from latentalign.experiments import list_experiments
    from latentalign.reports import make_record, write_record

    names = list_experiments()
    for i, name in enumerate(names):
        check = {"claim": f"claim {i}", "paper": "1.0", "ours": "0.9", "passed": i % 2 == 0}
        record = make_record(
            f"experiment:{name}",
            [{"x": 1}],
            settings={},
            extra={"checks": [check], "paper": {"citation": "Someone 2023"}, "elapsed_s": 12.0, "reduced": False},
        )
        write_record(record, tmp_path, name, unique=False)
    out = invoke("run", "all", "--summary-only", "-o", tmp_path)
    summary = (tmp_path / "SUMMARY.md").read_text()
    passing = sum(1 for i in range(len(names)) if i % 2 == 0)
    assert f"{passing} of {len(names)} checks pass" in summary
    assert summary.count("| FAIL |") == len(names) - passing and "full, 12 s" in summary
    assert str(tmp_path / "SUMMARY.md") in out
    (tmp_path / f"{names[0]}.json").unlink()
    invoke("run", "all", "--summary-only", "-o", tmp_path)
    summary = (tmp_path / "SUMMARY.md").read_text()
    assert f"Not run yet (no record in this folder): {names[0]}." in summary
    assert f"[{names[0]}]" not in summary and f"of {len(names) - 1} checks pass" in summary
    from latentalign.experiments import write_summary

    with pytest.raises(FileNotFoundError, match=f"No result record for experiment {names[0]!r}"):
        write_summary(tmp_path, names=names[:2])
    result = runner.invoke(app, ["run", names[0], "--summary-only"])
    assert result.exit_code != 0 and "--summary-only goes with 'all'" in result.output
