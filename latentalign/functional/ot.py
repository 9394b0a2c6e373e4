"""Optimal-transport couplings between two point clouds, on POT (Python Optimal Transport).

Pure functions, array in -> array out (numpy in -> numpy out, torch in -> torch out). The solvers are
POT's; this module chooses their settings, scales the costs, and turns POT's warnings into
:class:`~latentalign.exceptions.ConvergenceWarning` with a message that says what to change.

* :func:`ot_plan` -- linear OT between ``X`` and ``Y`` (same dimension): exact EMD (network simplex) or
  entropic Sinkhorn.
* :func:`gw_plan` -- Gromov-Wasserstein between spaces of *any* dimensions (compares the distances inside
  each space; needs no pairs), optionally fused with a feature cost (fused GW).
* :func:`sinkhorn_projection` -- Sinkhorn without any ``n x m`` matrix (POT's lazy solver, costs
  recomputed in row blocks): returns the barycentric projection and the row-wise best match directly.
* :func:`barycentric_projection` and :func:`plan_matches` turn a coupling into targets and matches.

Cost scaling
------------
With ``normalize_cost="mean"`` (default) costs are divided by their mean over all pairs, so ``reg`` is
relative to the typical cost (``reg=0.05`` means 5 % of the mean cost) whatever the scale of the data.
The mean is computed exactly without forming the ``n x m`` matrix ("sqeuclidean" and "cosine" in closed
form, "euclidean" in row blocks).

Memory and precision
--------------------
* Costs are built in the compute dtype of the inputs: float32 inputs give float32 ``n x m`` matrices
  (4 bytes per entry; 400 MB at n = m = 1e4), never float64.
* Sinkhorn uses POT's classic (matrix-vector) iterations while the kernel ``exp(-M / reg)`` is
  representable in the dtype (``max(M) / reg`` below 50 in float32, 500 in float64) and POT's log-domain
  iterations otherwise, so small ``reg`` does not overflow (``log_domain`` forces either). The log domain
  is about 50 times slower per iteration on CPU.
* Exact EMD: POT's network simplex copies the cost to float64 internally (an ``n x m`` float64 matrix is
  unavoidable for this method; 800 MB at n = m = 1e4) and takes about O(n^2 log n) time.
* Gromov-Wasserstein stores two intra-space matrices (``n x n`` and ``m x m``) and costs O(n^2 m + n m^2)
  per iteration: sample rows for large clouds (:class:`~latentalign.align.ot.OTAligner` does).
  POT's entropic GW runs the classic (non-log) Sinkhorn inside, whose kernel underflows in float32 for
  ``reg`` below about 1e-2 (and in float64 below about 2e-3); such a failure raises instead of returning
  a broken plan. Exact GW (``reg=0``) has no such limit.
* Stopping tolerances default to the dtype (:func:`default_tol`): 1e-8 in float64 but 1e-6 in float32,
  whose marginal errors cannot fall below ~1e-7 (POT's fixed 1e-9 never converges in float32).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch

from latentalign._array import ArrayLike, ArraySpec, check_same_backend, restore
from latentalign._optional import import_optional
from latentalign._validation import check_array, check_choice, check_number, check_pair
from latentalign.exceptions import ConvergenceWarning

__all__ = [
    "METRICS",
    "OT_METHODS",
    "default_tol",
    "cost_matrix",
    "mean_cost",
    "ot_plan",
    "gw_plan",
    "gw_loss",
    "barycentric_projection",
    "plan_matches",
    "sinkhorn_projection",
    "cost_matrix_tensors",
    "ot_plan_tensors",
    "gw_plan_tensors",
    "barycentric_projection_tensors",
    "sinkhorn_projection_tensors",
]

METRICS = ("sqeuclidean", "euclidean", "cosine")
OT_METHODS = ("emd", "sinkhorn")
_NORMALIZE = ("mean", "max", None)
# Largest max(M)/reg for which the classic Sinkhorn kernel exp(-M/reg) stays representable.
_KERNEL_LIMIT = {torch.float32: 50.0, torch.float64: 500.0}
_BLOCK_ROWS = 2048


def _pot() -> Any:
    return import_optional("ot", "ot", purpose="optimal transport")


def default_tol(dtype: torch.dtype) -> float:
    """Stopping tolerance for iterative solvers in ``dtype``: 1e-8 for float64, 1e-5 otherwise.

    float64 uses the tolerance of POT's ``ot.da`` transports. float32 marginal errors stall between 1e-7
    and a few 1e-6 (sums of ``n`` float32 entries; measured 1.0-1.2e-6 after 10,000 Sinkhorn iterations on
    a few hundred sentence embeddings), so POT's default 1e-9 -- and 1e-6 -- may never be met there.

    Examples
    --------
    >>> import torch
    >>> default_tol(torch.float32), default_tol(torch.float64)
    (1e-05, 1e-08)
    """
    return 1e-8 if dtype == torch.float64 else 1e-5


# -- costs -------------------------------------------------------------------------------------------
def cost_matrix_tensors(X: torch.Tensor, Y: torch.Tensor, metric: str) -> torch.Tensor:
    """Cost matrix between the rows of validated tensors, in their dtype: the unchecked core of :func:`cost_matrix`.

    For callers that already hold validated tensors of one dtype and device (no checks, no conversion).

    Examples
    --------
    >>> import torch
    >>> cost_matrix_tensors(torch.zeros(1, 2), torch.tensor([[3.0, 4.0]]), "euclidean").tolist()
    [[5.0]]
    """
    # In place after the one GEMM: the only n x m buffer is the result.
    if metric == "cosine":
        Xn = X / X.norm(dim=1, keepdim=True).clamp_min(1e-12)
        Yn = Y / Y.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (Xn @ Yn.T).neg_().add_(1.0).clamp_min_(0.0)
    M = (X @ Y.T).mul_(-2.0)
    M.add_((X * X).sum(1)[:, None]).add_((Y * Y).sum(1)[None, :]).clamp_min_(0.0)
    return M.sqrt_() if metric == "euclidean" else M


def _mean_cost(X: torch.Tensor, Y: torch.Tensor, metric: str) -> float:
    """Exact mean of the cost over all pairs, without the ``n x m`` matrix."""
    X64, Y64 = X.to(torch.float64), Y.to(torch.float64)
    if metric == "sqeuclidean":
        return float((X64 * X64).sum(1).mean() + (Y64 * Y64).sum(1).mean() - 2 * X64.mean(0) @ Y64.mean(0))
    if metric == "cosine":
        Xn = X64 / X64.norm(dim=1, keepdim=True).clamp_min(1e-12)
        Yn = Y64 / Y64.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return float(1.0 - Xn.mean(0) @ Yn.mean(0))
    total = 0.0
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        total += float(cost_matrix_tensors(X64[start : start + _BLOCK_ROWS], Y64, metric).sum())
    return total / (X.shape[0] * Y.shape[0])


def _validated(X: Any, Y: Any, *, same_dim: bool, min_rows: int = 1) -> tuple[torch.Tensor, torch.Tensor, ArraySpec]:
    Xt, Yt, spec = check_pair(X, Y, paired=False, min_rows=min_rows)
    if same_dim and Xt.shape[1] != Yt.shape[1]:
        raise ValueError(
            f"X has {Xt.shape[1]} features and Y has {Yt.shape[1]}; a linear OT cost compares points of the "
            "same space. Map X into Y's space first, or use gw_plan, which compares spaces of any dimensions."
        )
    return Xt, Yt, spec


def cost_matrix(X: ArrayLike, Y: ArrayLike, *, metric: str = "sqeuclidean") -> ArrayLike:
    """Pairwise cost between the rows of ``X`` and ``Y``, in the inputs' dtype.

    Parameters
    ----------
    X : array of shape (n, d)
    Y : array of shape (m, d)
    metric : {"sqeuclidean", "euclidean", "cosine"}
        Squared Euclidean distance, Euclidean distance, or cosine distance ``1 - cos``.

    Returns
    -------
    array of shape (n, m)
        Same kind, dtype and device as ``X`` (float32 stays float32).

    Examples
    --------
    >>> import numpy as np
    >>> cost_matrix(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])).tolist()
    [[25.0]]
    """
    check_choice(metric, "metric", METRICS)
    Xt, Yt, spec = _validated(X, Y, same_dim=True)
    return restore(cost_matrix_tensors(Xt, Yt, metric), spec)


def mean_cost(X: ArrayLike, Y: ArrayLike, *, metric: str = "sqeuclidean") -> float:
    """Mean cost over all ``n x m`` pairs, computed exactly without forming the cost matrix.

    Examples
    --------
    >>> import numpy as np
    >>> X, Y = np.random.default_rng(0).normal(size=(2, 30, 3))
    >>> bool(np.isclose(mean_cost(X, Y), cost_matrix(X, Y).mean()))
    True
    """
    check_choice(metric, "metric", METRICS)
    Xt, Yt, _ = _validated(X, Y, same_dim=True)
    return _mean_cost(Xt, Yt, metric)


def _cost_scale(M_or_pair: Any, normalize: str | None, metric: str | None = None) -> float:
    if normalize is None:
        return 1.0
    if isinstance(M_or_pair, tuple):
        if metric is None:
            raise TypeError("_cost_scale needs the metric when given the (X, Y) pair instead of a cost matrix.")
        X, Y = M_or_pair
        scale = _mean_cost(X, Y, metric) if normalize == "mean" else _max_cost(X, Y, metric)
    else:
        scale = float(M_or_pair.mean()) if normalize == "mean" else float(M_or_pair.max())
    if not scale > 0.0:
        raise ValueError(
            f"All costs are zero (normalize_cost={normalize!r} divides by them): X and Y hold identical "
            "points. Nothing to transport; check the inputs."
        )
    return scale


def _max_cost(X: torch.Tensor, Y: torch.Tensor, metric: str) -> float:
    best = 0.0
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        best = max(best, float(cost_matrix_tensors(X[start : start + _BLOCK_ROWS], Y, metric).max()))
    return best


def _marginals(a: Any, b: Any, n: int, m: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = []
    for w, size, name in ((a, n, "a"), (b, m, "b")):
        if w is None:
            out.append(torch.full((size,), 1.0 / size, dtype=like.dtype, device=like.device))
            continue
        t = torch.as_tensor(w).to(device=like.device, dtype=like.dtype).reshape(-1)
        if t.shape[0] != size:
            raise ValueError(f"{name} has {t.shape[0]} weights, but there are {size} points on that side.")
        if not bool(torch.isfinite(t).all()) or bool((t < 0).any()) or float(t.sum()) <= 0:
            raise ValueError(f"{name} must hold finite non-negative weights with a positive sum.")
        out.append(t / t.sum())
    return out[0], out[1]


def _check_common(method: str | None, reg: float, normalize_cost: str | None, max_iter: Any, tol: Any) -> None:
    if method is not None:
        check_choice(method, "method", OT_METHODS)
    check_number(reg, "reg", low=0.0)
    check_choice(normalize_cost, "normalize_cost", _NORMALIZE)
    check_number(max_iter, "max_iter", integer=True, low=1, allow_none=True)
    check_number(tol, "tol", low=0.0, low_inclusive=False, allow_none=True)


def _run_pot(call: Callable[[], Any], solver: str) -> tuple[Any, list[str]]:
    """Run a POT call, collecting its warnings instead of letting them print as plain UserWarnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    messages = [str(w.message) for w in caught]
    numerical = [m for m in messages if "numerical error" in m.lower()]
    handled = ("did not converge", "failed to produce")  # checked by the callers from POT's logs
    others = [m for m in messages if m not in numerical and not any(h in m.lower() for h in handled)]
    for message in others:
        warnings.warn(f"POT ({solver}): {message}", ConvergenceWarning, stacklevel=3)
    return result, numerical


# -- linear OT --------------------------------------------------------------------------------------
def ot_plan_tensors(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    method: str,
    reg: float,
    metric: str,
    a: Any = None,
    b: Any = None,
    normalize_cost: str | None = "mean",
    max_iter: int | None = None,
    tol: float | None = None,
    log_domain: bool | None = None,
) -> torch.Tensor:
    """The unchecked core of :func:`ot_plan`: validated tensors of one compute dtype in, the coupling out.

    Same parameters and warnings as :func:`ot_plan`, with ``method``, ``reg`` and ``metric`` required.

    Examples
    --------
    >>> import torch
    >>> X = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    >>> ot_plan_tensors(X, X.flip(0), method="emd", reg=0.0, metric="sqeuclidean").argmax(1).tolist()
    [1, 0]
    """
    ot = _pot()
    n, m = X.shape[0], Y.shape[0]
    M = cost_matrix_tensors(X, Y, metric)
    scale = _cost_scale(M, normalize_cost)
    if scale != 1.0:
        M = M.div_(scale)
    pa, pb = _marginals(a, b, n, m, M)
    tol = default_tol(M.dtype) if tol is None else tol
    if method == "emd":
        if max_iter is None:
            max_iter = int(min(2**31 - 1, max(100_000, 10 * n * m)))
        (P, log), _ = _run_pot(lambda: ot.emd(pa, pb, M, numItermax=max_iter, log=True), "emd")
        if log.get("warning"):
            warnings.warn(
                f"Exact OT (emd) stopped early: {log['warning']} Increase max_iter (now {max_iter}).",
                ConvergenceWarning,
                stacklevel=3,
            )
        return P
    if reg <= 0:
        raise ValueError(f"method='sinkhorn' needs reg > 0, got reg={reg}. Use method='emd' for exact OT.")
    limit = _KERNEL_LIMIT.get(M.dtype, 50.0)
    use_log = (float(M.max()) / reg > limit) if log_domain is None else bool(log_domain)
    if max_iter is None:  # classic iterations are two matrix-vector products; log-domain ones ~50x dearer
        max_iter = 1000 if use_log else 10_000

    def solve(use_log: bool) -> tuple[Any, list[str]]:
        return _run_pot(
            lambda: ot.sinkhorn(
                pa,
                pb,
                M,
                reg,
                method="sinkhorn_log" if use_log else "sinkhorn",
                numItermax=max_iter,
                stopThr=tol,
                log=True,
                warn=False,
            ),
            "sinkhorn",
        )

    (P, log), numerical = solve(use_log)
    broken = bool(numerical) or not math.isfinite(float(P.sum()))  # NaN/inf anywhere reaches the sum
    if broken and not use_log and log_domain is None:
        use_log = True  # the classic kernel under/overflowed: redo the same problem in the log domain
        (P, log), numerical = solve(True)
    elif broken and not use_log:
        raise FloatingPointError(
            f"Sinkhorn's classic iterations under/overflowed at reg={reg} in {M.dtype} (max(M)/reg = "
            f"{float(M.max()) / reg:.3g}). Use log_domain=None (automatic) or True, or a larger reg."
        )
    mass = float(P.sum())
    if not abs(mass - 1.0) < 1e-3:
        raise FloatingPointError(
            f"Sinkhorn returned a broken plan (total mass {mass:.3g} instead of 1) at reg={reg} in {M.dtype}. "
            "Increase reg or pass float64 inputs."
        )
    errors = log.get("err", [])
    last = float(errors[-1]) if len(errors) else math.inf
    if last > tol:
        warnings.warn(
            f"Sinkhorn did not converge in {max_iter} iterations (marginal error {last:.2e} > tol={tol:.1e}, "
            f"reg={reg}, {'log' if use_log else 'classic'} domain). Increase max_iter or reg.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return P


def ot_plan(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    method: str = "sinkhorn",
    reg: float = 0.05,
    metric: str = "sqeuclidean",
    a: ArrayLike | None = None,
    b: ArrayLike | None = None,
    normalize_cost: str | None = "mean",
    max_iter: int | None = None,
    tol: float | None = None,
    log_domain: bool | None = None,
) -> ArrayLike:
    """Optimal coupling between the rows of ``X`` and ``Y`` (same dimension), solved by POT.

    Parameters
    ----------
    X : array of shape (n, d)
    Y : array of shape (m, d)
        ``n`` and ``m`` may differ.
    method : {"sinkhorn", "emd"}
        Entropic OT (``ot.sinkhorn``; log domain when needed, see the module notes) or exact OT
        (``ot.emd``, network simplex).
    reg : float, default 0.05
        Entropic regularisation, relative to the scaled cost (ignored by ``"emd"``).
    metric : {"sqeuclidean", "euclidean", "cosine"}
    a, b : array of shape (n,) and (m,), optional
        Marginal weights (uniform by default); normalised to sum to 1.
    normalize_cost : {"mean", "max", None}
        Divide the cost by its mean or maximum before solving.
    max_iter : int, optional
        Solver iterations (Sinkhorn: 10,000 classic or 1,000 log-domain; EMD: ``max(1e5, 10 n m)``).
    tol : float, optional
        Sinkhorn's marginal-error tolerance; :func:`default_tol` of the dtype by default.
    log_domain : bool, optional
        Force (True) or forbid (False) log-domain Sinkhorn; by default chosen from ``max(M) / reg``.

    Returns
    -------
    array of shape (n, m)
        The coupling ``P`` (non-negative, rows sum to ``a``, columns to ``b``), same kind/dtype as ``X``.

    Warns
    -----
    ConvergenceWarning
        When the solver stops before meeting its tolerance or iteration budget.

    Examples
    --------
    A permutation is recovered exactly by EMD:

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(6, 2))
    >>> perm = np.array([3, 0, 5, 1, 4, 2])
    >>> P = ot_plan(X, X[perm], method="emd")
    >>> bool((P.argmax(1)[perm] == np.arange(6)).all())
    True
    """
    _check_common(method, reg, normalize_cost, max_iter, tol)
    check_choice(metric, "metric", METRICS)
    Xt, Yt, spec = _validated(X, Y, same_dim=True)
    P = ot_plan_tensors(
        Xt,
        Yt,
        method=method,
        reg=float(reg),
        metric=metric,
        a=a,
        b=b,
        normalize_cost=normalize_cost,
        max_iter=max_iter,
        tol=tol,
        log_domain=log_domain,
    )
    return restore(P, spec)


# -- Gromov-Wasserstein ----------------------------------------------------------------------------
def _fit_marginals(G: torch.Tensor, p: torch.Tensor, q: torch.Tensor, sweeps: int = 100) -> torch.Tensor:
    """Turn a starting coupling into one whose marginals are exactly ``p`` and ``q``.

    POT's exact GW insists on a start whose marginals match to 1e-8; plans from entropic solvers (or from
    other data) are a little off. A few row/column normalisations, then the rounding step of Altschuler,
    Weed and Rigollet (2017, Algorithm 2), which lands exactly on the marginals and keeps entries >= 0.
    """
    if bool((G.sum(1) <= 0).any()) or bool((G.sum(0) <= 0).any()):
        raise ValueError("G0 has a row or a column without mass; a starting coupling must cover every point.")
    G = G.clone()
    for _ in range(sweeps):
        G.mul_((p / G.sum(1))[:, None])
        G.mul_((q / G.sum(0))[None, :])
    G.mul_(torch.clamp(p / G.sum(1), max=1.0)[:, None])
    G.mul_(torch.clamp(q / G.sum(0), max=1.0)[None, :])
    err_p, err_q = p - G.sum(1), q - G.sum(0)
    mass = float(err_p.sum())
    if mass > 0:
        G.add_(torch.outer(err_p, err_q) / mass)
    return G


def gw_plan_tensors(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    reg: float,
    metric: str,
    M: torch.Tensor | None = None,
    alpha: float = 0.5,
    a: Any = None,
    b: Any = None,
    normalize_cost: str | None = "mean",
    max_iter: int | None = None,
    tol: float | None = None,
    G0: torch.Tensor | None = None,
) -> torch.Tensor:
    """The unchecked core of :func:`gw_plan`: validated tensors of one compute dtype in, the coupling out.

    Same parameters and errors as :func:`gw_plan`, with ``reg`` and ``metric`` required; ``M`` and ``G0``
    are tensors of shape ``(n, m)`` when given.

    Examples
    --------
    >>> import torch
    >>> X = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    >>> gw_plan_tensors(X, -X.flip(0), reg=0.0, metric="sqeuclidean").argmax(1).tolist()
    [2, 1, 0]
    """
    ot = _pot()
    C1, C2 = cost_matrix_tensors(X, X, metric), cost_matrix_tensors(Y, Y, metric)
    C1 = C1.div_(_cost_scale(C1, normalize_cost))
    C2 = C2.div_(_cost_scale(C2, normalize_cost))
    C1 = (C1 + C1.T).mul_(0.5)  # exact symmetry, so POT takes its symmetric code path
    C2 = (C2 + C2.T).mul_(0.5)
    p, q = _marginals(a, b, X.shape[0], Y.shape[0], C1)
    tol = default_tol(C1.dtype) if tol is None else tol
    fused = M is not None
    if M is not None:
        M = M / _cost_scale(M, normalize_cost)
    if G0 is not None:
        G0 = _fit_marginals(G0.to(C1.dtype), p, q)
    if reg == 0:
        max_iter = 10_000 if max_iter is None else max_iter
        # Each conditional-gradient step solves an exact OT problem; POT's default cap (1e5 simplex
        # iterations) stops those early from a few hundred points on, making the steps inexact.
        emd_iter = int(min(2**31 - 1, max(100_000, 10 * X.shape[0] * Y.shape[0])))
        if fused:
            call = lambda: ot.gromov.fused_gromov_wasserstein(  # noqa: E731
                M,
                C1,
                C2,
                p,
                q,
                loss_fun="square_loss",
                symmetric=True,
                alpha=alpha,
                log=True,
                max_iter=max_iter,
                tol_rel=tol,
                tol_abs=tol,
                G0=G0,
                numItermaxEmd=emd_iter,
            )
        else:
            call = lambda: ot.gromov.gromov_wasserstein(  # noqa: E731
                C1,
                C2,
                p,
                q,
                loss_fun="square_loss",
                symmetric=True,
                log=True,
                max_iter=max_iter,
                tol_rel=tol,
                tol_abs=tol,
                G0=G0,
                numItermaxEmd=emd_iter,
            )
        (P, log), _ = _run_pot(call, "gromov_wasserstein")
        steps = len(log.get("loss", [])) - 1
        if steps >= max_iter:
            warnings.warn(
                f"Gromov-Wasserstein (conditional gradient) stopped at max_iter={max_iter} steps before its "
                f"relative tolerance {tol:.1e}. Increase max_iter.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return P
    max_iter = 1000 if max_iter is None else max_iter
    inner = dict(numItermax=1000, stopThr=tol, warn=False)
    if fused:
        call = lambda: ot.gromov.entropic_fused_gromov_wasserstein(  # noqa: E731
            M,
            C1,
            C2,
            p,
            q,
            loss_fun="square_loss",
            epsilon=reg,
            symmetric=True,
            alpha=alpha,
            max_iter=max_iter,
            tol=tol,
            log=True,
            G0=G0,
            **inner,
        )
    else:
        call = lambda: ot.gromov.entropic_gromov_wasserstein(  # noqa: E731
            C1,
            C2,
            p,
            q,
            loss_fun="square_loss",
            epsilon=reg,
            symmetric=True,
            max_iter=max_iter,
            tol=tol,
            log=True,
            G0=G0,
            **inner,
        )
    (P, log), numerical = _run_pot(call, "entropic_gromov_wasserstein")
    total = float(P.sum()) if bool(torch.isfinite(P).all()) else math.nan
    if numerical or not abs(total - 1.0) < 1e-3:
        smallest = "1e-2" if C1.dtype == torch.float32 else "2e-3"
        raise FloatingPointError(
            f"Entropic Gromov-Wasserstein failed at reg={reg} in {C1.dtype}: POT's inner Sinkhorn kernel "
            f"underflowed (plan mass {total:.3g} instead of 1). Use reg >= {smallest}, float64 inputs, "
            "or reg=0 (exact GW)."
        )
    errors = log.get("err", [])
    last = float(errors[-1]) if len(errors) else math.inf
    if last > tol:
        warnings.warn(
            f"Entropic Gromov-Wasserstein did not converge in {max_iter} iterations (plan change "
            f"{last:.2e} > tol={tol:.1e}). Increase max_iter or reg.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return P


def gw_plan(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    reg: float = 0.0,
    metric: str = "sqeuclidean",
    M: ArrayLike | None = None,
    alpha: float = 0.5,
    a: ArrayLike | None = None,
    b: ArrayLike | None = None,
    normalize_cost: str | None = "mean",
    max_iter: int | None = None,
    tol: float | None = None,
    G0: ArrayLike | None = None,
) -> ArrayLike:
    """Gromov-Wasserstein coupling between point clouds of possibly different dimensions (POT).

    GW compares the pairwise-distance matrices *inside* each space, so it needs no pairs and no common
    coordinates: it is invariant to rotations, reflections and translations of either cloud.

    Parameters
    ----------
    X : array of shape (n, d_x)
    Y : array of shape (m, d_y)
    reg : float, default 0.0
        0 runs exact GW (``ot.gromov.gromov_wasserstein``, conditional gradient with network-simplex
        steps); ``reg > 0`` runs entropic GW (``ot.gromov.entropic_gromov_wasserstein``) with
        ``epsilon=reg`` relative to the scaled intra-space costs.
    metric : {"sqeuclidean", "euclidean", "cosine"}
        Distance used inside each space.
    M : array of shape (n, m), optional
        A feature cost between the two clouds: runs *fused* GW with weight ``alpha`` on the structure
        term and ``1 - alpha`` on ``M`` (scaled like the intra-space costs).
    alpha : float in [0, 1]
        Fused-GW trade-off (only used with ``M``).
    a, b : array, optional
        Marginal weights (uniform by default).
    normalize_cost : {"mean", "max", None}
        Divide each intra-space cost (and ``M``) by its mean or maximum.
    max_iter, tol : optional
        Outer iterations and tolerance (:func:`default_tol` of the dtype by default).
    G0 : array of shape (n, m), optional
        Starting coupling (GW is non-convex: the result depends on it); default ``a b^T``. Its rows and
        columns are rescaled to the marginals first, so a plan from another solver can be passed as is.

    Returns
    -------
    array of shape (n, m)
        The coupling, same kind and dtype as ``X``.

    Raises
    ------
    FloatingPointError
        When POT's entropic solver underflows (``reg`` too small for the dtype; see module notes).

    Examples
    --------
    A rotated and shuffled copy of an asymmetric cloud is matched exactly:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.exponential(size=(40, 3))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    >>> perm = rng.permutation(40)
    >>> P = gw_plan(X, (X @ Q)[perm])
    >>> float((P.argmax(1) == np.argsort(perm)).mean())
    1.0
    """
    _check_common(None, reg, normalize_cost, max_iter, tol)
    check_choice(metric, "metric", METRICS)
    check_number(alpha, "alpha", low=0.0, high=1.0)
    Xt, Yt, spec = _validated(X, Y, same_dim=False, min_rows=2)
    Mt = None
    if M is not None:
        check_same_backend(X=X, M=M)
        Mt, _ = check_array(M, "M")
        if tuple(Mt.shape) != (Xt.shape[0], Yt.shape[0]):
            raise ValueError(
                f"M must have shape (n, m) = ({Xt.shape[0]}, {Yt.shape[0]}), one cost per pair of rows of X "
                f"and Y, got {tuple(Mt.shape)}."
            )
        Mt = Mt.to(device=Xt.device, dtype=Xt.dtype)
    G0t = None
    if G0 is not None:
        check_same_backend(X=X, G0=G0)
        G0t, _ = check_array(G0, "G0")
        if tuple(G0t.shape) != (Xt.shape[0], Yt.shape[0]) or bool((G0t < 0).any()):
            raise ValueError(
                f"G0 must be a non-negative coupling of shape ({Xt.shape[0]}, {Yt.shape[0]}), got shape "
                f"{tuple(G0t.shape)}."
            )
        G0t = G0t.to(device=Xt.device, dtype=Xt.dtype)
    P = gw_plan_tensors(
        Xt,
        Yt,
        reg=float(reg),
        metric=metric,
        M=Mt,
        alpha=float(alpha),
        a=a,
        b=b,
        normalize_cost=normalize_cost,
        max_iter=max_iter,
        tol=tol,
        G0=G0t,
    )
    return restore(P, spec)


def gw_loss(
    X: ArrayLike,
    Y: ArrayLike,
    P: ArrayLike,
    *,
    metric: str = "sqeuclidean",
    normalize_cost: str | None = "mean",
) -> float:
    """Gromov-Wasserstein discrepancy of a given coupling ``P``: the objective :func:`gw_plan` minimises.

    ``sum_{i,j,k,l} (C1[i,k] - C2[j,l])^2 P[i,j] P[k,l]`` with the intra-space costs scaled as in
    :func:`gw_plan` (POT's ``ot.gromov.gwloss``). Use it to compare candidate matchings, e.g. a known
    dictionary against what GW finds: when the true matching costs more than the GW solution, the two
    spaces are not isometric enough for GW to recover it.

    Parameters
    ----------
    X : array of shape (n, d_x)
    Y : array of shape (m, d_y)
    P : array of shape (n, m)
        A coupling (total mass 1, e.g. a permutation divided by ``n``).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(10, 3))
    >>> gw_loss(X, X[:, ::-1], np.eye(10) / 10) < 1e-12
    True
    """
    ot = _pot()
    check_choice(metric, "metric", METRICS)
    check_choice(normalize_cost, "normalize_cost", _NORMALIZE)
    Xt, Yt, _ = _validated(X, Y, same_dim=False, min_rows=2)
    check_same_backend(X=X, P=P)
    Pt, _ = check_array(P, "P")
    if tuple(Pt.shape) != (Xt.shape[0], Yt.shape[0]):
        raise ValueError(
            f"P must have shape (n, m) = ({Xt.shape[0]}, {Yt.shape[0]}), one entry per pair of rows of X and Y, "
            f"got {tuple(Pt.shape)}."
        )
    X64, Y64, P64 = Xt.to(torch.float64), Yt.to(torch.float64), Pt.to(device=Xt.device, dtype=torch.float64)
    C1, C2 = cost_matrix_tensors(X64, X64, metric), cost_matrix_tensors(Y64, Y64, metric)
    C1, C2 = C1 / _cost_scale(C1, normalize_cost), C2 / _cost_scale(C2, normalize_cost)
    constC, hC1, hC2 = ot.gromov.init_matrix(C1, C2, P64.sum(1), P64.sum(0), "square_loss")
    return float(ot.gromov.gwloss(constC, hC1, hC2, P64))


# -- from a coupling to targets ------------------------------------------------------------------
def barycentric_projection_tensors(P: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """The unchecked core of :func:`barycentric_projection` (``P`` non-negative; ``Y`` cast to its dtype).

    Raises ``ValueError`` when a row of ``P`` has no mass.

    Examples
    --------
    >>> import torch
    >>> P = torch.tensor([[0.5, 0.0], [0.25, 0.25]])
    >>> barycentric_projection_tensors(P, torch.tensor([[0.0], [2.0]])).ravel().tolist()
    [0.0, 1.0]
    """
    mass = P.sum(1, keepdim=True)
    if bool((mass <= 0).any()):
        empty = int((mass.reshape(-1) <= 0).nonzero()[0])
        raise ValueError(
            f"Row {empty} of the coupling has no mass, so it has no barycentric target. Use a coupling "
            "whose rows all carry mass (uniform marginals do)."
        )
    return (P @ Y.to(P.dtype)) / mass


def barycentric_projection(P: ArrayLike, Y: ArrayLike) -> ArrayLike:
    """Send each source row to the coupling-weighted mean of the target rows: ``diag(P 1)^-1 P Y``.

    This is the map POT's ``ot.da`` transports use for training points.

    Parameters
    ----------
    P : array of shape (n, m)
        A coupling (e.g. from :func:`ot_plan`); every row needs positive mass.
    Y : array of shape (m, d)

    Returns
    -------
    array of shape (n, d)

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[0.5, 0.0], [0.25, 0.25]])
    >>> barycentric_projection(P, np.array([[0.0], [2.0]])).ravel().tolist()
    [0.0, 1.0]
    """
    check_same_backend(P=P, Y=Y)
    Pt, spec = check_array(P, "P")
    Yt, _ = check_array(Y, "Y")
    if Pt.shape[1] != Yt.shape[0]:
        raise ValueError(
            f"P has {Pt.shape[1]} columns but Y has {Yt.shape[0]} rows; P must be the coupling between the "
            "source rows and exactly these target rows."
        )
    if bool((Pt < 0).any()):
        raise ValueError("P has negative entries; a coupling is non-negative.")
    return restore(barycentric_projection_tensors(Pt.to(spec.compute_dtype), Yt.to(device=Pt.device)), spec)


def plan_matches(P: ArrayLike) -> ArrayLike:
    """Index of the target row carrying most of each source row's mass (``argmax`` per row).

    Examples
    --------
    >>> import numpy as np
    >>> plan_matches(np.array([[0.1, 0.4], [0.3, 0.2]])).tolist()
    [1, 0]
    """
    Pt, spec = check_array(P, "P")
    out = Pt.argmax(1)
    return out if spec.backend == "torch" else out.cpu().numpy()


# -- memory-lean Sinkhorn ----------------------------------------------------------------------------
def sinkhorn_projection_tensors(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    reg: float,
    metric: str,
    batch_size: int,
    targets: torch.Tensor | None = None,
    normalize_cost: str | None = "mean",
    max_iter: int | None = None,
    tol: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The unchecked core of :func:`sinkhorn_projection`: (barycentric targets, row-wise best matches).

    ``targets`` (rows aligned with ``Y``'s) are averaged instead of ``Y`` when given, e.g. the target
    rows in another space than the one the cost is computed in.

    Examples
    --------
    >>> import torch
    >>> X = torch.tensor([[0.0], [10.0]], dtype=torch.float64)
    >>> proj, best = sinkhorn_projection_tensors(X, X.flip(0), reg=0.01, metric="sqeuclidean", batch_size=1)
    >>> best.tolist(), [round(v, 6) for v in proj.ravel().tolist()]
    ([1, 0], [0.0, 10.0])
    """
    ot = _pot()
    if reg <= 0:
        raise ValueError(f"Sinkhorn needs reg > 0, got reg={reg}.")
    scale = _cost_scale((X, Y), normalize_cost, metric)
    reg_eff = reg * scale  # dividing the cost by `scale` is the same as multiplying reg by it
    max_iter = 1000 if max_iter is None else max_iter
    tol = default_tol(X.dtype) if tol is None else tol
    a = torch.full((X.shape[0],), 1.0 / X.shape[0], dtype=X.dtype, device=X.device)
    b = torch.full((Y.shape[0],), 1.0 / Y.shape[0], dtype=X.dtype, device=X.device)
    pot_metric = "sqeuclidean" if metric == "sqeuclidean" else metric
    Xs, Ys = X, Y
    if metric == "cosine":  # POT's lazy path uses scipy's cosine; unit rows + sqeuclidean/2 is the same cost
        Xs = X / X.norm(dim=1, keepdim=True).clamp_min(1e-12)
        Ys = Y / Y.norm(dim=1, keepdim=True).clamp_min(1e-12)
        pot_metric, reg_eff = "sqeuclidean", 2.0 * reg_eff
    (f, g, log), _ = _run_pot(
        lambda: ot.bregman.empirical_sinkhorn(
            Xs,
            Ys,
            reg_eff,
            a=a,
            b=b,
            metric=pot_metric,
            numIterMax=max_iter,
            stopThr=tol,
            isLazy=True,
            batchSize=batch_size,
            log=True,
            warn=False,
        ),
        "empirical_sinkhorn",
    )
    errors = log.get("err", [])
    last = float(errors[-1]) if len(errors) else math.inf
    if last > tol:
        warnings.warn(
            f"Sinkhorn (lazy, batch_size={batch_size}) did not converge in {max_iter} iterations "
            f"(marginal error {last:.2e} > tol={tol:.1e}, reg={reg}). Increase max_iter or reg.",
            ConvergenceWarning,
            stacklevel=3,
        )
    targets = Y if targets is None else targets
    out = torch.empty((X.shape[0], targets.shape[1]), dtype=X.dtype, device=X.device)
    best = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    f, g = f.to(X.dtype), g.to(X.dtype)
    for start in range(0, X.shape[0], batch_size):
        stop = start + batch_size
        logits = f[start:stop, None] + g[None, :] - cost_matrix_tensors(Xs[start:stop], Ys, pot_metric) / reg_eff
        logits = logits - logits.max(1, keepdim=True).values
        weights = logits.exp_()
        out[start:stop] = (weights @ targets.to(X.dtype)) / weights.sum(1, keepdim=True)
        best[start:stop] = weights.argmax(1)
    return out, best


def sinkhorn_projection(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    reg: float = 0.05,
    metric: str = "sqeuclidean",
    batch_size: int = 1024,
    normalize_cost: str | None = "mean",
    max_iter: int | None = None,
    tol: float | None = None,
) -> tuple[ArrayLike, ArrayLike]:
    """Entropic OT without an ``n x m`` matrix: barycentric targets and best matches in row blocks.

    Runs POT's lazy log-domain solver (``ot.bregman.empirical_sinkhorn(..., isLazy=True)``), which
    recomputes the cost in blocks of ``batch_size`` rows every iteration (memory O((n + m) batch_size),
    time O(n m d) per iteration), then forms ``diag(P 1)^-1 P Y`` block by block from the dual potentials.

    Parameters
    ----------
    X : array of shape (n, d)
    Y : array of shape (m, d)
    reg, metric, normalize_cost, max_iter, tol
        As in :func:`ot_plan`.
    batch_size : int, default 1024
        Rows per block.

    Returns
    -------
    projection : array of shape (n, d)
        Same as ``barycentric_projection(ot_plan(X, Y, method="sinkhorn"), Y)``.
    matches : array of shape (n,)
        ``argmax`` of each coupling row (integer indices into ``Y``).
    """
    _check_common("sinkhorn", reg, normalize_cost, max_iter, tol)
    check_choice(metric, "metric", METRICS)
    check_number(batch_size, "batch_size", integer=True, low=1)
    Xt, Yt, spec = _validated(X, Y, same_dim=True)
    proj, best = sinkhorn_projection_tensors(
        Xt,
        Yt,
        reg=float(reg),
        metric=metric,
        batch_size=int(batch_size),
        normalize_cost=normalize_cost,
        max_iter=max_iter,
        tol=tol,
    )
    return restore(proj, spec), (best if spec.backend == "torch" else best.cpu().numpy())
