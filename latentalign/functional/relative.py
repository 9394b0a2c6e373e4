"""Relative projection: represent each embedding by its similarities to a set of anchors.

Moschella et al. (ICLR 2023, "Relative representations enable zero-shot latent space communication")
represent a point ``x`` by ``[sim(x, a_1), ..., sim(x, a_k)]`` for ``k`` anchor embeddings ``a_j``. With
cosine similarity the representation does not change when ``x`` and the anchors are rotated, reflected or
isotropically rescaled together, so two models that embed the same anchors can be compared and stitched.

This module is pure maths (array in, array out, numpy or torch):

* :func:`relative_projection` computes the ``(n, k)`` relative coordinates in row chunks, so the output is
  the only allocation that grows with ``n * k`` (no ``n x n`` and no ``n x k x d`` intermediates);
* :func:`relative_inverse` maps relative coordinates back to absolute coordinates of the anchors' space
  (least squares, exact in the cases its docstring lists).

Similarities (larger is always "closer", so that several of them can be aggregated):

========== ===================================================== ==========================================
metric     value for a point ``x`` and an anchor ``a``           unchanged when ``x`` and anchors undergo
========== ===================================================== ==========================================
cosine     ``<x, a> / (||x|| ||a||)`` in [-1, 1]                 rotations/reflections, isotropic scaling
angular    ``1 - arccos(cosine) / pi`` in [0, 1]                 same as cosine (a monotone map of it)
euclidean  ``-||x - a||_2`` (negative distance)                  rotations/reflections and translations
l1         ``-||x - a||_1``                                      translations, coordinate permutations and
                                                                 sign flips
linf       ``-||x - a||_inf``                                    same as l1
change_of  coordinates ``c`` of ``x`` in the anchor basis:           every invertible linear map (when the
_basis     ``c = argmin ||x - c A||`` (minimum norm), i.e.         anchors span the space), translations
           ``x pinv(A)``                                         with centring
========== ===================================================== ==========================================

``change_of_basis`` treats the anchors as a (possibly overcomplete) basis, as in the follow-ups of relative
representations that replace similarities by a change of basis: a point is described by the coefficients
that rebuild it from the anchors. When the (centred) anchors span the space, ``c A = x`` has exact
solutions and the minimum-norm one is unchanged when ``x`` and the anchors undergo any invertible linear map
``x -> x M`` (the solution set of ``c A M = x M`` is that of ``c A = x``), a wider invariance than the
cosine's; with fewer anchors it is the least-squares fit within their span. Its inverse is exact and linear:
``x = c A``.

Several metrics (a sequence, e.g. ``("cosine", "euclidean", "l1", "linf")``) build the product space of
Cannistraci et al. (ICLR 2024, "From Bricks to Bridges: Product of Invariances to Enhance Latent Space
Communication"): one relative block per metric, aggregated without learned parameters in one of the two
ways the paper (and its reference code in ``latentis``) uses:

* ``aggregate="concat"``: the blocks side by side, ``(n, len(metrics) * k)``, raw values (the paper's
  "Concat" aggregation; a downstream head normalises them). The distance blocks (tens) then dwarf the
  cosine block (at most 1) in any similarity computed on whole rows;
* ``aggregate="concat_norm"``: each block standardised per row across its ``k`` anchors (a LayerNorm
  without learned affine, ``eps = 1e-5``), then side by side; every block weighs the same;
* ``aggregate="sum"``: each block is standardised per row across its ``k`` anchors (a LayerNorm without
  learned affine, ``eps = 1e-5``) and the blocks are summed, ``(n, k)`` (the paper's "aggregation by sum",
  with its per-subspace normalisation layers at their initial, identity-affine state). The per-row
  standardisation also makes the distance blocks invariant to isotropic rescaling.

The learned aggregations of the paper (self-attention, MLP + sum) need training and are left to the user.

ASIF-style sparsification (Norelli et al., NeurIPS 2023, "ASIF: Coupled data turns unimodal models to
multimodal without training"): with ``top_k`` set, every row keeps its ``top_k`` largest values and the
others become exactly zero; the kept values are raised to ``power`` (sign-preserving:
``sign(s) * |s| ** power``, so negative similarities keep their order instead of becoming NaN) and the
row is rescaled to unit L2 norm. With ``top_k=None`` and ``power != 1`` the power and the renormalisation
apply to the full row; with ``top_k=None`` and ``power=1`` the raw similarities are returned.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, TypeAlias

import torch

from latentalign._array import ArrayLike, restore
from latentalign._validation import check_array, check_choice, check_number, check_same_backend
from latentalign.exceptions import IllConditionedWarning
from latentalign.functional.norms import row_norms

__all__ = [
    "RELATIVE_METRICS",
    "INVERTIBLE_METRICS",
    "relative_projection",
    "relative_inverse",
    "parse_metrics",
    "anchor_basis",
]

#: Similarities accepted by :func:`relative_projection`.
RELATIVE_METRICS: tuple[str, ...] = ("cosine", "angular", "euclidean", "l1", "linf", "change_of_basis")
#: Metrics whose relative coordinates :func:`relative_inverse` can map back (preference order).
INVERTIBLE_METRICS: tuple[str, ...] = ("change_of_basis", "euclidean", "cosine", "angular")
AGGREGATIONS: tuple[str, ...] = ("concat", "concat_norm", "sum")

MetricSpec: TypeAlias = str | Sequence[str]

_LAYER_NORM_EPS = 1e-5
# Elements of the per-chunk working set (chunk rows x (k + d)); 2**25 float32 values = 128 MiB.
_CHUNK_BUDGET = 2**25
# Squared distances below this fraction of ||x||^2 + ||a||^2 are recomputed exactly (see _refine_close_pairs_).
_CLOSE = 1e-2
_REFINE_BATCH = 2**16


# -- parameter parsing --------------------------------------------------------------------------------
def parse_metrics(metric: Any) -> tuple[str, ...]:
    """Return ``metric`` as a tuple of metric names (one name, or several for a product space).

    Examples
    --------
    >>> parse_metrics("cosine")
    ('cosine',)
    >>> parse_metrics(["cosine", "l1"])
    ('cosine', 'l1')
    """
    names = (metric,) if isinstance(metric, str) else metric
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(
            f"metric must be a name or a sequence of names from {list(RELATIVE_METRICS)}, got {metric!r}."
        ) from None
    if not names:
        raise ValueError(f"metric is an empty sequence; give at least one of {list(RELATIVE_METRICS)}.")
    for name in names:
        check_choice(name, "metric", RELATIVE_METRICS)
    if len(set(names)) != len(names):
        raise ValueError(
            f"metric={list(names)} repeats a metric; each block of the product space must use a different one."
        )
    return names


def check_relative_options(
    metrics: tuple[str, ...], n_anchors: int, top_k: Any, power: Any, aggregate: Any, chunk_size: Any
) -> int:
    """Validate the scalar options; return the number of output columns."""
    check_choice(aggregate, "aggregate", AGGREGATIONS)
    n_out = n_anchors if aggregate == "sum" else n_anchors * len(metrics)
    check_number(top_k, "top_k", integer=True, low=1, allow_none=True)
    if top_k is not None and top_k > n_out:
        raise ValueError(
            f"top_k={top_k} exceeds the {n_out} relative coordinates of each row ({n_anchors} anchors"
            f"{f' x {len(metrics)} metrics' if n_out != n_anchors else ''}); use top_k <= {n_out} or None."
        )
    check_number(power, "power", low=0, low_inclusive=False)
    check_number(chunk_size, "chunk_size", integer=True, low=1, allow_none=True)
    return n_out


def check_n_anchors(n_anchors: int, name: str = "anchors") -> None:
    """Raise unless there are at least 2 anchors (one similarity carries no relative information)."""
    if n_anchors < 2:
        raise ValueError(
            f"{name} has {n_anchors} row(s), but relative projection needs at least 2 anchors (n_samples = "
            f"{n_anchors}; a single similarity carries no relative information). Pass more anchor rows; hundreds are typical, "
            "see latentalign.anchors.select_anchors."
        )


def _resolve_center(center: Any, A: torch.Tensor) -> torch.Tensor | None:
    """``None``/``False``: no centring; ``True``/``"anchors"``: the anchors' mean; an array: that vector."""
    if center is None or center is False:
        return None
    if center is True or (isinstance(center, str) and center == "anchors"):
        return A.mean(0)
    if isinstance(center, str):
        raise ValueError(f"center={center!r} is not supported; use None, True, 'anchors' or a vector.")
    vec, _ = check_array(_as_row(center), "center")
    if vec.shape != (1, A.shape[1]):
        raise ValueError(
            f"center must be a vector of length {A.shape[1]} (the number of features), got shape "
            f"{tuple(vec.shape[1:]) if vec.shape[0] == 1 else tuple(vec.shape)}."
        )
    return vec[0].to(device=A.device, dtype=A.dtype)


def _as_row(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.reshape(1, -1) if v.ndim == 1 else v
    import numpy as np

    arr = np.asarray(v)
    return arr.reshape(1, -1) if arr.ndim == 1 else arr


def _zero_rows(A: torch.Tensor) -> list[int]:
    return torch.nonzero(row_norms(A) == 0).flatten().tolist()


def check_anchor_norms(A: torch.Tensor, metrics: tuple[str, ...], name: str = "anchors") -> None:
    """Raise when a (centred) anchor has zero norm and a metric is angle-based (cosine or angular)."""
    if not any(m in ("cosine", "angular") for m in metrics):
        return
    zero = _zero_rows(A)
    if zero:
        shown = zero[:10]
        raise ValueError(
            f"{name} row(s) {shown}{' ...' if len(zero) > 10 else ''} have zero norm (after centring, if "
            "any); their cosine similarity to any point is undefined. Remove those anchors, or use "
            "center=None if centring made them zero (an anchor equal to the anchors' mean)."
        )


# -- the projection -----------------------------------------------------------------------------------
def relative_projection(
    X: ArrayLike,
    anchors: ArrayLike,
    *,
    metric: MetricSpec = "cosine",
    top_k: int | None = None,
    power: float = 1.0,
    center: Any = None,
    aggregate: str = "concat",
    chunk_size: int | None = None,
) -> ArrayLike:
    """Similarities of every row of ``X`` to every anchor.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Embeddings to project (numpy array or torch tensor).
    anchors : array of shape (n_anchors, n_features)
        Anchor embeddings from the same space as ``X`` (same backend and device); at least 2.
    metric : str or sequence of str, default="cosine"
        One of ``"cosine"``, ``"angular"``, ``"euclidean"``, ``"l1"``, ``"linf"``, ``"change_of_basis"`` (see the module
        docstring for the exact formulas and invariances), or several of them for a product space.
    top_k : int, optional
        ASIF sparsification: keep the ``top_k`` largest values of each row, zero the rest, then apply
        ``power`` and rescale each row to unit L2 norm.
    power : float, default=1.0
        Exponent applied as ``sign(s) * |s| ** power`` to the kept values (must be > 0).
    center : None, bool, "anchors" or array of shape (n_features,), default=None
        Subtract a vector from ``X`` and the anchors first: ``True`` or ``"anchors"`` subtracts the
        anchors' mean (Moschella et al.'s centring), an array subtracts that vector, ``None``/``False``
        nothing. Distances are translation invariant, so centring only changes the angle-based metrics.
    aggregate : {"concat", "concat_norm", "sum"}, default="concat"
        How a product of several metrics is combined (see the module docstring); ignored for one metric.
    chunk_size : int, optional
        Rows processed at a time; by default chosen to keep the working set near 128 MiB of float32.

    Returns
    -------
    array of shape (n_samples, n_anchors) or (n_samples, len(metric) * n_anchors)
        Same kind (numpy/torch), dtype and device as ``X``. Computed in float32 (float64 for float64
        input). Zero-norm rows of ``X`` get cosine similarity 0 to every anchor (with a warning).

    Raises
    ------
    ValueError
        Fewer than 2 anchors, feature counts that differ, zero-norm anchors for an angle-based metric,
        ``top_k`` larger than the row length, or an unknown metric or aggregation.

    Notes
    -----
    Euclidean distances use ``||x||^2 + ||a||^2 - 2 <x, a>`` (one matrix product per chunk, as
    ``torch.cdist`` and scikit-learn do), after shifting both sides by the anchors' mean to limit
    cancellation; the few pairs whose squared distance is below 1 % of ``||x||^2 + ||a||^2`` (points at
    or near an anchor) are recomputed as ``||x - a||`` directly, so a point equal to an anchor gets
    distance 0 and no distance carries more than ~1e-5 relative error in float32. ``l1`` and ``linf`` use
    ``torch.cdist`` per chunk (no BLAS, so they are much slower).

    Examples
    --------
    Cosine relative coordinates do not change under a rotation and rescaling of the whole space:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, A = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    >>> R1 = relative_projection(X, A)
    >>> R2 = relative_projection(3.0 * X @ Q, 3.0 * A @ Q)
    >>> R1.shape, bool(np.allclose(R1, R2))
    ((5, 4), True)
    """
    check_same_backend(X=X, anchors=anchors)
    Xt, spec = check_array(X, "X")
    At, _ = check_array(anchors, "anchors")
    check_n_anchors(At.shape[0])
    if At.shape[1] != Xt.shape[1]:
        raise ValueError(
            f"anchors have {At.shape[1]} features but X has {Xt.shape[1]}; the anchors must be embeddings "
            "from the same model (and layer) as X."
        )
    if At.device != Xt.device:
        raise ValueError(f"X is on {Xt.device} and anchors on {At.device}; move both to the same device first.")
    metrics = parse_metrics(metric)
    check_relative_options(metrics, At.shape[0], top_k, power, aggregate, chunk_size)
    dtype = spec.compute_dtype
    At = At.to(dtype)
    shift = _resolve_center(center, At)
    A_c = At if shift is None else At - shift
    check_anchor_norms(A_c, metrics)
    out = project(
        Xt.to(dtype),
        A_c,
        metrics,
        shift=shift,
        top_k=top_k,
        power=power,
        aggregate=aggregate,
        chunk_size=chunk_size,
    )
    return restore(out, spec)


def project(
    X: torch.Tensor,
    A_c: torch.Tensor,
    metrics: tuple[str, ...],
    *,
    shift: torch.Tensor | None,
    top_k: int | None,
    power: float,
    aggregate: str,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Tensor-level projection on validated inputs (used by :class:`RelativeProjection`).

    ``X`` (raw, not centred) and the already centred anchors ``A_c`` share dtype and device; ``shift``
    is subtracted from each chunk of ``X`` (``None``: no centring). Returns a new ``(n, n_out)`` tensor.
    """
    n, d = X.shape
    k = A_c.shape[0]
    n_out = k if aggregate == "sum" else k * len(metrics)
    out = torch.empty((n, n_out), dtype=A_c.dtype, device=A_c.device)
    if n == 0:
        return out
    rows = chunk_size or max(1, min(n, _CHUNK_BUDGET // (n_out + d + 1)))
    prepared = {m: _prepare(m, A_c) for m in metrics}
    zero_rows = torch.zeros((), dtype=torch.int64, device=A_c.device)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        xc = X[start:stop]
        if shift is not None:
            xc = xc - shift
        target = out[start:stop]
        if len(metrics) == 1:
            zero_rows += _fill(metrics[0], xc, prepared[metrics[0]], target)
        else:
            for b, m in enumerate(metrics):
                block = torch.empty((stop - start, k), dtype=out.dtype, device=out.device)
                zero_rows += _fill(m, xc, prepared[m], block)
                if aggregate != "concat":
                    block = torch.nn.functional.layer_norm(block, (k,), eps=_LAYER_NORM_EPS)
                if aggregate != "sum":
                    target[:, b * k : (b + 1) * k] = block
                else:
                    if b == 0:
                        target.copy_(block)
                    else:
                        target += block
        if top_k is not None or power != 1.0:
            _sparsify_(target, top_k, power)
    n_zero = int(zero_rows)
    if n_zero:
        warnings.warn(
            f"{n_zero} row(s) of X have zero norm (after centring, if any); their cosine similarity to "
            "every anchor was set to 0.",
            UserWarning,
            stacklevel=3,
        )
    return out


def _prepare(metric: str, A_c: torch.Tensor) -> dict[str, torch.Tensor]:
    if metric in ("cosine", "angular"):
        return {"unit": A_c / row_norms(A_c, keepdim=True).to(A_c.dtype)}
    if metric == "euclidean":
        mid = A_c.mean(0)
        A_s = A_c - mid
        return {"mid": mid, "A": A_s, "sq": torch.linalg.vector_norm(A_s, dim=1).square()}
    if metric == "change_of_basis":
        return {"P": anchor_basis(A_c)}
    return {"A": A_c}


def anchor_basis(A_c: torch.Tensor) -> torch.Tensor:
    """``pinv(A_c)`` of shape ``(d, k)``: ``x @ anchor_basis(A_c)`` are the coordinates of ``x`` in the anchors.

    Computed in float64 (SVD based, singular values below ``max(k, d) * eps * s_max`` dropped) and
    returned in ``A_c``'s dtype.

    Examples
    --------
    >>> import torch
    >>> A = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    >>> torch.tensor([[3.0, 2.0]]) @ anchor_basis(A)  # 1 * (1, 0) + 2 * (1, 1)
    tensor([[1., 2.]])
    """
    return torch.linalg.pinv(A_c.to(torch.float64)).to(A_c.dtype)


def _fill(metric: str, xc: torch.Tensor, prep: dict[str, torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """Write the ``metric`` block of chunk ``xc`` into ``out``; return the count of zero-norm rows."""
    if metric in ("cosine", "angular"):
        # normalising the (chunk x d) rows is cheaper than dividing the (chunk x k) output when d < k
        norms = row_norms(xc, keepdim=True).to(xc.dtype)
        torch.mm(xc / norms.clamp_min(torch.finfo(out.dtype).tiny), prep["unit"].T, out=out)
        if metric == "angular":
            out.clamp_(-1.0, 1.0).arccos_().mul_(-1.0 / math.pi).add_(1.0)
        return (norms == 0).sum()
    if metric == "change_of_basis":
        torch.mm(xc, prep["P"], out=out)
        return torch.zeros((), dtype=torch.int64, device=out.device)
    if metric == "euclidean":
        xs = xc - prep["mid"]
        x_sq = torch.linalg.vector_norm(xs, dim=1, keepdim=True).square()
        torch.addmm(prep["sq"], xs, prep["A"].T, beta=1.0, alpha=-2.0, out=out)
        out.add_(x_sq).clamp_min_(0.0)
        _refine_close_pairs_(out, xs, prep["A"], x_sq, prep["sq"])
        out.sqrt_().neg_()
        return torch.zeros((), dtype=torch.int64, device=out.device)
    p = 1.0 if metric == "l1" else float("inf")
    torch.neg(torch.cdist(xc, prep["A"], p=p), out=out)
    return torch.zeros((), dtype=torch.int64, device=out.device)


def _refine_close_pairs_(
    d2: torch.Tensor, xs: torch.Tensor, A: torch.Tensor, x_sq: torch.Tensor, a_sq: torch.Tensor
) -> None:
    """Recompute, as ``||x - a||^2`` directly, the squared distances the dot-product form gets wrong.

    ``||x||^2 + ||a||^2 - 2 <x, a>`` has an absolute error of about ``eps * (||x||^2 + ||a||^2)``, so a
    point at (or near) an anchor gets a distance of ``sqrt(eps) * ||x||`` instead of 0. Entries below
    ``_CLOSE * (||x||^2 + ||a||^2)`` (rare after centring, except for near-duplicates) are recomputed
    exactly, which bounds the relative error of every squared distance by about ``eps / _CLOSE``.
    """
    # cheap pre-filter (one reduction): only rows whose nearest anchor could be "close" get the full test
    suspect = d2.amin(1) <= _CLOSE * (x_sq[:, 0] + a_sq.max())
    if not bool(suspect.any()):
        return
    sub = torch.nonzero(suspect).flatten()
    close = d2[sub] <= _CLOSE * (x_sq[sub] + a_sq)
    rows, cols = torch.nonzero(close, as_tuple=True)
    rows = sub[rows]
    for start in range(0, rows.numel(), _REFINE_BATCH):
        r, c = rows[start : start + _REFINE_BATCH], cols[start : start + _REFINE_BATCH]
        d2[r, c] = torch.linalg.vector_norm(xs[r] - A[c], dim=1).square()


def _sparsify_(Z: torch.Tensor, top_k: int | None, power: float) -> None:
    """In place: keep the top_k largest per row, signed power, unit L2 rows."""
    if top_k is not None and top_k < Z.shape[1]:
        values, index = torch.topk(Z, top_k, dim=1, largest=True, sorted=False)
        if power != 1.0:
            values = values.sign() * values.abs().pow(power)
        Z.zero_()
        Z.scatter_(1, index, values)
    elif power != 1.0:
        Z.copy_(Z.sign() * Z.abs().pow(power))
    Z.div_(torch.linalg.vector_norm(Z, dim=1, keepdim=True).clamp_min(torch.finfo(Z.dtype).tiny))


# -- the inverse ----------------------------------------------------------------------------------------
class Decoder:
    """Least-squares decoder from relative coordinates of one metric back to absolute coordinates.

    Built once from centred anchors ``A_c`` (k, d) in float64; :meth:`decode` maps an ``(n, k)`` block.
    ``rank`` is the numerical rank of the matrix the least squares problem uses (``d`` means exact).
    """

    def __init__(self, A_c: torch.Tensor, metric: str, scale: float | None = None) -> None:
        if metric not in INVERTIBLE_METRICS:
            raise NotImplementedError(
                f"relative coordinates of metric {metric!r} have no linear inverse; inverse maps exist for "
                f"{list(INVERTIBLE_METRICS)}."
            )
        A = A_c.to(torch.float64)
        self.metric = metric
        self.n_features = A.shape[1]
        if metric == "change_of_basis":
            M = A
            self.basis = A  # (k, d): coordinates times the anchors rebuild the point
        elif metric == "euclidean":
            self.mid = A.mean(0)
            M = A - self.mid
            self.sq = torch.linalg.vector_norm(M, dim=1).square()
        else:
            norms = row_norms(A).to(A.dtype)
            M = A / norms[:, None]
            self.scale = float(norms.mean()) if scale is None else float(scale)
        s = torch.linalg.svdvals(M)
        tol = float(s.max()) * max(M.shape) * torch.finfo(A_c.dtype).eps if s.numel() else 0.0
        self.rank = int((s > tol).sum())
        # pinv is the minimum-norm least-squares solution (SVD based; not the lstsq driver that
        # truncates rank at ~1.2e-7 x n in float32).
        self.pinv_T = torch.linalg.pinv(M).T.contiguous()  # (k, d)

    def warn_if_underdetermined(self, stacklevel: int = 3) -> None:
        if self.rank < self.n_features:
            need = "anchors" if self.metric != "euclidean" else "anchors (not all on one hyperplane)"
            warnings.warn(
                f"The anchors span only {self.rank} of {self.n_features} dimensions, so the inverse of "
                f"{self.metric} relative coordinates is a least-squares approximation within their span. "
                f"Use at least {self.n_features + (self.metric == 'euclidean')} {need} in general position "
                "for an exact inverse.",
                IllConditionedWarning,
                stacklevel=stacklevel,
            )

    def decode(self, R: torch.Tensor) -> torch.Tensor:
        """Map an (n, k) block of relative coordinates to (n, d) points in centred anchor coordinates."""
        if self.metric == "change_of_basis":
            return R @ self.basis.to(device=R.device, dtype=R.dtype)
        pinv_T = self.pinv_T.to(device=R.device, dtype=R.dtype)
        if self.metric == "euclidean":
            sq = self.sq.to(device=R.device, dtype=R.dtype)
            d2 = R.square()
            # ||y - a_j||^2 = ||y||^2 - 2 <a_j, y> + ||a_j||^2 with sum_j a_j = 0: differences from the mean
            # over anchors are linear in y.
            b = (sq - sq.mean()) - (d2 - d2.mean(1, keepdim=True))
            return 0.5 * (b @ pinv_T) + self.mid.to(device=R.device, dtype=R.dtype)
        C = torch.cos(math.pi * (1.0 - R)) if self.metric == "angular" else R
        U = C @ pinv_T
        return U / torch.linalg.vector_norm(U, dim=1, keepdim=True).clamp_min(torch.finfo(U.dtype).tiny) * self.scale


def pick_invertible_block(metrics: tuple[str, ...], aggregate: str, top_k: Any, power: float) -> int:
    """Index of the metric block :func:`relative_inverse` decodes; raise when none can be inverted."""
    if top_k is not None or power != 1.0:
        raise NotImplementedError(
            f"relative coordinates sparsified with top_k={top_k}, power={power} cannot be inverted (the "
            "dropped similarities and the row scale are lost); use top_k=None, power=1.0 to invert."
        )
    if len(metrics) > 1 and aggregate != "concat":
        raise NotImplementedError(
            f"aggregate={aggregate!r} standardises each block per row (and 'sum' adds them), which loses "
            "the values the inverse needs; use aggregate='concat' to invert a product of metrics."
        )
    for preferred in INVERTIBLE_METRICS:
        if preferred in metrics:
            return metrics.index(preferred)
    raise NotImplementedError(
        f"metric={list(metrics)} has no linear inverse; inverse maps exist when the metrics include one of "
        f"{list(INVERTIBLE_METRICS)}."
    )


def relative_inverse(
    R: ArrayLike,
    anchors: ArrayLike,
    *,
    metric: MetricSpec = "cosine",
    center: Any = None,
    aggregate: str = "concat",
    scale: float | None = None,
) -> ArrayLike:
    """Map relative coordinates back to absolute coordinates of the anchors' space (least squares).

    Parameters
    ----------
    R : array of shape (n_samples, n_out)
        Output of :func:`relative_projection` with the same ``anchors``, ``metric``, ``center`` and
        ``aggregate`` (and no sparsification).
    anchors : array of shape (n_anchors, n_features)
    metric, center, aggregate
        As given to :func:`relative_projection`. For a product space the change_of_basis block is decoded
        when present, otherwise the euclidean, the cosine, then the angular one.
    scale : float, optional
        Norm given to the decoded (centred) points for the angle-based metrics; default: the mean norm of
        the centred anchors.

    Returns
    -------
    array of shape (n_samples, n_features)
        Same kind, dtype and device as ``R``.

    Notes
    -----
    * cosine / angular: ``R = U_hat u`` with ``U_hat`` the unit (centred) anchors and ``u`` the unit
      direction of the centred point, so ``u = pinv(U_hat) R`` is exact when the anchors span the space
      (``n_anchors >= n_features``, full rank); the norm is lost by construction and set to ``scale``.
      Otherwise the result is the least-squares direction within the anchors' span (an approximation).
    * euclidean: squared distances minus their mean over anchors are linear in the point (multilateration),
      so the point itself, norm included, is exact when the anchors are not all on one hyperplane
      (``n_anchors >= n_features + 1`` in general position).
    * change_of_basis: ``x = c A`` (the anchors weighted by the coordinates), exact when the (centred)
      anchors span the space.
    * l1, linf, ``aggregate="sum"`` and ``"concat_norm"`` have no linear inverse: ``NotImplementedError``.

    An :class:`~latentalign.exceptions.IllConditionedWarning` says when the inverse is approximate.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A, Y = rng.normal(size=(10, 3)), rng.normal(size=(4, 3))
    >>> back = relative_inverse(relative_projection(Y, A, metric="euclidean"), A, metric="euclidean")
    >>> bool(np.allclose(back, Y))
    True
    """
    check_same_backend(R=R, anchors=anchors)
    Rt, spec = check_array(R, "R")
    At, _ = check_array(anchors, "anchors")
    check_n_anchors(At.shape[0])
    metrics = parse_metrics(metric)
    n_out = check_relative_options(metrics, At.shape[0], None, 1.0, aggregate, None)
    if Rt.shape[1] != n_out:
        raise ValueError(
            f"R has {Rt.shape[1]} columns but {At.shape[0]} anchors with metric={list(metrics)} and "
            f"aggregate={aggregate!r} give {n_out}; pass the anchors R was computed with."
        )
    block = pick_invertible_block(metrics, aggregate, None, 1.0)
    dtype = spec.compute_dtype
    At = At.to(device=Rt.device, dtype=dtype)
    shift = _resolve_center(center, At)
    A_c = At if shift is None else At - shift
    check_anchor_norms(A_c, metrics)
    decoder = Decoder(A_c, metrics[block], scale=scale)
    decoder.warn_if_underdetermined()
    k = At.shape[0]
    cols = slice(block * k, (block + 1) * k) if len(metrics) > 1 else slice(None)
    Y = decoder.decode(Rt[:, cols].to(dtype))
    if shift is not None:
        Y = Y + shift
    return restore(Y, spec)
