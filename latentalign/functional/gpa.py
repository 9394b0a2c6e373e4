"""Generalised Procrustes analysis (GPA; Gower, 1975): rotate several shapes onto their common mean.

Every shape holds the same ``n`` items (row ``i`` of each is the same item), in its own coordinates and
dimension. Shapes are zero-padded to the largest dimension ``D``; starting from the first shape as the
mean shape, every shape is rotated onto the mean (orthogonal Procrustes), the mean is replaced by the
mean of the rotated shapes, until it moves by less than ``tol`` relative to its norm. Each shape is then
rotated once more onto the final mean. :func:`generalized_procrustes` is the fit behind
:class:`~latentalign.align.universal.UniversalSpace`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from latentalign._validation import check_number
from latentalign.exceptions import ConvergenceWarning
from latentalign.functional.procrustes import polar_factor

__all__ = ["GPAResult", "generalized_procrustes", "procrustes_onto"]


def procrustes_onto(A: torch.Tensor, B: torch.Tensor, scale: bool = False) -> tuple[torch.Tensor, float]:
    """(Semi-)orthogonal ``R`` and scale ``s`` minimising ``||s A R - B||_F`` (no centring: pass centred rows).

    Parameters
    ----------
    A : torch.Tensor of shape (n, d_a)
    B : torch.Tensor of shape (n, d_b)
    scale : bool, default False
        Also fit the isotropic scale ``s`` (1 otherwise).

    Returns
    -------
    R : torch.Tensor of shape (d_a, d_b)
    s : float

    Examples
    --------
    >>> import torch
    >>> A = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> Q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    >>> R, s = procrustes_onto(A, 2 * A @ Q, scale=True)
    >>> torch.allclose(R, Q), round(s, 10)
    (True, 2.0)
    """
    R, S = polar_factor(A.T @ B)
    if not scale:
        return R, 1.0
    norm = float((A * A).sum())
    return R, (float(S.sum()) / norm if norm > 0 else 1.0)


@dataclass
class GPAResult:
    """What :func:`generalized_procrustes` found.

    Attributes
    ----------
    rotations : list of torch.Tensor of shape (D, D)
        One orthogonal matrix per shape, acting on its rows zero-padded to ``D`` (the largest dimension):
        shape ``k`` lands at ``scales[k] * pad(shapes[k]) @ rotations[k]``; the first ``d_k`` rows of
        ``rotations[k]`` map the unpadded rows.
    scales : list of float
        One isotropic scale per shape (1.0 unless ``scale=True``).
    mean_shape : torch.Tensor of shape (n, D)
        The consensus the shapes are rotated onto.
    history : list of float
        Relative change of the mean shape in each round.
    converged : bool
        Whether the change fell to ``tol`` within ``max_iter`` rounds.
    n_iter : int
        Rounds run.
    """

    rotations: list[torch.Tensor]
    scales: list[float]
    mean_shape: torch.Tensor
    history: list[float]
    converged: bool
    n_iter: int


def generalized_procrustes(
    shapes: Sequence[torch.Tensor],
    *,
    scale: bool = False,
    max_iter: int = 100,
    tol: float = 1e-10,
    label: str = "generalized_procrustes",
) -> GPAResult:
    """Rotate every shape onto the mean of the rotated shapes (generalised Procrustes analysis).

    Parameters
    ----------
    shapes : sequence of torch.Tensor of shape (n, d_k)
        At least two shapes of the same ``n`` items (row ``i`` of each is item ``i``), of one dtype and
        device, already centred (GPA rotates about the origin); dimensions may differ.
    scale : bool, default False
        Also fit one isotropic scale per shape; the mean shape then keeps the mean norm of the shapes
        (GPA with scaling would otherwise shrink towards 0).
    max_iter : int, default 100
        Most rounds.
    tol : float, default 1e-10
        Stop when the mean shape moves by less than ``tol`` relative to its norm.
    label : str, default "generalized_procrustes"
        Name used in the :class:`~latentalign.exceptions.ConvergenceWarning` message.

    Returns
    -------
    GPAResult

    Warns
    -----
    ConvergenceWarning
        When ``max_iter`` rounds end with the mean shape still moving by more than ``tol``.

    Examples
    --------
    Three rotated copies of one centred shape are brought onto one mean shape exactly:

    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> A = torch.randn(30, 3, dtype=torch.float64, generator=gen)
    >>> A = A - A.mean(0)
    >>> rot = lambda: torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=gen))[0]
    >>> shapes = [A, A @ rot(), A @ rot()]
    >>> out = generalized_procrustes(shapes)
    >>> landed = [S @ R for S, R in zip(shapes, out.rotations)]
    >>> out.converged, all(torch.allclose(L, out.mean_shape) for L in landed)
    (True, True)
    """
    check_number(max_iter, "max_iter", integer=True, low=1)
    check_number(tol, "tol", low=0.0)
    shapes = list(shapes)
    if len(shapes) < 2:
        raise ValueError(f"shapes holds {len(shapes)} shape(s); GPA needs at least 2. Pass a list of 2-D tensors.")
    rows = {int(S.shape[0]) for S in shapes}
    if any(S.ndim != 2 for S in shapes) or len(rows) > 1:
        raise ValueError(
            f"shapes must be 2-D tensors with the same number of rows (one per item), got shapes "
            f"{[tuple(S.shape) for S in shapes]}. Embed the same items, in the same order, in every shape."
        )
    width = max(int(S.shape[1]) for S in shapes)
    padded = [torch.nn.functional.pad(S, (0, width - S.shape[1])) for S in shapes]

    mean = padded[0].clone()
    history: list[float] = []
    converged = False
    for _ in range(int(max_iter)):
        aligned = []
        for S in padded:
            R, s = procrustes_onto(S, mean, bool(scale))
            aligned.append(s * S @ R)
        new_mean = torch.stack(aligned).mean(0)
        if scale:  # fix the overall size (GPA with scaling would otherwise shrink towards 0)
            ref = float(torch.stack([S.norm() for S in padded]).mean())
            new_mean = new_mean * (ref / float(new_mean.norm().clamp_min(1e-300)))
        change = float((new_mean - mean).norm() / new_mean.norm().clamp_min(1e-300))
        history.append(change)
        mean = new_mean
        if change <= tol:
            converged = True
            break
    if not converged:
        warnings.warn(
            f"{label} stopped after max_iter={max_iter} rounds without converging (last relative change of "
            f"the mean shape {history[-1]:.2e} > tol={tol:g}). Increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    # Final alignment of every shape onto the final mean shape.
    fits = [procrustes_onto(S, mean, bool(scale)) for S in padded]
    return GPAResult(
        rotations=[R for R, _ in fits],
        scales=[float(s) for _, s in fits],
        mean_shape=mean,
        history=history,
        converged=converged,
        n_iter=len(history),
    )
