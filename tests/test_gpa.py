"""functional.gpa: generalised Procrustes analysis as a pure function."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from latentalign.align.universal import UniversalSpace
from latentalign.exceptions import ConvergenceWarning
from latentalign.functional.gpa import generalized_procrustes, procrustes_onto


def rotation(d: int, gen: torch.Generator) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=gen))[0]


def centred(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    A = torch.randn(n, d, dtype=torch.float64, generator=gen)
    return A - A.mean(0)


def test_planted_rotations_are_recovered_across_dimensions():
    gen = torch.Generator().manual_seed(0)
    A = centred(40, 3, gen)
    padded = torch.nn.functional.pad(A, (0, 2))
    shapes = [A, padded @ rotation(5, gen), A @ rotation(3, gen)]  # a 5-d model holding a 3-d shape
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        out = generalized_procrustes(shapes)
    assert out.converged and out.history[-1] <= 1e-10 and out.scales == [1.0, 1.0, 1.0]
    for S, R in zip(shapes, out.rotations):
        assert R.shape == (5, 5)
        torch.testing.assert_close(R.T @ R, torch.eye(5, dtype=torch.float64))
        torch.testing.assert_close(S @ R[: S.shape[1]], out.mean_shape, atol=1e-10, rtol=0)


def test_scales_undo_a_planted_size_difference():
    gen = torch.Generator().manual_seed(1)
    A = centred(30, 4, gen)
    out = generalized_procrustes([A, 3.0 * A @ rotation(4, gen)], scale=True)
    assert out.scales[0] / out.scales[1] == pytest.approx(3.0, rel=1e-9)
    ref = (A.norm() + 3.0 * A.norm()) / 2  # the mean shape keeps the mean size of the shapes
    assert float(out.mean_shape.norm()) == pytest.approx(float(ref), rel=1e-9)


def test_agrees_with_universal_space_on_the_same_inputs():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(25, 4))
    emb = {
        "a": A,
        "b": A @ np.linalg.qr(rng.normal(size=(4, 4)))[0] + 0.1 * rng.normal(size=(25, 4)),
        "c": rng.normal(size=(25, 2)),
    }
    space = UniversalSpace().fit(emb)  # default preprocessing: centring
    out = generalized_procrustes([space.preprocessors_[k].transform(torch.from_numpy(X)) for k, X in emb.items()])
    assert out.history == space.history_ and (out.converged, out.n_iter) == (space.converged_, space.n_iter_)
    torch.testing.assert_close(out.mean_shape, space.mean_shape_, atol=1e-12, rtol=0)
    for (name, X), R in zip(emb.items(), out.rotations):
        torch.testing.assert_close(R[: X.shape[1]], space.weights_[name], atol=1e-12, rtol=0)


def test_convergence_warning_names_the_caller_and_history_has_each_round():
    gen = torch.Generator().manual_seed(3)
    shapes = [centred(20, 3, gen) for _ in range(3)]  # unrelated shapes: one round does not settle
    with pytest.warns(ConvergenceWarning, match=r"my fit stopped after max_iter=1 rounds without converging"):
        out = generalized_procrustes(shapes, max_iter=1, label="my fit")
    assert not out.converged and out.n_iter == 1 and len(out.history) == 1 and out.history[0] > 0


def test_procrustes_onto_recovers_rotation_and_scale():
    gen = torch.Generator().manual_seed(4)
    A, Q = centred(15, 3, gen), rotation(3, gen)
    R, s = procrustes_onto(A, 0.5 * A @ Q, scale=True)
    torch.testing.assert_close(R, Q)
    assert s == pytest.approx(0.5, rel=1e-12) and procrustes_onto(A, A @ Q)[1] == 1.0


def test_errors_name_the_argument():
    gen = torch.Generator().manual_seed(5)
    A = centred(10, 2, gen)
    with pytest.raises(ValueError, match=r"shapes holds 1 shape\(s\); GPA needs at least 2"):
        generalized_procrustes([A])
    with pytest.raises(ValueError, match=r"same number of rows .* got shapes \[\(10, 2\), \(9, 2\)\]"):
        generalized_procrustes([A, A[:9]])
    with pytest.raises(ValueError, match=r"max_iter must be >= 1"):
        generalized_procrustes([A, A], max_iter=0)
