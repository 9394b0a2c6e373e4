"""The fit cache of long experiments: keys, reuse, corruption detection, and resuming few_and_no_pairs jobs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from latentalign.experiments import few_and_no_pairs_curves, fit_cache
from latentalign.experiments.few_and_no_pairs import _run_jobs
from latentalign.experiments.fit_cache import (
    array_digest,
    cache_path,
    cached_job,
    code_fingerprint,
    job_key,
    journal_path,
    journaled_job,
    source_fingerprint,
)


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTALIGN_HOME", str(tmp_path / "home"))


def _counting(result):
    calls = []

    def compute():
        calls.append(1)
        return result

    return compute, calls


def test_the_key_follows_the_arrays_bytes_dtype_shape_and_the_settings():
    X = np.arange(12, dtype=np.float32).reshape(3, 4)
    base = job_key([X], {"seed": 0, "budgets": [5, "all"]})
    assert job_key([X.copy()], {"budgets": [5, "all"], "seed": 0}) == base  # same content, keys in any order
    changed = X.copy()
    changed[2, 3] += 1e-3
    others = [
        job_key([changed], {"seed": 0, "budgets": [5, "all"]}),
        job_key([X.astype(np.float64)], {"seed": 0, "budgets": [5, "all"]}),
        job_key([X.reshape(4, 3)], {"seed": 0, "budgets": [5, "all"]}),
        job_key([X], {"seed": 1, "budgets": [5, "all"]}),
        job_key([X, X], {"seed": 0, "budgets": [5, "all"]}),
    ]
    assert len({base, *others}) == 6


def test_array_digest_names_the_numbers_and_nothing_else():
    X = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert array_digest([X]) == array_digest([X.copy(order="F")])  # the same numbers, whatever the memory layout
    changed = X.copy()
    changed[2, 3] = np.nextafter(changed[2, 3], np.float32(np.inf))
    digests = {array_digest([X]), array_digest([changed]), array_digest([X.astype(np.float64)]), array_digest([X.T])}
    assert len(digests) == 4
    assert array_digest([X]) != job_key([X], {})  # a cache key adds the code and the settings


def test_the_key_follows_the_library_code(monkeypatch):
    X = np.ones((2, 2))
    before = job_key([X], {})
    monkeypatch.setattr(fit_cache, "code_fingerprint", lambda: "another version of the code")
    assert job_key([X], {}) != before
    assert len(code_fingerprint()) == 64


def test_a_job_runs_once_and_is_then_read_with_json_types():
    compute, calls = _counting([{"r1": np.float32(0.5), "budget": np.int64(5), "pair": (1, 2)}])
    key = job_key([np.zeros(3)], {"seed": 0})
    fresh, reused_first = cached_job("exp", key, compute)
    again, reused_second = cached_job("exp", key, compute)
    assert (reused_first, reused_second, len(calls)) == (False, True, 1)
    assert fresh == again == [{"r1": 0.5, "budget": 5, "pair": [1, 2]}]  # the same objects either way
    assert cache_path("exp", key).is_file()


@pytest.mark.parametrize("damage", ["edited payload", "truncated", "not json", "wrong format"])
def test_a_corrupt_entry_is_detected_reported_and_replaced_never_read(damage, caplog):
    key = job_key([np.zeros(3)], {"seed": 0})
    cached_job("exp", key, lambda: [{"r1": 0.25}])
    path = cache_path("exp", key)
    text = path.read_text()
    stored = json.loads(text)
    if damage == "edited payload":
        stored["payload"] = stored["payload"].replace("0.25", "0.99")
        path.write_text(json.dumps(stored))
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "not json":
        path.write_bytes(b"\x00\x01")
    else:
        stored["format"] = 999
        path.write_text(json.dumps(stored))
    compute, calls = _counting([{"r1": 0.25}])
    with caplog.at_level(logging.WARNING, logger="latentalign.experiments.fit_cache"):
        records, reused = cached_job("exp", key, compute)
    assert (records, reused, len(calls)) == ([{"r1": 0.25}], False, 1)
    assert "corrupt fit cache entry" in caplog.text and path.name in caplog.text
    assert cached_job("exp", key, compute) == ([{"r1": 0.25}], True)  # replaced by a sound entry


def test_a_failing_job_leaves_no_entry():
    key = job_key([np.zeros(3)], {"seed": 0})

    def fail():
        raise RuntimeError("the fit broke")

    with pytest.raises(RuntimeError, match="the fit broke"):
        cached_job("exp", key, fail)
    assert not cache_path("exp", key).exists()
    assert not list(cache_path("exp", key).parent.glob("*.tmp"))


def test_a_record_json_cannot_store_is_refused_by_name():
    with pytest.raises(TypeError, match="a fit record holds set"):
        cached_job("exp", job_key([np.zeros(1)], {}), lambda: [{"bad": {1, 2}}])


def test_few_and_no_pairs_jobs_resume_from_the_cache_with_the_same_records():
    rng = np.random.default_rng(0)
    X = rng.exponential(size=(80, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    setup = {"budgets": [5, "all"], "methods": ["procrustes", "relative"], "torch_threads": 1, "reuse_fits": True}
    jobs = [(X, X @ Q, setup, seed, 20, "(t)", 0) for seed in (0, 1)]
    first = _run_jobs(jobs, 1)
    second = _run_jobs(jobs, 1)
    assert {r["reused"] for job in first for r in job} == {False}
    assert {r["reused"] for job in second for r in job} == {True}

    def fits(results):
        return [[{k: v for k, v in r.items() if k != "reused"} for r in job] for job in results]

    assert fits(second) == fits(first)  # seconds included: the cached run's own
    other_seed = _run_jobs([(X, X @ Q, setup, 2, 20, "(t)", 0)], 1)
    assert {r["reused"] for r in other_seed[0]} == {False}
    # the same arrays with their last rows read as extra unpaired rows: another job, not read from the cache
    with_extra_rows = _run_jobs([(X, X @ Q, setup, 0, 20, "(t)", 10)], 1)
    assert {r["reused"] for r in with_extra_rows[0]} == {False}


class _Killed(BaseException):
    """The run stopped from outside (as by a signal): not an error a fit records."""


def _fits(n_fits: int, stop_after: int | None, computed: list[int]):
    """A job of ``n_fits`` fits that can be stopped after ``stop_after`` of them (fits it computes go to ``computed``)."""

    def compute(done, keep):
        records = list(done)
        for i in range(len(done), n_fits):
            computed.append(i)
            records.append({"fit": i, "r1": i / 10})
            keep(records[-1])
            if stop_after is not None and len(computed) == stop_after:
                raise _Killed
        return records

    return compute


def test_a_stopped_job_resumes_after_its_journaled_fits_and_the_journal_goes():
    key = job_key([np.zeros(3)], {"seed": 0})
    computed: list[int] = []
    with pytest.raises(_Killed):
        journaled_job("exp", key, _fits(5, 2, computed))
    assert journal_path("exp", key).is_file() and not cache_path("exp", key).exists()
    records, reused = journaled_job("exp", key, _fits(5, None, computed))
    assert computed == [0, 1, 2, 3, 4]  # the two journaled fits were not computed again
    assert (records, reused) == ([{"fit": i, "r1": i / 10} for i in range(5)], False)
    assert not journal_path("exp", key).exists()
    assert journaled_job("exp", key, _fits(5, None, computed)) == (records, True)
    assert computed == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("damage", ["cut short", "edited", "not json"])
def test_an_unsound_journal_line_is_reported_and_its_fit_runs_again(damage, caplog):
    key = job_key([np.zeros(3)], {"seed": 0})
    with pytest.raises(_Killed):
        journaled_job("exp", key, _fits(5, 3, []))
    journal = journal_path("exp", key)
    lines = journal.read_text().splitlines()
    if damage == "cut short":  # the last write of a killed run
        journal.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    elif damage == "edited":
        journal.write_text("\n".join([lines[0], lines[1], lines[2].replace("0.2", "0.9")]) + "\n")
    else:
        journal.write_text("\n".join([lines[0], lines[1], "\x00garbage"]) + "\n")
    computed: list[int] = []
    with caplog.at_level(logging.WARNING, logger="latentalign.experiments.fit_cache"):
        records, _ = journaled_job("exp", key, _fits(5, None, computed))
    assert computed == [2, 3, 4]  # the unsound third line is fitted again, the two sound ones are not
    assert records == [{"fit": i, "r1": i / 10} for i in range(5)]
    assert "line 3 of the fit journal" in caplog.text


def test_a_few_and_no_pairs_job_stopped_mid_way_resumes_at_its_first_unfinished_fit(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.exponential(size=(80, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    setup = {"budgets": [5, 25, "all"], "methods": ["procrustes", "relative"], "torch_threads": 1, "reuse_fits": True}
    job = (X, X @ Q, setup, 0, 20, "(t)", 0)
    fit_aligner = few_and_no_pairs_curves.fit_aligner
    calls: list[tuple[str, int]] = []

    def counted(name, X, Y, pairs, seed, stop_at=None):
        calls.append((name, len(pairs)))
        if len(calls) == stop_at:
            raise _Killed
        return fit_aligner(name, X, Y, pairs, seed)

    monkeypatch.setattr(few_and_no_pairs_curves, "fit_aligner", lambda *a: counted(*a, stop_at=4))
    with pytest.raises(_Killed):
        _run_jobs([job], 1)
    monkeypatch.setattr(few_and_no_pairs_curves, "fit_aligner", counted)
    resumed = _run_jobs([job], 1)[0]
    # the first run finished 3 fits and was stopped in its 4th; the second starts at that 4th
    assert calls[4:] == [("relative", 25), ("procrustes", 60), ("relative", 60)]
    assert [r["reused"] for r in resumed] == [True] * 3 + [False] * 3
    monkeypatch.setenv("LATENTALIGN_HOME", str(journal_path("x", "k").parents[3] / "fresh"))
    whole = _run_jobs([job], 1)[0]  # the same job in one go, in an empty cache

    def fitted(records):
        return [{k: v for k, v in r.items() if k not in {"reused", "seconds"}} for r in records]

    assert fitted(resumed) == fitted(whole)


def test_a_resumed_job_repeats_its_journaled_zero_pair_fit_for_ot_at_budget_zero(monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.exponential(size=(60, 4))
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    setup = {"budgets": [0], "methods": ["ot", "unsupervised"], "torch_threads": 1, "reuse_fits": True}
    job = (X, X @ Q, setup, 0, 15, "(t)", 0)
    fit_aligner = few_and_no_pairs_curves.fit_aligner
    calls: list[str] = []

    def stopped_in_the_second(name, *args):
        calls.append(name)
        if len(calls) == 2:
            raise _Killed
        return fit_aligner(name, *args)

    monkeypatch.setattr(few_and_no_pairs_curves, "fit_aligner", stopped_in_the_second)
    with pytest.raises(_Killed):
        _run_jobs([job], 1)
    resumed = _run_jobs([job], 1)[0]
    assert calls == ["unsupervised", "unsupervised", "unsupervised"]  # OT at budget 0 fits nothing itself
    by_fit = {(r["method"], r["unpaired"]): r for r in resumed}
    assert set(by_fit) == {(m, s) for m in ("ot", "unsupervised") for s in ("shuffled", "disjoint")}
    for setting in ("shuffled", "disjoint"):
        assert by_fit[("ot", setting)]["same_fit_as"] == "unsupervised"
        assert by_fit[("ot", setting)]["r1_csls"] == by_fit[("unsupervised", setting)]["r1_csls"]
    assert [by_fit[("unsupervised", s)]["reused"] for s in ("shuffled", "disjoint")] == [True, False]


def _package(root, body: str) -> None:
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "__init__.py").write_text('"""A package."""\n')
    (root / "sub" / "fit.py").write_text(body)


def test_comments_docstrings_and_layout_keep_the_fingerprint_code_changes_it(tmp_path):
    _package(tmp_path, "def fit(x):\n    return x * 3\n")
    before = source_fingerprint(tmp_path)
    _package(
        tmp_path,
        '"""Fits."""\n\n\ndef fit(x):\n    """Three times x."""\n    # the factor\n    return (x *\n            3)\n',
    )
    assert source_fingerprint(tmp_path) == before
    _package(tmp_path, "def fit(x):\n    return x * 4\n")
    assert source_fingerprint(tmp_path) != before
    (tmp_path / "sub" / "fit.py").rename(tmp_path / "sub" / "other.py")
    assert source_fingerprint(tmp_path) != before


def test_a_string_that_is_not_a_docstring_is_code(tmp_path):
    _package(tmp_path, 'def fit(x):\n    y = "three"\n    return y\n')
    before = source_fingerprint(tmp_path)
    _package(tmp_path, 'def fit(x):\n    y = "four"\n    return y\n')
    assert source_fingerprint(tmp_path) != before


def test_a_module_that_does_not_parse_is_named(tmp_path):
    _package(tmp_path, "def fit(x) return x\n")
    with pytest.raises(SyntaxError, match="fit.py"):
        source_fingerprint(tmp_path)
