"""The few_and_no_pairs experiment: its protocol on planted data (fast) and its reduced run (slow, real models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latentalign.experiments import load_config, run_experiment
from latentalign.experiments.few_and_no_pairs import (
    _run_jobs,
    _seed_spaces,
    _zero_pair_check,
    build_result,
    compute_runs,
    curve_table,
    held_out_items,
    identity_r1,
    unpaired_settings,
)
from latentalign.experiments.few_and_no_pairs_curves import budget_curve, split_items, training_rows
from latentalign.experiments.few_and_no_pairs_data import (
    DATA_SOURCES,
    CaseData,
    extra_row_draw,
    load_case,
    load_extra_rows,
    one_to_one,
)
from latentalign.experiments.few_and_no_pairs_plot import plot_curves

NAME = "few_and_no_pairs"


def _rotated(n: int = 90, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.exponential(size=(n, d))
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return X, X @ Q


# ------------------------------------------------------------------------------------------ config
def test_the_config_loads_states_its_sources_and_names_only_known_data():
    config = load_config(NAME)
    reduced = load_config(NAME, reduced=True)
    for key in ("citation", "table", "differences", "sources", "verified"):
        assert config["paper"].get(key), key
    assert reduced["reduced_run"] and reduced["setup"] != config["setup"]
    cases = config["setup"]["cases"]
    assert {c["data"] for c in cases} <= set(DATA_SOURCES)
    assert {c["key"] for c in cases} == {"a", "b", "c", "d", "e"}
    names = {c["name"] for c in cases} | {c["key"] for c in cases}
    for setup in (config["setup"], reduced["setup"]):
        assert set(setup["run_cases"]) <= names


def test_an_unknown_data_source_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"case 'z': data must be one of \['fashion-mnist'"):
        load_case({"key": "z", "data": "imagenet", "source": "minilm", "target": "mpnet"}, {})


# ------------------------------------------------------------------------------------------ protocol
def test_split_items_holds_out_a_sorted_test_set_and_permutes_the_pool_by_seed():
    test, pool = split_items(50, 10, seed=3)
    assert np.all(np.diff(test) > 0) and len(pool) == 40
    assert sorted(np.concatenate([test, pool]).tolist()) == list(range(50))
    again, pool_again = split_items(50, 10, seed=3)
    assert np.array_equal(test, again) and np.array_equal(pool, pool_again)
    assert not np.array_equal(pool, split_items(50, 10, seed=4)[1])
    with pytest.raises(ValueError, match="n_test must be between 1 and n - 1 = 49 items, got 50"):
        split_items(50, 50, seed=0)


@pytest.mark.parametrize("setting", ["shuffled", "disjoint", "none"])
def test_training_rows_give_the_anchors_as_pairs_and_the_free_rows_as_the_setting_says(setting):
    pool = np.random.default_rng(0).permutation(30)
    rows_x, rows_y, pairs = training_rows(pool, 4, setting, seed=0)
    assert np.array_equal(rows_x[pairs[:, 0]], pool[:4]) and np.array_equal(rows_y[pairs[:, 1]], pool[:4])
    free_x, free_y = set(rows_x[4:].tolist()), set(rows_y[4:].tolist())
    if setting == "shuffled":
        assert free_x == free_y == set(pool[4:].tolist())
        assert not np.array_equal(rows_x[4:], rows_y[4:])
    elif setting == "disjoint":
        assert not free_x & free_y and len(free_x) == len(free_y) == 13
    else:
        assert not free_x and not free_y


@pytest.mark.parametrize("setting", ["shuffled", "disjoint", "none"])
def test_extra_rows_join_the_free_rows_of_the_disjoint_setting_only(setting):
    pool, extra = np.random.default_rng(0).permutation(30), np.arange(30, 36)
    rows_x, rows_y, pairs = training_rows(pool, 4, setting, seed=0, extra=extra)
    plain_x, plain_y, plain_pairs = training_rows(pool, 4, setting, seed=0)
    assert np.array_equal(pairs, plain_pairs)
    if setting == "disjoint":
        assert np.array_equal(rows_x, np.concatenate([plain_x, extra]))
        assert np.array_equal(rows_y, np.concatenate([plain_y, extra]))
    else:  # the same items on both sides (shuffled) or no free rows: another corpus has no place there
        assert np.array_equal(rows_x, plain_x) and np.array_equal(rows_y, plain_y)


def test_extra_row_draw_gives_each_side_a_different_half_drawn_with_the_seed():
    source, target = extra_row_draw(100, 40, seed=3)
    assert len(source) == len(target) == 40 and not set(source.tolist()) & set(target.tolist())
    again = extra_row_draw(100, 40, seed=3)
    assert np.array_equal(source, again[0]) and np.array_equal(target, again[1])
    assert not np.array_equal(source, extra_row_draw(100, 40, seed=4)[0])
    with pytest.raises(ValueError, match="per_side must be from 1 to 50"):
        extra_row_draw(100, 51, seed=0)


def test_budget_curve_holds_out_and_pairs_only_the_case_items_never_the_extra_rows():
    X, Y = _rotated()
    noise = np.random.default_rng(5).normal(size=(2, 40, X.shape[1]))  # unrelated rows, different on each side
    kwargs = {"budgets": [10, "all"], "methods": ["procrustes", "lfm"], "seeds": [0], "n_test": 30}
    plain = budget_curve(X, Y, **kwargs, settings=["disjoint"])
    grown = budget_curve(
        np.concatenate([X, noise[0]]), np.concatenate([Y, noise[1]]), **kwargs, settings=["disjoint"], extra_rows=40
    )
    fits = {(r["method"], r["budget"], r["unpaired"]): r for r in grown}
    before = {(r["method"], r["budget"], r["unpaired"]): r for r in plain}
    assert (
        set(fits)
        == set(before)
        == {
            ("procrustes", 10, "none"),
            ("lfm", 10, "disjoint"),
            ("procrustes", 60, "none"),
            ("lfm", 60, "none"),
        }
    )  # "all" is still the case's 60 pool items
    assert fits[("lfm", 10, "disjoint")]["n_free_x"] == fits[("lfm", 10, "disjoint")]["n_free_y"] == 25 + 40
    assert before[("lfm", 10, "disjoint")]["n_free_x"] == 25
    for key in [("procrustes", 10, "none"), ("procrustes", 60, "none"), ("lfm", 60, "none")]:
        assert fits[key]["n_free_x"] == 0 and fits[key]["r1_csls"] == before[key]["r1_csls"]  # same rows, same test
    assert all(r["n_test"] == 30 and r["error"] is None for r in grown)
    with pytest.raises(ValueError, match="extra_rows must be a whole number from 0 to 88"):
        budget_curve(X, Y, **kwargs, extra_rows=89)


def test_each_seed_gets_its_own_extra_rows_normalised_with_its_side():
    X, Y = _rotated(n=40)
    rng = np.random.default_rng(1)
    case = CaseData("t", "a", "b", "planted", "planted", X.astype(np.float32), Y.astype(np.float32))
    other = CaseData("t", "a", "b", "planted", "other", rng.normal(size=(30, 6)), rng.normal(size=(30, 6)))
    spaces = _seed_spaces(case, (other, 10), [0, 1])
    for seed in (0, 1):
        Xs, Ys = spaces[seed]
        assert Xs.shape == Ys.shape == (50, 6)
        assert np.allclose(np.linalg.norm(Xs, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(spaces[0][0][40:], spaces[1][0][40:])  # another draw of the other corpus
    shared = _seed_spaces(case, None, [0, 1])
    assert shared[0][0] is shared[1][0] and shared[0][0].shape == (40, 6)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("glosses", "extra_unpaired must be a table"),
        ({"data": "wordnet-glosses", "per_side": 10, "rows": 3}, r"unknown keys \['rows'\]"),
        (
            {"data": "wordnet-glosses", "per_side": 0},
            "per_side must be a whole number of rows per side, 1 or more, got 0",
        ),
        ({"data": "wordnet-glosses", "per_side": True}, "per_side must be a whole number"),
        ({"data": "poems", "per_side": 10}, "data must be one of"),
    ],
)
def test_a_bad_extra_unpaired_table_is_refused_naming_the_key(table, message):
    case = {
        "key": "b",
        "name": "b-x",
        "data": "tuxpaint",
        "source": "minilm",
        "target": "mpnet",
        "extra_unpaired": table,
    }
    with pytest.raises(ValueError, match=message):
        load_extra_rows(case, load_config(NAME)["setup"])
    assert load_extra_rows({k: v for k, v in case.items() if k != "extra_unpaired"}, {}) is None


def test_extra_rows_need_the_disjoint_setting_and_are_refused_before_any_embedding():
    config = load_config("few_and_no_pairs_other_corpus")
    config["setup"] = {**config["setup"], "unpaired": ["shuffled"]}
    with pytest.raises(ValueError, match="extra_unpaired rows join the disjoint setting only"):
        compute_runs(config)


def test_the_other_corpus_page_is_the_captions_case_with_glosses_added():
    base, grown = load_config(NAME)["setup"], load_config("few_and_no_pairs_other_corpus")["setup"]
    captions = next(c for c in base["cases"] if c["name"] == "b-tuxpaint-mpnet")
    (case,) = [c for c in grown["cases"] if c["name"] in grown["run_cases"]]
    assert {k: case[k] for k in ("key", "data", "source", "target")} == {
        k: captions[k] for k in ("key", "data", "source", "target")
    }
    assert case["extra_unpaired"]["data"] == "wordnet-glosses" and case["extra_unpaired"]["per_side"] >= 1000
    assert grown["few_pair_budget"] in grown["budgets"] and grown["seeds"] == base["seeds"]
    assert grown["test_fraction"] == base["test_fraction"] and "n_test" not in grown  # the captions' held-out items
    assert unpaired_settings(grown) == ["disjoint"]


def test_training_rows_refuse_an_unknown_setting():
    with pytest.raises(ValueError, match="setting must be one of"):
        training_rows(np.arange(10), 2, "paired", seed=0)


def test_budget_curve_runs_each_method_where_it_can_and_recovers_a_rotation():
    X, Y = _rotated()
    records = budget_curve(
        X, Y, budgets=[0, 10, 500, "all"], methods=["procrustes", "relative", "ot"], seeds=[0], n_test=30
    )
    plan = {(r["method"], r["budget"], r["unpaired"]) for r in records}
    assert plan == {
        ("ot", 0, "shuffled"),
        ("ot", 0, "disjoint"),
        ("procrustes", 10, "none"),
        ("relative", 10, "none"),
        ("ot", 10, "shuffled"),
        ("ot", 10, "disjoint"),
        ("procrustes", 60, "none"),
        ("relative", 60, "none"),
        ("ot", 60, "none"),
    }  # no pair-only method at 0, budget 500 exceeds the 60-item pool, "all" leaves no unpaired rows
    best = {(r["method"], r["budget"]): r for r in records if r["unpaired"] == "none"}
    assert best[("procrustes", 60)]["r1_cosine"] == best[("procrustes", 10)]["r1_cosine"] == 1.0
    assert best[("procrustes", 60)]["r1_csls"] >= 0.9
    assert all(r["error"] is None and r["n_test"] == 30 for r in records)
    assert records[0]["n_free_x"] == records[0]["n_free_y"] == 60
    assert records[1]["n_free_x"] == records[1]["n_free_y"] == 30  # disjoint halves


def test_ot_at_zero_pairs_repeats_the_unsupervised_fit_it_equals():
    X, Y = _rotated()
    both = budget_curve(X, Y, budgets=[0], methods=["ot", "unsupervised"], seeds=[1], n_test=30)
    alone = budget_curve(X, Y, budgets=[0], methods=["ot"], seeds=[1], n_test=30)  # OT fitted on its own
    for setting in ("shuffled", "disjoint"):
        ot, unsupervised = (
            next(r for r in both if r["method"] == m and r["unpaired"] == setting) for m in ("ot", "unsupervised")
        )
        fitted = next(r for r in alone if r["unpaired"] == setting)
        assert ot["same_fit_as"] == "unsupervised" and ot["seconds"] == 0.0 and "same_fit_as" not in fitted
        assert ot["r1_csls"] == unsupervised["r1_csls"] == fitted["r1_csls"]
        assert ot["r1_cosine"] == fitted["r1_cosine"]


def test_budget_curve_records_a_failing_fit_instead_of_hiding_or_raising_it():
    X, Y = _rotated()
    (record,) = budget_curve(X, Y, budgets=[1], methods=["relative"], seeds=[0], n_test=30)
    assert record["r1_csls"] is None and record["error"].startswith("ValueError")
    assert "Traceback" in record["traceback"]


def test_budget_curve_refuses_an_unknown_method():
    X, Y = _rotated()
    with pytest.raises(ValueError, match=r"methods must be among .*got \['cca'\]"):
        budget_curve(X, Y, budgets=[5], methods=["cca"], seeds=[0], n_test=30)


def test_worker_processes_give_the_same_records_in_the_jobs_order():
    X, Y = _rotated()
    setup = {"budgets": [5, "all"], "methods": ["procrustes", "relative"], "torch_threads": 1}
    jobs = [(X, Y, setup, seed, 30, "(t)", 0) for seed in (0, 1, 2)]

    def fits(results):
        return [[{k: v for k, v in r.items() if k != "seconds"} for r in job] for job in results]

    alone, shared = _run_jobs(jobs, 1), _run_jobs(jobs, 2)
    assert [{r["seed"] for r in job} for job in shared] == [{0}, {1}, {2}]
    assert fits(shared) == fits(alone)
    assert len({r["r1_csls"] for job in alone for r in job if r["budget"] == 5}) > 1  # the seeds differ


def test_compute_runs_refuses_a_number_of_workers_below_one():
    config = load_config(NAME)
    config["setup"] = {**config["setup"], "workers": 0}
    with pytest.raises(ValueError, match="setup.workers must be a positive number of processes, got 0"):
        compute_runs(config)


@pytest.mark.parametrize("n_test", [1, 90, 2.5, True, "450"])
def test_a_fixed_number_of_held_out_items_must_fit_the_case(n_test):
    with pytest.raises(
        ValueError, match=rf"setup.n_test must be a whole number of held-out items from 2 to 89 .*got {n_test!r}"
    ):
        held_out_items({"test_fraction": 0.25, "n_test": n_test}, 90)
    assert held_out_items({"test_fraction": 0.25, "n_test": 89}, 90) == 89


@pytest.mark.parametrize("bad", [[], ["same"], "disjoint", ["disjoint", "none"]])
def test_the_unpaired_settings_must_be_known_ones(bad):
    with pytest.raises(ValueError, match=r"setup.unpaired must list one or more of \['shuffled', 'disjoint'\], got"):
        unpaired_settings({"unpaired": bad})
    config = load_config(NAME)
    config["setup"] = {**config["setup"], "unpaired": bad}
    with pytest.raises(ValueError, match="setup.unpaired"):
        compute_runs(config)  # before any embedding or fit


def test_budget_curve_fits_only_the_unpaired_settings_it_is_given():
    X, Y = _rotated()
    recs = budget_curve(
        X, Y, budgets=[10, "all"], methods=["procrustes", "ot"], seeds=[0], n_test=20, settings=["disjoint"]
    )
    assert {(r["method"], r["budget"], r["unpaired"]) for r in recs} == {
        ("procrustes", 10, "none"),
        ("procrustes", 70, "none"),
        ("ot", 10, "disjoint"),
        ("ot", 70, "none"),
    }
    with pytest.raises(ValueError, match="settings must name one or more of"):
        budget_curve(X, Y, budgets=[10], methods=["ot"], seeds=[0], n_test=20, settings=["both"])


def test_the_large_pool_page_grows_only_the_glosses_cases_training_rows():
    base, grown = load_config(NAME)["setup"], load_config("few_and_no_pairs_large_pool")["setup"]
    assert grown["glosses_per_category"] > base["glosses_per_category"]
    assert grown["n_test"] == held_out_items(base, 45 * base["glosses_per_category"])  # as many candidates
    cases = {c["name"]: c for c in grown["cases"]}
    assert {cases[name]["data"] for name in grown["run_cases"]} == {"wordnet-glosses"}
    assert grown["few_pair_budget"] in grown["budgets"] and grown["seeds"] == base["seeds"]
    assert unpaired_settings(grown) == ["disjoint"] and unpaired_settings(base) == ["shuffled", "disjoint"]


def test_identity_r1_scores_spaces_that_share_coordinates_and_skips_other_widths():
    X = np.random.default_rng(0).normal(size=(90, 6))
    unrelated = np.random.default_rng(1).normal(size=X.shape)
    assert identity_r1(X, X, [0, 1], 30) == 1.0
    assert identity_r1(X, unrelated, [0], 30) < 0.3
    assert identity_r1(X, X[:, :4], [0], 30) is None


def test_one_to_one_keeps_the_first_pair_of_every_row():
    pairs = np.array([[3, 1], [3, 2], [4, 1], [5, 9], [6, 9]])
    assert one_to_one(pairs).tolist() == [[3, 1], [5, 9]]


# ------------------------------------------------------------------------------------------ checks, table, plot
def _records(values: dict[tuple[str, str, int], list[float]], n_pool: int = 100) -> list[dict]:
    return [
        {
            "method": m,
            "unpaired": s,
            "budget": b,
            "is_all": b == n_pool,
            "seed": i,
            "r1_csls": v,
            "r1_cosine": v,
            "error": None,
            "convergence_warnings": 0,
        }
        for (m, s, b), vs in values.items()
        for i, v in enumerate(vs)
    ]


def test_the_zero_pair_check_needs_the_ratio_and_every_seed_near_the_median():
    base = {("procrustes", "none", 100): [1.0, 1.0, 1.0]}
    good = _records({**base, ("unsupervised", "shuffled", 0): [0.95, 0.9, 0.92]})
    assert _zero_pair_check("(c)", good, 0.8, 0.9).passed
    one_bad_seed = _records({**base, ("unsupervised", "shuffled", 0): [0.95, 0.1, 0.92]})
    check = _zero_pair_check("(c)", one_bad_seed, 0.8, 0.9)
    assert not check.passed and "0.100" in check.ours
    too_low = _records({**base, ("ot", "shuffled", 0): [0.7, 0.7, 0.7]})
    assert not _zero_pair_check("(c)", too_low, 0.8, 0.9).passed


def test_curve_table_has_one_row_per_method_and_setting_with_the_seed_range():
    records = _records(
        {
            ("ot", "shuffled", 0): [0.2, 0.4],
            ("procrustes", "none", 5): [0.5, 0.7],
            ("procrustes", "none", 100): [1.0, 1.0],
        }
    )
    rows = curve_table("(x)", records)
    assert [(r["method"], r["unpaired rows"]) for r in rows] == [("procrustes", "none"), ("ot", "shuffled")]
    assert rows[0]["5"] == "0.600 [0.500-0.700]" and rows[0]["all"] == "1.000 [1.000-1.000]"
    assert rows[1]["0"] == "0.300 [0.200-0.400]" and rows[1]["5"] is None


def test_plot_curves_writes_one_png(tmp_path):
    records = _records(
        {
            ("ot", "shuffled", 0): [0.2, 0.4],
            ("ot", "disjoint", 5): [0.3, 0.5],
            ("ot", "none", 100): [0.9, 1.0],
            ("procrustes", "none", 5): [0.5, 0.7],
            ("procrustes", "none", 100): [1.0, 1.0],
        }
    )
    curves = [{"label": "(x) A-model -> B-model", "identity": 0.5, "records": records}]
    path = plot_curves(curves, tmp_path / "curves.png", n_seeds=2, title="test")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_build_result_orders_every_budget_column_and_lists_the_cases_not_run(tmp_path):
    config = load_config(NAME)
    config["setup"] = {**config["setup"], "run_cases": ["c"], "seeds": [0, 1]}
    small = _records({("procrustes", "none", 5): [0.5, 0.7], ("procrustes", "none", 100): [1.0, 1.0]})
    large = _records({("procrustes", "none", 500): [0.9, 0.9], ("procrustes", "none", 900): [1.0, 1.0]}, n_pool=900)
    runs = [
        {
            "key": "b",
            "label": "(b) small",
            "n_items": 130,
            "n_test": 30,
            "same_modality": True,
            "identity": None,
            "records": small,
            "seconds": 1.0,
        },
        {
            "key": "c",
            "label": "(c) large",
            "n_items": 1200,
            "n_test": 300,
            "same_modality": True,
            "identity": 0.9,
            "records": large,
            "seconds": 1.0,
        },
    ]
    result = build_result(config, runs, tmp_path)
    assert list(result.rows[0])[3:] == ["5", "500", "all", "failed fits"]
    assert result.rows[0]["500"] is None and result.rows[1]["500"] == "0.900 [0.900-0.900]"
    not_run = [r["case"] for r in result.rows if r["method"] == "not run"]
    assert len(not_run) == len(config["setup"]["cases"]) - 1 and not any("(c)" in c for c in not_run)
    assert (tmp_path / f"{NAME}.png").is_file() and "seeds [0, 1]" in result.notes[0]
    # no zero-pair budget ran, so the identity map (a zero-pair figure) is in the notes, not in a stray column
    assert not any("0" in row for row in result.rows) and "identity map (no fit) 0.900" in " ".join(result.notes)
    with_zero = _records({("procrustes", "none", 5): [0.5, 0.7], ("ot", "shuffled", 0): [0.2, 0.4]}, n_pool=900)
    result = build_result(config, [{**runs[1], "records": with_zero}], tmp_path)
    (identity,) = [row for row in result.rows if row["method"] == "identity map (no fit)"]
    assert identity["0"] == "0.900" and list(identity)[3] == "0"


# ------------------------------------------------------------------------------------------ slow: reduced run
@pytest.mark.slow
def test_the_reduced_run_writes_the_page_the_record_and_the_figure(tmp_path):
    result, page = run_experiment(NAME, reduced=True, out_dir=tmp_path)
    assert page == tmp_path / f"{NAME}.md" and page.is_file()
    text = page.read_text()
    assert "(c) MiniLM-L6 -> MiniLM-L3" in text and "not run" in text
    assert (tmp_path / f"{NAME}.png").is_file()
    records = sorted(Path(tmp_path).glob(f"{NAME}*.json"))
    assert records, "no JSON record written"
    record = json.loads(records[-1].read_text())
    recs = record["details"]["records"]
    n_test = recs[0]["n_test"]
    supervised = [r["r1_csls"] for r in recs if r["method"] == "procrustes" and r["is_all"]]
    assert supervised and min(supervised) > 0.5 > 10 / n_test  # far above chance (1 / n_test)
    assert all(r["error"] is None for r in recs)
    assert all(0.0 <= r["r1_cosine"] <= 1.0 for r in recs)
    for case in record["details"]["cases"]:  # the record names the embeddings it ran on
        assert set(case["embeddings_sha256"]) == {"source", "target"}
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in case["embeddings_sha256"].values())
    assert result.checks and {c.claim.split(":")[0] for c in result.checks} == {
        "(c) MiniLM-L6 -> MiniLM-L3, WordNet lemmas (300)"
    }


@pytest.mark.slow
def test_the_reduced_other_corpus_run_adds_the_glosses_to_the_disjoint_rows_only(tmp_path):
    name = "few_and_no_pairs_other_corpus"
    config = load_config(name, reduced=True)
    (planned,) = config["setup"]["cases"]
    per_side = planned["extra_unpaired"]["per_side"]
    result, _ = run_experiment(name, reduced=True, out_dir=tmp_path)
    record = json.loads(sorted(Path(tmp_path).glob(f"{name}*.json"))[-1].read_text())
    (case,) = record["details"]["cases"]
    assert case["extra_unpaired"]["per_side"] == per_side and case["extra_unpaired"]["data"] == "wordnet-glosses"
    assert all(len(h) == 64 for h in case["extra_unpaired"]["embeddings_sha256"].values())
    assert case["n_test"] == round(config["setup"]["test_fraction"] * case["n_items"])  # captions only
    recs = record["details"]["records"]
    assert all(r["error"] is None and r["n_test"] == case["n_test"] for r in recs)
    n_pool = case["n_items"] - case["n_test"]
    for r in recs:
        half = (n_pool - r["budget"]) // 2
        expected = half + per_side if r["unpaired"] == "disjoint" else 0
        assert r["n_free_x"] == r["n_free_y"] == expected
    assert len(case["true_map_matches"]) == len(config["setup"]["seeds"])
    (fifty,) = result.checks
    assert fifty.ours == "budget 50 not run" and not fifty.passed


@pytest.mark.slow
def test_the_reduced_large_pool_run_holds_out_the_fixed_number_of_items(tmp_path):
    name = "few_and_no_pairs_large_pool"
    config = load_config(name, reduced=True)
    result, page = run_experiment(name, reduced=True, out_dir=tmp_path)
    record = json.loads(sorted(Path(tmp_path).glob(f"{name}*.json"))[-1].read_text())
    (case,) = record["details"]["cases"]
    assert case["n_test"] == config["setup"]["n_test"] and case["n_items"] > 2 * case["n_test"]
    recs = record["details"]["records"]
    assert {r["n_test"] for r in recs} == {config["setup"]["n_test"]} and all(r["error"] is None for r in recs)
    assert {r["unpaired"] for r in recs} == {"none", "disjoint"}
    # no zero-pair check (no zero-pair budget) nor LFM/OT-ahead check (no shuffled rows); the 50-pair check
    # says its budget did not run in the reduced run
    (fifty,) = result.checks
    assert fifty.claim.endswith("50 pairs + disjoint rows") and fifty.ours == "budget 50 not run" and not fifty.passed
