"""Orthogonal Procrustes: the rotation (or semi-orthogonal map) that best sends ``X`` onto ``Y``.

For paired rows, ``R = argmin ||s (X - m_x) R - (Y - m_y)||_F`` over ``R`` with orthonormal columns (or
rows), and optionally the isotropic scale ``s``. With ``M = (X - m_x)^T (Y - m_y)`` and its thin SVD
``M = U S V^T``, the solution is ``R = U V^T`` and ``s = trace(S) / ||X - m_x||_F^2``.

Different dimensions (``d_x != d_y``): ``R = U V^T`` from the thin SVD is ``(d_x, d_y)`` semi-orthogonal
(orthonormal columns when ``d_x > d_y``, orthonormal rows when ``d_x < d_y``). It is exactly what
zero-padding the smaller space to the larger dimension and solving the square problem gives: if ``Y`` is
padded, ``M`` gains zero columns and every optimal square rotation ``Q`` has ``Q[:, :d_y] = R`` (the padded
target columns only add a constant); if ``X`` is padded, ``M`` gains zero rows and ``Q[:d_x] = R``, so
``[X, 0] Q = X R``. The scale is the padded problem's scale too (``||[X, 0]||_F = ||X||_F``).

What this means for ``d_x > d_y``: the padded objective ``||[Y, 0] - X Q||`` also counts the energy of ``X``
outside the ``d_y`` directions that ``R`` keeps, so ``R`` maximises ``trace(R^T M)``; it is *not* the
"unbalanced" fit ``min ||X R - Y||`` over semi-orthogonal ``R`` (no closed form), unless ``X``'s covariance
is isotropic or ``X`` lies in the span ``R`` keeps. For ``d_x < d_y`` the two coincide: ``Y = X C`` with
``C C^T = I`` is recovered exactly from any ``X``.

Fewer pairs than dimensions: completing the rotation
----------------------------------------------------
With ``n`` centred pairs, ``M`` has rank ``r <= n - 1``, and ``trace(R^T M)`` fixes ``R`` only on the
span of the pairs: every ``R = U_r V_r^T + U_c Q V_c^T`` with ``Q`` orthogonal is optimal, where ``U_r``,
``V_r`` are the singular vectors of the ``r`` non-zero singular values and ``U_c``, ``V_c`` complete them
to bases of each whole space. The thin SVD picks one ``Q`` by accident of its algorithm.
``complement="identity"`` (the default) picks the optimal ``R`` closest to the identity (the zero-padded
identity ``E = eye(d_x, d_y)`` across dimensions): ``||R - E||_F`` is smallest for
``Q = polar(U_c^T E V_c)``, a second, small Procrustes problem on the complements with the identity as
its target. When both sides share coordinates (the same space seen twice, or a slightly rotated copy),
the directions that no pair constrains are then left as they are instead of scrambled; the fit on the
pairs is the same optimum either way, and a full-rank ``M`` leaves nothing to complete. The completion
needs only ``M`` and ``n``, so streamed statistics give it too. ``complement="svd"`` keeps the thin SVD's
choice.

Fewer pairs than dimensions: shrinking towards the identity
----------------------------------------------------------
The completion above trusts the pairs fully on their span. With few, noisy pairs that span is itself
fitted to noise, and when both sides share coordinates the identity is a better guess there too.
``shrinkage = lam > 0`` maximises ``trace(R^T M) + lam * mean(S) * trace(R^T E)`` instead: the
maximum-a-posteriori rotation under a matrix von Mises-Fisher prior centred on ``E`` (the same zero-padded
identity), whose concentration is measured in units of the mean singular value of ``M`` so that it does
not depend on the number of pairs or the scale of the data. The solution is ``R = polar(M + lam mean(S) E)``
(one SVD; ``lam = 0`` is the unshrunk fit, ``lam -> inf`` the identity). It needs only ``M``, so streamed
statistics give it too; choosing ``lam`` needs held-out pairs (:class:`~latentalign.align.procrustes.Procrustes`
with ``shrinkage="cv"``).

Cost: one pass over the data, ``X^T Y`` as a GEMM in the input dtype (float32 data runs at the float32
GEMM rate) accumulated into float64 without copying the inputs (see :mod:`latentalign.functional.moments`),
then a ``d_x x d_y`` SVD in float64. With fewer pairs than about a third of the dimensions, the
completion and the shrunk rotation are solved exactly on the dimensions the pairs and the identity reach
there (:func:`pair_subspaces`: ``2 (n - 1)`` for square ``M``, at most ``3 (n - 1)``), at ``O(d n^2)``
instead of ``O(d^3)``: with 50 pairs in 1,280 dimensions the completion takes about 0.07 s against 1.3 s
from full SVDs (``benchmarks/bench_few_pair_procrustes.py``), and ``shrinkage="cv"``, which solves 40
such problems, about 0.7 s instead of 50 s: each fold's eight shrinkages share one reduction and one
spectrum (:func:`procrustes_path_from_stats`), so a shrinkage costs one small polar factor. With 300
pairs in 1,280 dimensions (a self-learning round's matches) the completion takes about 0.5 s against
1.5 s, and ``shrinkage="cv"`` about 7 s against 49 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from latentalign._array import ArrayLike, ArraySpec, restore
from latentalign._validation import check_array, check_choice, check_number, check_pair
from latentalign.functional.linalg import svd
from latentalign.functional.moments import CrossStats, compute_stats, is_finite

__all__ = [
    "orthogonal_procrustes",
    "procrustes_residual",
    "procrustes_from_stats",
    "procrustes_path_from_stats",
    "polar_factor",
    "COMPLEMENTS",
    "complete_rotation",
    "pair_subspaces",
    "shrunk_rotation",
    "shrunk_rotations",
    "paired_stats",
    "products_underflowed",
    "sums_of_squares",
    "whitening",
]

_F64 = torch.float64
_STD_EPS = 1e-12
#: How the directions no pair constrains are mapped (see the module docstring).
COMPLEMENTS = ("identity", "svd")
#: Singular values below this fraction of the largest count as zero (the constrained rank).
_RANK_RTOL = 1e-10


def paired_stats(
    X: Any,
    Y: Any,
    *,
    squares: bool = False,
    gram: bool = False,
    gram_y: bool = False,
    product_dtype: torch.dtype | None = None,
    min_rows: int = 1,
) -> tuple[CrossStats, ArraySpec, torch.Tensor]:
    """Validate paired ``X``, ``Y`` and compute their :class:`~latentalign.functional.moments.CrossStats`.

    The finiteness of the inputs is checked through the statistics (a NaN or infinity anywhere makes
    them non-finite), which saves a pass over the data; the error then names the first bad entry.

    Returns
    -------
    stats : CrossStats
    spec : ArraySpec
        How ``X`` was passed (to return results the same way).
    X : torch.Tensor
        ``X`` as a tensor (no copy), e.g. to read its device.
    """
    Xt, Yt, spec = check_pair(X, Y, min_rows=min_rows, ensure_finite=False)
    stats = compute_stats(Xt, Yt, squares=squares, gram=gram, gram_y=gram_y, product_dtype=product_dtype)
    narrow = (product_dtype or Xt.dtype) != _F64
    if narrow and (not is_finite(stats) or products_underflowed(stats)):
        # float32 products of very large (> ~1e19) or very small (< ~1e-15) values overflow or lose their
        # digits in float32's subnormal range; float64 products hold any float32 magnitude exactly enough.
        stats = compute_stats(Xt, Yt, squares=squares, gram=gram, gram_y=gram_y, product_dtype=_F64)
    if not is_finite(stats):
        raise_non_finite(X, Y)
    return stats, spec, Xt


#: A second moment whose largest mean product is below this was computed (partly) in float32's subnormal
#: range (below 1.2e-38), where relative precision is lost: recompute in float64.
FLOAT32_PRODUCT_FLOOR = 1e-30


def products_underflowed(stats: CrossStats) -> bool:
    """Whether the second moments in ``stats`` are so small that float32 products underflowed.

    Examples
    --------
    >>> import torch
    >>> from latentalign.functional.moments import compute_stats
    >>> X = torch.randn(100, 3)
    >>> products_underflowed(compute_stats(X, X)), products_underflowed(compute_stats(X * 1e-20, X * 1e-20))
    (False, True)
    """
    floor = FLOAT32_PRODUCT_FLOOR * max(stats.n, 1)
    parts = (stats.cxy, stats.ssx, stats.ssy, stats.cxx, stats.cyy)
    return any(p is not None and p.numel() > 0 and float(p.abs().max()) < floor for p in parts)


def raise_non_finite(X: Any, Y: Any) -> None:
    """Raise the standard non-finite-input error for ``X`` or ``Y`` (or an overflow error)."""
    check_array(X, "X")
    check_array(Y, "Y")
    raise ValueError(
        "The products of X and Y overflowed even in float64 (values beyond ~1e150). Rescale the inputs, "
        "e.g. divide both by their largest absolute value."
    )


def polar_factor(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closest (semi-)orthogonal matrix to ``M`` and ``M``'s singular values, via a float64 thin SVD.

    Parameters
    ----------
    M : torch.Tensor of shape (p, q)

    Returns
    -------
    R : torch.Tensor of shape (p, q), float64
        ``U V^T``: maximises ``trace(R^T M)`` among matrices with orthonormal columns (p >= q) or rows.
    singular_values : torch.Tensor of shape (min(p, q),), float64
    """
    U, S, Vh = svd(M.to(_F64), full_matrices=False)
    return U @ Vh, S


def complete_rotation(M: torch.Tensor, max_rank: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Optimal ``R`` for ``max trace(R^T M)`` closest to the (zero-padded) identity, and ``M``'s spectrum.

    ``R = U_r V_r^T`` on the span of ``M`` (rank ``r``), completed on the orthogonal complements of both
    spans by ``U_c Q V_c^T`` with ``Q = polar(U_c^T E V_c)``, ``E = eye(d_x, d_y)``: among all maximisers,
    the one nearest ``E`` in Frobenius norm. A full-rank ``M`` gives the plain polar factor.

    Parameters
    ----------
    M : torch.Tensor of shape (d_x, d_y)
        Cross-covariance of the pairs.
    max_rank : int, optional
        Known bound on the rank of ``M`` (``n - 1`` for ``n`` centred pairs), which overrides the rounding
        noise of singular values that are zero in exact arithmetic.

    Returns
    -------
    R : torch.Tensor of shape (d_x, d_y), float64
        Orthonormal columns (``d_x >= d_y``) or rows.
    singular_values : torch.Tensor of shape (min(d_x, d_y),), float64
    rank : int
        The number of singular directions the pairs constrain.

    Examples
    --------
    The same space seen twice through 3 pairs in 5 dimensions: the completion is the identity.

    >>> import torch
    >>> X = torch.randn(3, 5, dtype=torch.float64)
    >>> R, _, rank = complete_rotation(X.T @ X)
    >>> rank, torch.allclose(R, torch.eye(5, dtype=torch.float64))
    (3, True)
    """
    M = M.to(_F64)
    d_x, d_y = M.shape
    k = min(d_x, d_y)
    reduced = pair_subspaces(M, max_rank)
    if reduced is not None:
        Qx, Qy, B = reduced
        R_B, S_B, rank = complete_rotation(B, max_rank)
        return _lift(R_B, Qx, Qy, d_x, d_y), _padded(S_B, k), rank
    # bases of the complements too when the pairs cannot fix every direction (known before the SVD)
    full = max_rank is not None and max_rank < k
    U, S, Vh = svd(M, full_matrices=full)
    S = S[:k]
    rank = _constrained_rank(S, max_rank)
    if rank >= k:
        return U[:, :k] @ Vh[:k], S, rank
    if U.shape[1] < d_x or Vh.shape[0] < d_y:  # the thin factors of a non-square M lack a complement's basis
        U, _, Vh = svd(M, full_matrices=True)
    V = Vh.T
    R = U[:, :rank] @ V[:, :rank].T
    Uc, Vc = U[:, rank:], V[:, rank:]
    # U_c^T E V_c with E = eye(d_x, d_y): only the first k coordinates of each side meet.
    Q, _ = polar_factor(Uc[:k].T @ Vc[:k])
    return R + Uc @ Q @ Vc.T, S, rank


#: The solvers work in the subspaces the pairs reach (:func:`pair_subspaces`) when these are at most this
#: fraction of the smaller dimension: there they cost ``O(d q^2)`` instead of ``O(d^3)``. Measured on
#: 1,280-d pairs (``benchmarks/bench_few_pair_procrustes.py``), the reduced completion is still faster
#: at ``q`` about 0.66 of ``d`` and slower at 0.78.
_REDUCE_BELOW = 0.65
#: Extra columns of the random range finder beyond the known rank (Halko, Martinsson and Tropp, 2011).
_OVERSAMPLING = 8


def pair_subspaces(M: torch.Tensor, max_rank: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Orthonormal bases of the subspaces a low-rank ``M`` and the (zero-padded) identity ``E`` act on.

    With ``M`` of rank ``r`` (``r <= max_rank``, e.g. ``n - 1`` for ``n`` centred pairs) and
    ``E = eye(d_x, d_y)``, this returns ``Qx`` (``d_x x q_x``), ``Qy`` (``d_y x q_y``) and
    ``B = Qx^T M Qy`` such that ``M = Qx B Qy^T``, ``Qx^T E Qy = eye(q_x, q_y)`` and ``E`` maps the
    complement of ``Qy`` isometrically onto a subspace orthogonal to ``Qx`` (for ``d_x >= d_y``; the
    transposed statement otherwise). Every rotation problem of the form ``max trace(R^T (M + c E))``, and
    the choice of the maximiser closest to ``E``, then splits into the same problem for ``B`` and ``R = E``
    on the complements, so it is solved exactly on ``q <= 3 r`` dimensions: with 50 pairs in 1,280
    dimensions, on about 100 instead of 1,280.

    The column and row spaces of ``M`` come from a seeded random range finder (exact when the rank is at
    most ``max_rank``).

    Parameters
    ----------
    M : torch.Tensor of shape (d_x, d_y), float64
        Cross-covariance of the pairs.
    max_rank : int or None
        Known bound on the rank of ``M`` (``n - 1`` for ``n`` centred pairs).

    Returns
    -------
    (Qx, Qy, B) or None
        None when ``max_rank`` is None or the subspaces would not be much smaller than the space (more
        than 0.65 of the smaller dimension, where the full SVDs cost about as much).

    Examples
    --------
    >>> import torch
    >>> X, Y = torch.randn(10, 200, dtype=torch.float64), torch.randn(10, 150, dtype=torch.float64)
    >>> Qx, Qy, B = pair_subspaces(X.T @ Y, max_rank=10)
    >>> E, E_B = torch.eye(200, 150, dtype=torch.float64), torch.eye(*B.shape, dtype=torch.float64)
    >>> B.shape[0] <= 30, bool(torch.allclose(Qx @ B @ Qy.T, X.T @ Y)), bool(torch.allclose(Qx.T @ E @ Qy, E_B))
    (True, True, True)
    """
    d_x, d_y = M.shape
    if max_rank is None or max(_reduced_sizes(d_x, d_y, int(max_rank))) > _REDUCE_BELOW * min(d_x, d_y):
        return None
    if d_x < d_y:
        found = pair_subspaces(M.T, max_rank)
        return None if found is None else (found[1], found[0], found[2].T)
    gen = torch.Generator(device="cpu").manual_seed(0)
    width = int(max_rank) + _OVERSAMPLING
    probe_y = torch.randn(d_y, width, generator=gen, dtype=_F64).to(M.device)
    probe_x = torch.randn(d_x, width, generator=gen, dtype=_F64).to(M.device)
    columns, rows = M @ probe_y, M.T @ probe_x  # span M's column and row spaces
    # Qy: M's row space and E^T (its column space); Qx: E Qy first (so that Qx^T E Qy is the identity),
    # then the rest of M's column space.
    Qy = _orthonormal(torch.cat([rows, columns[:d_y]], dim=1))
    EQy = torch.cat([Qy, Qy.new_zeros(d_x - d_y, Qy.shape[1])])
    rest = columns - EQy @ (EQy.T @ columns)
    rest = rest - EQy @ (EQy.T @ rest)  # twice: one pass leaves rounding-size components along EQy
    Qx = torch.cat([EQy, _orthonormal(rest, reference=float(columns.norm()))], dim=1)
    return Qx, Qy, Qx.T @ M @ Qy


def _reduced_sizes(d_x: int, d_y: int, max_rank: int) -> tuple[int, int]:
    """The most dimensions ``(q_x, q_y)`` :func:`pair_subspaces` can return for a rank bound ``r``.

    With ``w = r + 8`` probe columns: on the smaller side, the spans of ``M``'s rows (or columns) and of
    the identity's image of the other side, ``2 w``; on the larger side the same, plus the part of ``M``'s
    span the identity does not reach there, ``min(w, |d_x - d_y|)`` (none for square ``M``). Exact-rank
    ``M`` gives ``2 r`` and ``r`` instead; float32 rounding can keep the extra probe columns. Since the
    bound for the reduced matrix is never below its own size, solving on it never reduces again.

    Examples
    --------
    >>> _reduced_sizes(1280, 1280, 50), _reduced_sizes(1280, 768, 50), _reduced_sizes(100, 100, 60)
    ((116, 116), (174, 116), (100, 100))
    """
    w = max(int(max_rank), 1) + _OVERSAMPLING
    small = min(d_x, d_y, 2 * w)
    large = min(max(d_x, d_y), small + min(w, abs(d_x - d_y)))
    return (large, small) if d_x >= d_y else (small, large)


def _orthonormal(A: torch.Tensor, reference: float | None = None) -> torch.Tensor:
    """Orthonormal basis of the numerical column space of ``A`` (singular values above ``1e-13`` of ``reference``)."""
    U, S, _ = svd(A)
    top = float(S[0]) if reference is None and S.numel() else float(reference or 0.0)
    return U[:, S > 1e-13 * top] if top > 0 else U[:, :0]


def _lift(R_B: torch.Tensor, Qx: torch.Tensor, Qy: torch.Tensor, d_x: int, d_y: int) -> torch.Tensor:
    """``E + Qx (R_B - eye) Qy^T``: the reduced solution on the subspaces, the padded identity elsewhere."""
    E_B = torch.eye(*R_B.shape, dtype=_F64, device=R_B.device)
    return torch.eye(d_x, d_y, dtype=_F64, device=R_B.device) + Qx @ (R_B - E_B) @ Qy.T


def _padded(S: torch.Tensor, k: int) -> torch.Tensor:
    """Singular values padded with zeros to ``k`` (those of the full matrix)."""
    return torch.cat([S, S.new_zeros(max(k - S.numel(), 0))])


def shrunk_rotation(
    M: torch.Tensor, shrinkage: float, max_rank: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``polar(M + shrinkage mean(S) E)`` and ``M``'s singular values ``S`` (``E = eye(d_x, d_y)``).

    The maximum-a-posteriori rotation under a matrix von Mises-Fisher prior centred on ``E`` (see the
    module docstring). With ``max_rank`` small against the dimensions, solved exactly on
    :func:`pair_subspaces`.

    Parameters
    ----------
    M : torch.Tensor of shape (d_x, d_y)
        Cross-covariance of the pairs.
    shrinkage : float
        Concentration of the prior, in units of the mean singular value of ``M`` (> 0).
    max_rank : int, optional
        Known bound on the rank of ``M`` (``n - 1`` for ``n`` centred pairs).

    Returns
    -------
    R : torch.Tensor of shape (d_x, d_y), float64
    singular_values : torch.Tensor of shape (min(d_x, d_y),), float64

    Examples
    --------
    >>> import torch
    >>> X = torch.randn(4, 30, dtype=torch.float64)
    >>> R, S = shrunk_rotation(X.T @ X, 1.0, max_rank=4)
    >>> bool(torch.allclose(R, torch.eye(30, dtype=torch.float64))), S.shape  # the same space: the identity
    (True, torch.Size([30]))
    """
    rotations, S = shrunk_rotations(M, [shrinkage], max_rank)
    return rotations[0], S


def shrunk_rotations(
    M: torch.Tensor, shrinkages: Sequence[float], max_rank: int | None = None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """:func:`shrunk_rotation` for each of several shrinkages, sharing what does not depend on it.

    ``M``'s spectrum and, with few pairs, its reduction to :func:`pair_subspaces` are computed once; each
    shrinkage then costs one polar factor (of the reduced matrix when there is one). This is what choosing
    the shrinkage by cross-validation solves, once per fold.

    Parameters
    ----------
    M : torch.Tensor of shape (d_x, d_y)
        Cross-covariance of the pairs.
    shrinkages : sequence of float
        Concentrations of the prior, in units of the mean singular value of ``M`` (each > 0).
    max_rank : int, optional
        Known bound on the rank of ``M`` (``n - 1`` for ``n`` centred pairs).

    Returns
    -------
    rotations : list of torch.Tensor of shape (d_x, d_y), float64
        One per shrinkage, in their order.
    singular_values : torch.Tensor of shape (min(d_x, d_y),), float64

    Examples
    --------
    >>> import torch
    >>> X, Y = torch.randn(5, 40, dtype=torch.float64), torch.randn(5, 40, dtype=torch.float64)
    >>> rotations, S = shrunk_rotations(X.T @ Y, [0.5, 3.0], max_rank=5)
    >>> all(torch.allclose(R, shrunk_rotation(X.T @ Y, lam, max_rank=5)[0]) for R, lam in zip(rotations, [0.5, 3.0]))
    True
    """
    M = M.to(_F64)
    d_x, d_y = M.shape
    reduced = pair_subspaces(M, max_rank)
    if reduced is not None:
        Qx, Qy, B = reduced
        S = _padded(torch.linalg.svdvals(B), min(d_x, d_y))
        E_B = torch.eye(*B.shape, dtype=_F64, device=M.device)
        return [_lift(polar_factor(B + lam * float(S.mean()) * E_B)[0], Qx, Qy, d_x, d_y) for lam in shrinkages], S
    S = torch.linalg.svdvals(M)
    E = torch.eye(d_x, d_y, dtype=_F64, device=M.device)
    return [polar_factor(M + lam * float(S.mean()) * E)[0] for lam in shrinkages], S


def _constrained_rank(S: torch.Tensor, max_rank: int | None) -> int:
    top = float(S[0]) if S.numel() else 0.0
    rank = int((S > top * _RANK_RTOL).sum()) if top > 0 else 0
    return rank if max_rank is None else min(rank, max(int(max_rank), 0))


def procrustes_from_stats(
    stats: CrossStats,
    *,
    center: bool = True,
    scale: bool = False,
    standardize: bool = False,
    complement: str = "identity",
    whiten: bool = False,
    shrinkage: float = 0.0,
) -> dict[str, Any]:
    """Solve Procrustes from sufficient statistics (float64, ``O(d^3)``, no pass over the data).

    Parameters
    ----------
    stats : CrossStats
        Needs the sums of squares (``squares=True``) when ``scale`` or ``standardize`` is set.
    center : bool
        Remove the column means of both sides (otherwise the map is a pure rotation about the origin).
    scale : bool
        Fit the isotropic scale ``s``; otherwise ``s = 1``.
    standardize : bool
        Divide every column of both sides by its standard deviation (about the mean, or about 0 when
        ``center=False``) before solving; constant columns are left unscaled.
    complement : {"identity", "svd"}, default "identity"
        How the directions the pairs leave unconstrained (fewer pairs than dimensions) are rotated:
        closest to the identity (:func:`complete_rotation`), or as the thin SVD returns them.
    whiten : bool
        Whiten both sides (ZCA, see :func:`whitening`) before solving for the rotation, and de-whiten the
        result with the target's covariance (the whitening / orthogonal mapping / de-whitening steps of
        Artetxe et al., AAAI 2018, as in VecMap with the target's de-whitening). The map
        ``C_xx^{-1/2} R C_yy^{1/2}`` is then the canonical-correlation map: it sends ``X`` onto ``Y``
        exactly whenever ``Y = X A + b`` for an invertible ``A``. Needs both Gram matrices in ``stats``;
        not combined with ``scale`` or ``standardize`` (whitening sets every scale).
    shrinkage : float, default 0.0
        Concentration of the prior on the (zero-padded) identity, in units of the mean singular value of
        the (standardised or whitened) cross-covariance: the rotation is ``polar(M + shrinkage mean(S) E)``
        (see the module docstring). ``0`` is the plain fit; any positive value determines the whole
        rotation, so ``complement`` no longer matters.

    Returns
    -------
    dict
        ``rotation`` (d_x, d_y), ``scale`` (float), ``mean_x``, ``mean_y``, ``std_x``, ``std_y``, all float64
        (means are zeros when ``center=False``, stds ones when ``standardize=False``),
        ``singular_values`` and ``rank`` (directions fixed by the pairs). With ``whiten=True`` also
        ``whiten_x``, ``dewhiten_x`` (d_x, d_x) and ``whiten_y``, ``dewhiten_y`` (d_y, d_y): the inverse
        square roots and square roots of both covariances (``rotation`` is then the rotation between the
        whitened spaces), and ``whiten_rank`` (the smaller numerical rank of the two covariances).
    """
    return _solutions(
        stats,
        [shrinkage],
        center=center,
        scale=scale,
        standardize=standardize,
        complement=complement,
        whiten=whiten,
    )[0]


def procrustes_path_from_stats(
    stats: CrossStats,
    shrinkages: Sequence[float],
    *,
    center: bool = True,
    scale: bool = False,
    standardize: bool = False,
    complement: str = "identity",
) -> list[dict[str, Any]]:
    """:func:`procrustes_from_stats` for each of several shrinkages, sharing what does not depend on it.

    The centring and standardising of the statistics, the spectrum of the cross-covariance and, with few
    pairs, its reduction to :func:`pair_subspaces` are done once (:func:`shrunk_rotations`); each positive
    shrinkage then costs one polar factor. ``Procrustes(shrinkage="cv")`` solves its grid this way on
    every fold.

    Parameters
    ----------
    stats : CrossStats
    shrinkages : sequence of float
        Each ``>= 0`` (``0`` is the unshrunk fit, completed as ``complement`` says).
    center, scale, standardize, complement
        As in :func:`procrustes_from_stats` (whitening has no shrinkage, so it is not an option here).

    Returns
    -------
    list of dict
        One solution per shrinkage, in their order, each as :func:`procrustes_from_stats` returns it.

    Examples
    --------
    >>> import torch
    >>> from latentalign.functional.moments import compute_stats
    >>> X, Y = torch.randn(6, 20, dtype=torch.float64), torch.randn(6, 20, dtype=torch.float64)
    >>> stats = compute_stats(X, Y)
    >>> path = procrustes_path_from_stats(stats, [0.0, 1.0])
    >>> [torch.allclose(sol["rotation"], procrustes_from_stats(stats, shrinkage=lam)["rotation"])
    ...  for sol, lam in zip(path, [0.0, 1.0])]
    [True, True]
    """
    return _solutions(
        stats,
        shrinkages,
        center=center,
        scale=scale,
        standardize=standardize,
        complement=complement,
        whiten=False,
    )


def _solutions(
    stats: CrossStats,
    shrinkages: Sequence[float],
    *,
    center: bool,
    scale: bool,
    standardize: bool,
    complement: str,
    whiten: bool,
) -> list[dict[str, Any]]:
    check_choice(complement, "complement", COMPLEMENTS)
    for shrinkage in shrinkages:
        check_number(shrinkage, "shrinkage", low=0.0)
    if (scale or standardize) and not stats.has_squares:
        raise ValueError(
            "These statistics were accumulated without the sums of squares that scale=True or "
            "standardize=True needs (they were computed with scale=False and standardize=False). Refit "
            "from the data with the new settings."
        )
    n = stats.n
    M = stats.cxy
    mean_x, mean_y = stats.mean_x, stats.mean_y
    squares = sums_of_squares(stats, center=center) if stats.has_squares else None
    if not center:
        M = M + n * torch.outer(mean_x, mean_y)
        mean_x, mean_y = torch.zeros_like(mean_x), torch.zeros_like(mean_y)
    if standardize and squares is not None:  # squares are present whenever standardize is set (checked above)
        ssx, ssy = squares
        std_x = _safe_std(ssx, n)
        std_y = _safe_std(ssy, n)
        M = M / std_x[:, None] / std_y[None, :]
        norm_x = float((ssx / (std_x * std_x)).sum())
    else:
        std_x = torch.ones_like(mean_x)
        std_y = torch.ones_like(mean_y)
        norm_x = float(squares[0].sum()) if squares is not None else float("nan")
    if whiten and (scale or standardize):
        raise ValueError(
            "whiten=True cannot be combined with scale=True or standardize=True: whitening already rescales "
            "every direction of both sides. Keep whiten=True alone, or set whiten=False."
        )
    if whiten and not (stats.has_gram and stats.has_gram_y):
        raise ValueError(
            "whiten=True needs the Gram matrices of both X and Y, but these statistics were accumulated "
            "without them (gram=True, gram_y=True). Refit from the data with whiten=True."
        )
    whitened: dict[str, Any] = {}
    if whiten:
        cxx, cyy = stats.gram(), stats.gram_y()
        if not center:
            cxx = cxx + n * torch.outer(stats.mean_x, stats.mean_x)
            cyy = cyy + n * torch.outer(stats.mean_y, stats.mean_y)
        inv_x, sqrt_x, rank_x = whitening(cxx / max(n, 1))
        inv_y, sqrt_y, rank_y = whitening(cyy / max(n, 1))
        M = inv_x @ (M / max(n, 1)) @ inv_y
        whitened = {
            "whiten_x": inv_x,
            "dewhiten_x": sqrt_x,
            "whiten_y": inv_y,
            "dewhiten_y": sqrt_y,
            "whiten_rank": min(rank_x, rank_y),
        }
    if not bool(M.abs().max() > 0):
        raise ValueError(
            "X and Y have zero cross-covariance (every column of one side is constant over the rows), so no "
            "rotation is determined. Check that the rows are paired and that there are at least two "
            "distinct rows."
        )
    max_rank = n - 1 if center else n
    positive = [float(lam) for lam in shrinkages if lam > 0]
    # each shrinkage's rotation, with M's singular values and constrained rank as its solver found them
    solved: dict[float, tuple[torch.Tensor, torch.Tensor, int]] = {}
    if positive:
        rotations, S = shrunk_rotations(M, positive, max_rank)
        rank = _constrained_rank(S, max_rank)
        solved.update((lam, (R, S, rank)) for lam, R in zip(positive, rotations))
    if len(positive) < len(shrinkages):
        if complement == "identity":
            solved[0.0] = complete_rotation(M, max_rank=max_rank)
        else:
            R, S = polar_factor(M)
            solved[0.0] = (R, S, _constrained_rank(S, max_rank))
    solutions = []
    for shrinkage in shrinkages:
        R, S, rank = solved[float(shrinkage)]
        s = 1.0
        if scale:
            # the best scale for the chosen R: trace(R^T M) / ||X||^2, which is sum(S) for the unshrunk fit
            fit = float((R * M.to(R.dtype)).sum()) if shrinkage > 0 else float(S.sum())
            s = fit / norm_x if norm_x > 0 else 0.0
        solutions.append(
            {
                "rotation": R,
                "scale": s,
                "mean_x": mean_x,
                "mean_y": mean_y,
                "std_x": std_x,
                "std_y": std_y,
                "singular_values": S,
                "rank": rank,
                **whitened,
            }
        )
    return solutions


#: Eigenvalues of a covariance below this fraction of the largest count as zero when whitening.
WHITEN_RTOL = 1e-10


def whitening(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """ZCA whitening of a covariance matrix: ``cov^{-1/2}``, ``cov^{1/2}`` and the numerical rank.

    Directions whose eigenvalue is below :data:`WHITEN_RTOL` times the largest carry no variance: they are
    dropped (a zero eigenvalue in both roots), so ``cov^{-1/2}`` is the pseudo-inverse square root.

    Parameters
    ----------
    cov : torch.Tensor of shape (d, d)
        Symmetric positive semi-definite.

    Returns
    -------
    inv_sqrt, sqrt : torch.Tensor of shape (d, d), float64
        Symmetric; ``inv_sqrt @ cov @ inv_sqrt`` is the identity on the kept directions.
    rank : int

    Examples
    --------
    >>> import torch
    >>> cov = torch.tensor([[4.0, 0.0], [0.0, 0.25]], dtype=torch.float64)
    >>> inv_sqrt, sqrt, rank = whitening(cov)
    >>> torch.diagonal(inv_sqrt).tolist(), torch.diagonal(sqrt).tolist(), rank
    ([0.5, 2.0], [2.0, 0.5], 2)
    """
    cov = cov.to(_F64)
    cov = 0.5 * (cov + cov.T)
    evals, evecs = torch.linalg.eigh(cov)
    top = float(evals.max()) if evals.numel() else 0.0
    keep = evals > top * WHITEN_RTOL if top > 0 else torch.zeros_like(evals, dtype=torch.bool)
    root = torch.where(keep, evals.clamp_min(0.0).sqrt(), torch.zeros_like(evals))
    inv_root = torch.where(keep, 1.0 / torch.where(keep, root, torch.ones_like(root)), torch.zeros_like(root))
    return (evecs * inv_root) @ evecs.T, (evecs * root) @ evecs.T, int(keep.sum())


def sums_of_squares(stats: CrossStats, *, center: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column sums of squares of ``X`` and ``Y`` about their means, or about 0 when ``center=False``.

    Parameters
    ----------
    stats : CrossStats
        Computed with ``squares=True``.
    center : bool
        About the column means (the stored sums) or about the origin.

    Returns
    -------
    ssx, ssy : torch.Tensor of shape (d_x,), (d_y,), float64

    Examples
    --------
    >>> import torch
    >>> from latentalign.functional.moments import compute_stats
    >>> X = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    >>> stats = compute_stats(X, X, squares=True)
    >>> [float(s[0]) for s in sums_of_squares(stats)], [float(s[0]) for s in sums_of_squares(stats, center=False)]
    ([2.0, 2.0], [10.0, 10.0])
    """
    ssx, ssy = stats.squares()
    if not center:
        ssx = ssx + stats.n * stats.mean_x * stats.mean_x
        ssy = ssy + stats.n * stats.mean_y * stats.mean_y
    return ssx, ssy


def _safe_std(ss: torch.Tensor, n: int) -> torch.Tensor:
    std = (ss.clamp_min(0.0) / n).sqrt()
    return torch.where(std > _STD_EPS, std, torch.ones_like(std))


def orthogonal_procrustes(
    X: ArrayLike, Y: ArrayLike, *, center: bool = True, scale: bool = False, complement: str = "identity"
) -> tuple[ArrayLike, float]:
    """Best rotation (semi-orthogonal map when ``d_x != d_y``) from paired ``X`` onto ``Y``.

    Parameters
    ----------
    X : array of shape (n, d_x)
    Y : array of shape (n, d_y)
        Paired rows; numpy arrays or torch tensors (not mixed).
    center : bool
        Remove column means first; ``Y`` is then predicted by ``s (X - X.mean(0)) R + Y.mean(0)``.
        ``center=False`` solves ``min ||s X R - Y||`` like :func:`scipy.linalg.orthogonal_procrustes`.
    scale : bool
        Also fit the isotropic scale ``s = trace(S) / ||X_c||_F^2``; otherwise ``s = 1.0``.
    complement : {"identity", "svd"}, default "identity"
        With fewer pairs than dimensions, the directions no pair constrains are rotated as close to the
        identity as the optimum allows (see the module docstring); ``"svd"``: as the thin SVD gives them.

    Returns
    -------
    R : array of shape (d_x, d_y)
        Same kind, dtype and device as ``X``; ``R^T R = I`` when ``d_x >= d_y``, ``R R^T = I`` otherwise.
        Equal to the first columns (rows) of the square solution with the smaller space zero-padded.
    scale : float

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((50, 4))
    >>> Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    >>> R, s = orthogonal_procrustes(X, 2.0 * X @ Q + 1.0, scale=True)
    >>> bool(np.allclose(R, Q)), round(s, 6)
    (True, 2.0)
    """
    stats, spec, _ = paired_stats(X, Y, squares=scale, min_rows=2 if center else 1)
    sol = procrustes_from_stats(stats, center=center, scale=scale, complement=complement)
    return restore(sol["rotation"], spec), float(sol["scale"])


def procrustes_residual(X: ArrayLike, Y: ArrayLike, *, center: bool = True, scale: bool = False) -> float:
    """Residual of the best Procrustes fit: ``min_R ||s X_c R - Y_c||_F`` (zero-padded when dims differ).

    Parameters
    ----------
    X, Y : arrays of shape (n, d_x) and (n, d_y)
    center : bool
        Centre both sides first.
    scale : bool
        Optimise the isotropic scale of ``X`` too.

    Returns
    -------
    float
        ``sqrt(s^2 ||X_c||^2 - 2 s ||M||_* + ||Y_c||^2)`` with ``M = X_c^T Y_c``, in float64. It is a
        difference of sums of squares, so its absolute accuracy is about ``1e-8 ||X_c||_F`` (float64);
        divide by ``||Y_c||_F`` for a relative distance. The scale-free shape distance between two
        representations is :func:`latentalign.functional.similarity.procrustes_distance`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((40, 3))
    >>> Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    >>> procrustes_residual(X, X @ Q + 5.0) < 1e-6
    True
    """
    stats, _, _ = paired_stats(X, Y, squares=True, min_rows=2 if center else 1)
    sol = procrustes_from_stats(stats, center=center, scale=scale)
    ssx, ssy = sums_of_squares(stats, center=center)
    nx, ny, nuc = float(ssx.sum()), float(ssy.sum()), float(sol["singular_values"].sum())
    s = sol["scale"]
    return max(s * s * nx - 2.0 * s * nuc + ny, 0.0) ** 0.5
