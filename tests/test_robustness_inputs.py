"""Careless inputs to the library give a result or one clear error: torch tensors that require grad, fits
with fewer anchors than dimensions, and a damaged writer lock in a store directory."""

from __future__ import annotations

import os
import socket
import warnings

import numpy as np
import pytest
import torch

from latentalign import IllConditionedWarning
from latentalign.align import Affine, OTAligner, Procrustes, RelativeProjection, SelfLearning, UniversalSpace
from latentalign.evaluation import alignability_report, retrieval_scores, similarity_scores
from latentalign.functional.procrustes import orthogonal_procrustes, procrustes_residual
from latentalign.functional.retrieval import csls_knn, knn
from latentalign.functional.similarity import cknna, linear_cka, mutual_knn
from latentalign.store.files import write_lock
from latentalign.store.format import LOCK


def planted(n: int = 60, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + 0.5
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    Y = X @ Q + 1e-3 * rng.standard_normal((n, d)) + 1.0
    return torch.from_numpy(X), torch.from_numpy(Y)


def needs_grad(T: torch.Tensor) -> torch.Tensor:
    return T.clone().requires_grad_(True)


# ------------------------------------------------------------------------------- requires_grad inputs
ALIGNERS = {
    "procrustes": lambda: Procrustes(),
    "affine": lambda: Affine(),
    "relative": lambda: RelativeProjection(),
    "ot": lambda: OTAligner(method="emd"),
    "self_learning": lambda: SelfLearning(n_iter=2),
}


def fit(name: str, X: torch.Tensor, Y: torch.Tensor):
    aligner = ALIGNERS[name]()
    if name == "self_learning":
        return aligner.fit(X, Y, pairs=np.stack([np.arange(20), np.arange(20)], axis=1))
    return aligner.fit(X, Y)


@pytest.mark.parametrize("name", [*sorted(ALIGNERS), "universal"])
def test_every_aligner_fits_and_maps_tensors_that_require_grad(name):
    X, Y = planted()
    Xg, Yg = needs_grad(X), needs_grad(Y)
    if name == "universal":  # fitted on a dict of models, maps with translate
        space, same = UniversalSpace().fit({"a": Xg, "b": Yg}), UniversalSpace().fit({"a": X, "b": Y})
        Z = space.translate(Xg, "a", "b")
        assert not Z.requires_grad
        torch.testing.assert_close(Z, same.translate(X, "a", "b"))
        return
    aligner, reference = fit(name, Xg, Yg), fit(name, X, Y)
    Z = aligner.transform(Xg)
    assert not Z.requires_grad  # fitting and mapping are not differentiable here (to_module() is)
    torch.testing.assert_close(Z, reference.transform(X))
    torch.testing.assert_close(aligner.transform_target(Yg), reference.transform_target(Y))
    if aligner.invertible:
        torch.testing.assert_close(aligner.inverse_transform(Z), reference.inverse_transform(Z))
    assert aligner.score(Xg, Yg) == pytest.approx(reference.score(X, Y))
    assert Xg.requires_grad and Xg.grad is None  # the caller's tensor is left as it was


EVALUATIONS = {
    "retrieval_scores": lambda X, Y: retrieval_scores(X, Y),
    "retrieval_scores_csls": lambda X, Y: retrieval_scores(X, Y, csls=True),
    "similarity_scores": lambda X, Y: similarity_scores(X, Y),
    "linear_cka": linear_cka,
    "mutual_knn": lambda X, Y: mutual_knn(X, Y, k=5),
    "cknna": lambda X, Y: cknna(X, Y, k=5),
    "knn": lambda X, Y: knn(X, Y, k=3)[1],
    "csls_knn": lambda X, Y: csls_knn(X, Y, k=3)[1],
    "orthogonal_procrustes": lambda X, Y: orthogonal_procrustes(X, Y)[0],
    "procrustes_residual": procrustes_residual,
    "alignability_report": lambda X, Y: alignability_report(X, Y, budgets=(10, 20), n_repeats=1).to_dict(),
}


@pytest.mark.parametrize("name", sorted(EVALUATIONS))
def test_evaluation_functions_accept_tensors_that_require_grad(name):
    X, Y = planted()
    result = EVALUATIONS[name](needs_grad(X), needs_grad(Y))
    expected = EVALUATIONS[name](X, Y)
    if isinstance(expected, torch.Tensor):
        torch.testing.assert_close(result, expected)
    elif isinstance(expected, dict):
        assert result.keys() == expected.keys()
        assert {k: v for k, v in result.items() if isinstance(v, float)} == pytest.approx(
            {k: v for k, v in expected.items() if isinstance(v, float)}, nan_ok=True
        )
    else:
        assert result == pytest.approx(expected)


# ------------------------------------------------------------------------ fewer anchors than dimensions
@pytest.mark.parametrize(("n", "center"), [(5, True), (10, True), (9, False)])
def test_procrustes_with_fewer_samples_than_dimensions_warns_like_affine(n, center):
    X, Y = planted(n=40, d=10)
    setting = " and center=True" if center else ""
    match = (
        rf"Procrustes with {n} samples for 10 features{setting} is under-determined \(at least "
        rf"{10 + int(center)} samples are needed\): the rotation is fixed only on the span"
    )
    with pytest.warns(IllConditionedWarning, match=match) as caught:
        Procrustes(center=center).fit(X[:n], Y[:n])
    assert caught[0].filename == __file__  # points at the caller's fit, not at latentalign's internals
    with pytest.warns(IllConditionedWarning, match=r"Least squares with 5 samples .* is under-determined \(at least"):
        Affine().fit(X[:5], Y[:5])  # the same wording, from the same function


def test_procrustes_with_enough_samples_does_not_warn_and_streaming_warns_at_the_solve():
    X, Y = planted(n=40, d=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Procrustes().fit(X[:11], Y[:11])
        Procrustes(center=False).fit(X[:10], Y[:10])
        Procrustes().fit(X[:5, :3], Y[:5, :3])  # 5 rows for 3 dimensions
    aligner = Procrustes().partial_fit(X[:4], Y[:4]).partial_fit(X[4:8], Y[4:8])
    with pytest.warns(IllConditionedWarning, match="Procrustes with 8 samples for 10 features"):
        aligner.transform(X)


# ------------------------------------------------------------------------------------ store writer lock
@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (b"garbage", "it holds 'garbage'"),
        (b"", "it is empty"),
        (b"\xff\xfe\x00\x01", "it holds"),
        (b"somehost notapid", "it holds 'somehost notapid'"),
        (f"{socket.gethostname()} abc".encode(), "it holds"),
        (f"{socket.gethostname()} 99999999999999999999999".encode(), "it holds"),
        (b"somehost 12 extra", "it holds"),
    ],
)
def test_a_garbage_lock_file_says_which_file_to_delete_and_when(tmp_path, content, shown):
    (tmp_path / LOCK).write_bytes(content)
    lock = str(tmp_path / LOCK)
    with pytest.raises(RuntimeError) as info:
        with write_lock(tmp_path):
            pass
    message = str(info.value)
    assert f"is locked by {lock!r}, which does not name its writer as 'HOST PID'" in message
    assert shown in message
    assert f"If no process is writing this store, delete {lock!r} and run again" in message
    assert (tmp_path / LOCK).read_bytes() == content  # never taken over: its writer may be alive
    (tmp_path / LOCK).unlink()
    with write_lock(tmp_path):  # deleting it, as the message says, is enough
        assert (tmp_path / LOCK).read_text() == f"{socket.gethostname()} {os.getpid()}"
    assert not (tmp_path / LOCK).exists()
