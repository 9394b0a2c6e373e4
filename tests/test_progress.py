"""Progress bars and log lines of the long fits: a bar on stderr when progress is on, nothing when it is
off ($LATENTALIGN_PROGRESS=0, what ``--no-progress`` sets), one INFO line per fit and DEBUG per round."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from latentalign._progress import PROGRESS_ENV, RoundProgress
from latentalign.align.ot import OTAligner
from latentalign.align.refine import SelfLearning
from latentalign.align.unsupervised import UnsupervisedAligner
from latentalign.functional.ot_rounds import ot_alignment_rounds


def _rotated_cloud(n: int = 60, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.exponential(size=(n, d))
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    perm = rng.permutation(n)
    return X, (X @ Q)[perm], perm


def _unsupervised_cloud() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    spectrum = np.geomspace(3, 0.3, 4)
    centres = rng.normal(size=(5, 4)) * spectrum
    X = centres[rng.integers(0, 5, 80)] + 0.3 * rng.normal(size=(80, 4)) * spectrum
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    return X, (X @ Q)[rng.permutation(80)]


def _fit_ot() -> OTAligner:
    X, Y, _ = _rotated_cloud()
    return OTAligner(method="emd").fit(X, Y)


def _fit_self_learning() -> SelfLearning:
    X, _, _ = _rotated_cloud()
    Q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
    return SelfLearning().fit(X, X @ Q, pairs=np.stack([np.arange(8), np.arange(8)], 1))


def _fit_unsupervised() -> UnsupervisedAligner:
    return UnsupervisedAligner(n_init=2, max_starts=2, screen_iter=10, max_iter=40).fit(*_unsupervised_cloud())


FITS = {"OTAligner": _fit_ot, "SelfLearning": _fit_self_learning, "UnsupervisedAligner": _fit_unsupervised}


@pytest.mark.parametrize("name", sorted(FITS))
def test_fit_shows_a_bar_over_rounds_when_progress_is_on_and_nothing_when_off(name, capsys, monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    fitted = FITS[name]()
    err = capsys.readouterr().err
    assert name in err and "round" in err, err
    assert f"{fitted.n_iter_}/" in err  # the bar counted the rounds the fit ran
    monkeypatch.setenv(PROGRESS_ENV, "0")  # what --no-progress sets
    FITS[name]()
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


@pytest.mark.parametrize("name", sorted(FITS))
def test_fit_logs_one_info_line_with_its_time_and_debug_per_round(name, caplog, monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "0")
    with caplog.at_level(logging.DEBUG, logger="latentalign"):
        fitted = FITS[name]()
    info = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(info) == 1, [r.getMessage() for r in info]
    message = info[0].getMessage()
    assert message.startswith(name) and message.endswith(" s"), message
    assert ("not converged" in message) != fitted.converged_
    rounds = [r for r in caplog.records if r.levelno == logging.DEBUG and ": round " in r.getMessage()]
    assert len(rounds) == fitted.n_iter_ > 0


def test_ot_rounds_call_on_round_with_each_history_entry():
    X, Y, _ = _rotated_cloud()
    seen: list[dict] = []
    out = ot_alignment_rounds(
        torch.from_numpy(X),
        torch.from_numpy(Y),
        lambda A, B: ((lambda Z, W=torch.linalg.lstsq(A, B).solution: Z @ W), None),
        method="emd",
        on_round=seen.append,
    )
    assert seen == out.history[1:] and len(seen) == out.n_iter


def test_round_progress_bar_shows_the_chosen_fields_and_logs_a_failed_fit(capsys, caplog):
    log = logging.getLogger("latentalign.test_progress")
    with caplog.at_level(logging.INFO, logger="latentalign"), pytest.raises(RuntimeError):
        with RoundProgress("toy", logger=log, total=4, keys=("changed",), enabled=True) as on_round:
            on_round({"round": 1, "changed": 0.25, "other": 7})
            raise RuntimeError("boom")
    err = capsys.readouterr().err
    assert "changed=0.25" in err and "other" not in err
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == ["toy stopped by RuntimeError after 1 round(s)"]
