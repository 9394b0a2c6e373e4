"""Streamed, mergeable sufficient statistics of paired data: the one moments accumulator of the package.

:class:`CrossStats` holds, for paired rows ``x_i`` (``d_x`` features) and ``y_i`` (``d_y`` features):

- ``n``: the number of rows,
- ``mean_x``, ``mean_y``: the column means,
- ``cxy = sum_i (x_i - mean_x)^T (y_i - mean_y)``: the centred cross-product matrix, ``(d_x, d_y)``,
- optionally (``squares=True``) ``ssx``, ``ssy``: the centred per-column sums of squares,
- optionally (``gram=True``) ``cxx = sum_i (x_i - mean_x)^T (x_i - mean_x)``: the centred Gram matrix of ``X``,
- optionally (``gram_y=True``) ``cyy``: the centred Gram matrix of ``Y``,
- optionally (``fourth=True``) the fourth-order sums of the unbiased HSIC. With ``u_i = x_i - mean_x``,
  ``v_i = y_i - mean_y``, ``a_i = ||u_i||^2`` and ``b_i = ||v_i||^2``: the scalars ``saa = sum a_i^2``,
  ``sbb = sum b_i^2``, ``sab = sum a_i b_i`` and the vectors ``sxa = sum a_i u_i``, ``sxb = sum b_i u_i``
  (``d_x``), ``sya = sum a_i v_i``, ``syb = sum b_i v_i`` (``d_y``). They depend on the centre, and moving
  them to another centre needs both Gram matrices, so ``fourth=True`` also computes ``cxx`` and ``cyy``.

Procrustes needs ``cxy`` (and the sums of squares to scale or standardise), least squares ``cxx`` too,
and the similarity measures of :mod:`latentalign.functional.similarity` both Gram matrices (plus the
fourth-order sums for the unbiased CKA). Each part costs time only when asked for.

Everything is float64. The statistics of two disjoint sets of rows combine exactly with :meth:`merge`
(Chan, Golub and LeVeque's pairwise update of centred moments, extended to the fourth-order sums by
re-centring each side on the common mean), so chunks of a stream, or shards computed on different
machines, give the statistics of the whole data up to float64 rounding.

How one call reads the data (:func:`compute_stats`): rows are processed in blocks of a few thousand. Each
block is shifted by a fixed reference row mean ``K`` (the mean of the first block) into two reused,
cache-sized buffers ``x - K_x`` and ``y - K_y``; one GEMM ``(x - K_x)^T (y - K_y)`` (plus
``(x - K_x)^T (x - K_x)`` and ``(y - K_y)^T (y - K_y)`` for the Gram matrices) and the buffers' column sums
follow. The Gram matrices are symmetric, and their diagonals give the sums of squares without another
pass. On the CPU the products run in numpy's BLAS unless
:data:`~latentalign.functional.cpu_blas.CPU_PRODUCTS` says otherwise, on views of the buffers (no copies),
the Gram matrices by ``syrk`` (numpy dispatches ``A.T @ A`` to it) at half the flops of a GEMM: measured single-threaded in
float32 on an AMD EPYC with AVX-512, numpy's BLAS ran ``X^T Y`` at about 100 GFLOP/s against torch's 95,
and ``X^T X`` at the equivalent of 195 GFLOP/s against 143 for torch's block-triangular GEMMs (torch has
no syrk binding). On an AMD EPYC with AVX2 only, linear CKA of 1e5 x 768 (2 threads) took 1.97 s with
numpy's products and 2.30 s with torch's (median of 7). On other devices (GPU) the products run in torch, the Gram matrices block-triangularly (one GEMM per panel of about
:data:`GRAM_PANEL` columns with the columns from it on). The products run in the input dtype (float32
data runs at the float32 GEMM rate) and accumulate in that dtype over at most ``flush_rows`` rows
(:data:`FLUSH_ROWS`, a few blocks) before being added into float64, so rounding does not grow with ``n``.
The inputs are never copied whole: the extra memory is the two ``(block_rows, d)`` buffers plus ``O(d^2)``
accumulators. The shift makes the float32 products as accurate as products of exactly centred data (it
removes the mean, the cause of cancellation); the exact centring is applied in float64 at the end.

On the CPU the shifts and sums run single-threaded in numpy and only the products are multi-threaded (BLAS):
on a machine shared with other processes, each multi-threaded element-wise op waits at its barrier for
a descheduled thread, which made the torch element-wise version up to 20x slower than numpy's (measured
with 2 threads at load average ~3); unloaded, the single-threaded shift costs about the memory read of
the block, which the GEMM would do anyway. (A column of ones appended to the buffers would give the sums
from the GEMM itself, but the odd ``d + 1`` size costs the GEMM more than the separate sum.)

Examples
--------
>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> X = torch.randn(100, 3, generator=g, dtype=torch.float64)
>>> Y = torch.randn(100, 2, generator=g, dtype=torch.float64)
>>> whole = compute_stats(X, Y)
>>> merged = compute_stats(X[:30], Y[:30]).merge(compute_stats(X[30:], Y[30:]))
>>> bool(torch.allclose(whole.cxy, merged.cxy, atol=1e-12)), merged.n
(True, 100)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from latentalign.functional.cpu_blas import cpu_products

__all__ = [
    "CrossStats",
    "compute_stats",
    "shift_fourth",
    "is_finite",
    "BLOCK_BYTES",
    "FLUSH_ROWS",
    "FOURTH_ORDER",
]

#: Target size in bytes of the two per-block centring buffers together (they stay in the last-level cache).
BLOCK_BYTES = 8 * 2**20
#: Bounds on the rows per block (few, large GEMMs: each one is a parallel region).
MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 2048, 16384
#: Rows accumulated by the block products in their dtype before the partial sums are added into float64.
FLUSH_ROWS = 8192
#: Columns per panel of the block-triangular Gram products (wide enough for GEMM efficiency).
GRAM_PANEL = 256
#: Names of the fourth-order sums (``fourth=True``), in the order of the module docstring.
FOURTH_ORDER = ("saa", "sbb", "sab", "sxa", "sxb", "sya", "syb")

_F64 = torch.float64


@dataclass(frozen=True)
class CrossStats:
    """Sufficient statistics of paired rows; see the module docstring for the definitions.

    Attributes
    ----------
    n : int
        Number of rows seen.
    mean_x, mean_y : torch.Tensor of shape (d_x,), (d_y,)
    cxy : torch.Tensor of shape (d_x, d_y)
        Centred cross-product sum.
    ssx, ssy : torch.Tensor of shape (d_x,), (d_y,) or None
        Centred per-column sums of squares, present when computed with ``squares=True``.
    cxx : torch.Tensor of shape (d_x, d_x) or None
        Centred Gram matrix of ``X``, present when computed with ``gram=True`` (or ``fourth=True``).
    cyy : torch.Tensor of shape (d_y, d_y) or None
        Centred Gram matrix of ``Y``, present when computed with ``gram_y=True`` (or ``fourth=True``).
    saa, sbb, sab : torch.Tensor of shape () or None
    sxa, sxb : torch.Tensor of shape (d_x,) or None
    sya, syb : torch.Tensor of shape (d_y,) or None
        Fourth-order sums about the means, present when computed with ``fourth=True``.
    """

    n: int
    mean_x: torch.Tensor
    mean_y: torch.Tensor
    cxy: torch.Tensor
    ssx: torch.Tensor | None = None
    ssy: torch.Tensor | None = None
    cxx: torch.Tensor | None = None
    cyy: torch.Tensor | None = None
    saa: torch.Tensor | None = None
    sbb: torch.Tensor | None = None
    sab: torch.Tensor | None = None
    sxa: torch.Tensor | None = None
    sxb: torch.Tensor | None = None
    sya: torch.Tensor | None = None
    syb: torch.Tensor | None = None

    @property
    def dim_x(self) -> int:
        """Number of source features ``d_x``."""
        return int(self.mean_x.shape[0])

    @property
    def dim_y(self) -> int:
        """Number of target features ``d_y``."""
        return int(self.mean_y.shape[0])

    @property
    def has_squares(self) -> bool:
        """Whether the per-column sums of squares are present."""
        return self.ssx is not None and self.ssy is not None

    @property
    def has_gram(self) -> bool:
        """Whether the source Gram matrix is present."""
        return self.cxx is not None

    @property
    def has_gram_y(self) -> bool:
        """Whether the target Gram matrix is present."""
        return self.cyy is not None

    @property
    def has_fourth(self) -> bool:
        """Whether the fourth-order sums are present (with both Gram matrices, which moving them needs)."""
        return self.has_gram and self.has_gram_y and all(getattr(self, k) is not None for k in FOURTH_ORDER)

    def squares(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ssx, ssy)``; raises ``ValueError`` when they were not computed."""
        if self.ssx is None or self.ssy is None:
            raise ValueError(_missing("the per-column sums of squares", "squares=True"))
        return self.ssx, self.ssy

    def gram(self) -> torch.Tensor:
        """``cxx``; raises ``ValueError`` when it was not computed."""
        if self.cxx is None:
            raise ValueError(_missing("the Gram matrix X^T X", "gram=True"))
        return self.cxx

    def gram_y(self) -> torch.Tensor:
        """``cyy``; raises ``ValueError`` when it was not computed."""
        if self.cyy is None:
            raise ValueError(_missing("the Gram matrix Y^T Y", "gram_y=True"))
        return self.cyy

    def fourth(self) -> dict[str, torch.Tensor]:
        """The fourth-order sums by name (:data:`FOURTH_ORDER`); raises ``ValueError`` when absent."""
        if not self.has_fourth:
            raise ValueError(_missing("the fourth-order sums", "fourth=True"))
        return {k: _present(getattr(self, k)) for k in FOURTH_ORDER}

    def merge(self, other: CrossStats) -> CrossStats:
        """Statistics of the union of two disjoint sets of rows (exact up to float64 rounding).

        Parameters
        ----------
        other : CrossStats
            Statistics of other rows, with the same dimensions. Optional parts (sums of squares, Gram
            matrices, fourth-order sums) are kept only when both sides have them.

        Returns
        -------
        CrossStats
            A new object; neither input is modified.

        Examples
        --------
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(50, 3, generator=g, dtype=torch.float64) + 4.0
        >>> Y = torch.randn(50, 2, generator=g, dtype=torch.float64)
        >>> whole = compute_stats(X, Y, fourth=True)
        >>> merged = compute_stats(X[:20], Y[:20], fourth=True) + compute_stats(X[20:], Y[20:], fourth=True)
        >>> bool(torch.allclose(whole.sxa, merged.sxa, atol=1e-9)), merged.has_fourth
        (True, True)
        """
        if not isinstance(other, CrossStats):
            raise TypeError(f"Can only merge CrossStats with CrossStats, got {type(other).__name__}.")
        if (self.dim_x, self.dim_y) != (other.dim_x, other.dim_y):
            raise ValueError(
                f"Cannot merge statistics of ({self.dim_x}, {self.dim_y})-dimensional pairs with statistics "
                f"of ({other.dim_x}, {other.dim_y})-dimensional pairs: they come from different spaces."
            )
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        other = other.to(self.mean_x.device)
        n = self.n + other.n
        weight = self.n * other.n / n
        dx = other.mean_x - self.mean_x
        dy = other.mean_y - self.mean_y
        ssx = ssy = cxx = cyy = None
        if self.ssx is not None and self.ssy is not None and other.ssx is not None and other.ssy is not None:
            ssx = self.ssx + other.ssx + weight * dx * dx
            ssy = self.ssy + other.ssy + weight * dy * dy
        if self.cxx is not None and other.cxx is not None:
            cxx = self.cxx + other.cxx + weight * torch.outer(dx, dx)
        if self.cyy is not None and other.cyy is not None:
            cyy = self.cyy + other.cyy + weight * torch.outer(dy, dy)
        fourth: dict[str, torch.Tensor] = {}
        if self.has_fourth and other.has_fourth:
            # Move both sides to the common mean (each is centred on its own, so its sums of u are 0), add.
            mine = _recentre(self, dx * (other.n / n), dy * (other.n / n))
            theirs = _recentre(other, dx * (-self.n / n), dy * (-self.n / n))
            fourth = {k: mine[k] + theirs[k] for k in FOURTH_ORDER}
        return CrossStats(
            n=n,
            mean_x=self.mean_x + dx * (other.n / n),
            mean_y=self.mean_y + dy * (other.n / n),
            cxy=self.cxy + other.cxy + weight * torch.outer(dx, dy),
            ssx=ssx,
            ssy=ssy,
            cxx=cxx,
            cyy=cyy,
            **fourth,
        )

    __add__ = merge

    def to(self, device: torch.device | str) -> CrossStats:
        """The same statistics with every tensor on ``device``."""
        tensors = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "n"}
        moved: dict[str, Any] = {k: (v.to(device) if v is not None else None) for k, v in tensors.items()}
        return CrossStats(n=self.n, **moved)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tensors and an int) for saving; optional parts that are absent are left out."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> CrossStats:
        """Inverse of :meth:`to_dict`."""
        values: dict[str, Any] = {k: (int(v) if k == "n" else v) for k, v in state.items()}
        return cls(**values)


def _missing(what: str, flag: str) -> str:
    return f"These statistics were accumulated without {what}; compute them with {flag}."


def _present(t: torch.Tensor | None) -> torch.Tensor:
    if t is None:  # callers check has_* first; reaching this is a bug in this module
        raise RuntimeError("a statistic checked as present is missing")
    return t


def _recentre(stats: CrossStats, dx: torch.Tensor, dy: torch.Tensor) -> dict[str, torch.Tensor]:
    """The fourth-order sums of centred ``stats`` about the centre ``mean + (dx, dy)``."""
    zx, zy = torch.zeros_like(dx), torch.zeros_like(dy)
    return shift_fourth(stats.fourth(), stats.n, zx, zy, stats.gram(), stats.gram_y(), stats.cxy, dx, dy)


def shift_fourth(
    sums: dict[str, torch.Tensor],
    n: int,
    sx: torch.Tensor,
    sy: torch.Tensor,
    gxx: torch.Tensor,
    gyy: torch.Tensor,
    gxy: torch.Tensor,
    dx: torch.Tensor,
    dy: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Move the fourth-order sums from the centre ``K`` to ``K + (dx, dy)`` (exact algebra, float64).

    Every input is about the old centre: ``u_i = x_i - K_x``, ``v_i = y_i - K_y``; ``sx = sum u_i``,
    ``sy = sum v_i``, ``gxx = sum u_i u_i^T``, ``gyy = sum v_i v_i^T``, ``gxy = sum u_i v_i^T`` and ``sums``
    (names of :data:`FOURTH_ORDER`) built from ``a_i = ||u_i||^2``, ``b_i = ||v_i||^2``. Expanding
    ``a'_i = a_i - 2 dx.u_i + |dx|^2`` (likewise ``b'_i``) and ``u'_i = u_i - dx`` gives the new sums from
    these alone.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    >>> a = (u * u).sum(1)
    >>> sums = {"saa": a @ a, "sbb": a @ a, "sab": a @ a, "sxa": u.T @ a, "sxb": u.T @ a,
    ...         "sya": u.T @ a, "syb": u.T @ a}
    >>> d = torch.tensor([0.5, 0.25], dtype=torch.float64)
    >>> moved = shift_fourth(sums, 2, u.sum(0), u.sum(0), u.T @ u, u.T @ u, u.T @ u, d, d)
    >>> a2 = ((u - d) ** 2).sum(1)
    >>> bool(torch.isclose(moved["saa"], a2 @ a2)), bool(torch.allclose(moved["sxa"], (u - d).T @ a2))
    (True, True)
    """
    sa, sb = torch.trace(gxx), torch.trace(gyy)
    cx, cy = dx @ dx, dy @ dy
    gdx, gdy = gxx @ dx, gyy @ dy
    gxy_dy, gyx_dx = gxy @ dy, gxy.T @ dx
    dsx, dsy = dx @ sx, dy @ sy
    saa, sbb, sab = sums["saa"], sums["sbb"], sums["sab"]
    sxa, sxb, sya, syb = sums["sxa"], sums["sxb"], sums["sya"], sums["syb"]
    return {
        "saa": saa - 4 * (dx @ sxa) + 4 * (dx @ gdx) + 2 * cx * sa - 4 * cx * dsx + n * cx * cx,
        "sbb": sbb - 4 * (dy @ syb) + 4 * (dy @ gdy) + 2 * cy * sb - 4 * cy * dsy + n * cy * cy,
        "sab": (
            sab
            - 2 * (dy @ sya)
            - 2 * (dx @ sxb)
            + 4 * (dx @ gxy_dy)
            + cy * sa
            + cx * sb
            - 2 * cy * dsx
            - 2 * cx * dsy
            + n * cx * cy
        ),
        "sxa": sxa - sa * dx - 2 * gdx + 2 * dsx * dx + cx * sx - n * cx * dx,
        "syb": syb - sb * dy - 2 * gdy + 2 * dsy * dy + cy * sy - n * cy * dy,
        "sxb": sxb - sb * dx - 2 * gxy_dy + 2 * dsy * dx + cy * sx - n * cy * dx,
        "sya": sya - sa * dy - 2 * gyx_dx + 2 * dsx * dy + cx * sy - n * cx * dy,
    }


def compute_stats(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    squares: bool = False,
    gram: bool = False,
    gram_y: bool = False,
    fourth: bool = False,
    product_dtype: torch.dtype | None = None,
    block_rows: int | None = None,
    flush_rows: int = FLUSH_ROWS,
) -> CrossStats:
    """Statistics of paired, already validated tensors, in one pass and without copying the inputs.

    Parameters
    ----------
    X : torch.Tensor of shape (n, d_x)
    Y : torch.Tensor of shape (n, d_y)
        Same number of rows and same device (any float dtypes).
    squares : bool
        Also accumulate the centred per-column sums of squares.
    gram : bool
        Also accumulate the centred Gram matrix of ``X`` (for least squares).
    gram_y : bool
        Also accumulate the centred Gram matrix of ``Y``.
    fourth : bool
        Also accumulate the fourth-order sums of the unbiased HSIC (implies ``gram`` and ``gram_y``). The
        row norms they are built from are computed in ``product_dtype``, their sums in float64.
    product_dtype : torch.dtype, optional
        Dtype of the block GEMMs: by default float64 when either input is float64, else float32.
    block_rows : int, optional
        Rows per centred block (default: about :data:`BLOCK_BYTES` of buffer).
    flush_rows : int
        Rows accumulated in ``product_dtype`` before the partial sums are added into float64 (at least one
        block; ``0`` flushes after every block).

    Returns
    -------
    CrossStats
        Non-finite inputs give non-finite statistics (callers check, see :func:`is_finite`).

    Examples
    --------
    >>> import torch
    >>> X = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    >>> stats = compute_stats(X, 2 * X, gram_y=True)
    >>> float(stats.cxy[0, 0]), float(stats.gram_y()[0, 0]), stats.has_gram
    (10.0, 20.0, False)
    """
    n, d_x = X.shape
    d_y = Y.shape[1]
    device = X.device
    gram = gram or fourth
    gram_y = gram_y or fourth
    if product_dtype is None:
        product_dtype = _F64 if _F64 in (X.dtype, Y.dtype) else torch.float32
    if block_rows is None:
        itemsize = torch.empty((), dtype=product_dtype).element_size()
        block_rows = max(MIN_BLOCK_ROWS, min(MAX_BLOCK_ROWS, BLOCK_BYTES // (itemsize * (d_x + d_y))))
    block_rows = max(1, min(block_rows, n))
    flush_blocks = max(1, flush_rows // block_rows)

    # Reference shift: the mean of the first block (float64), kept in the product dtype for the buffers.
    shift_x = X[:block_rows].to(_F64).mean(0)
    shift_y = Y[:block_rows].to(_F64).mean(0)
    ops: _NumpyOps | _TorchOps = _NumpyOps() if device.type == "cpu" else _TorchOps()
    kx = ops.vector(shift_x.to(product_dtype))
    ky = ops.vector(shift_y.to(product_dtype))
    buf_x = torch.empty((block_rows, d_x), dtype=product_dtype, device=device)
    buf_y = torch.empty((block_rows, d_y), dtype=product_dtype, device=device)
    vx, vy = ops.view(buf_x), ops.view(buf_y)
    src_x, src_y = ops.view(X), ops.view(Y)

    def zeros(*shape: int, dtype: torch.dtype = _F64) -> torch.Tensor:
        return torch.zeros(shape, dtype=dtype, device=device)

    # One accumulator per product; the Gram matrices are symmetric, so only about half of each is computed.
    products: dict[str, _Gemm | _TriangularGram | _NumpyProduct] = {}
    if device.type == "cpu" and cpu_products("moments") == "numpy":
        products["xy"] = _NumpyProduct(vx, vy)
        if gram:
            products["xx"] = _NumpyProduct(vx, vx)
        if gram_y:
            products["yy"] = _NumpyProduct(vy, vy)
    else:
        products["xy"] = _Gemm(buf_x, buf_y)
        if gram:
            products["xx"] = _TriangularGram(buf_x)
        if gram_y:
            products["yy"] = _TriangularGram(buf_y)
    sums_x, sums_y = zeros(d_x), zeros(d_y)
    # Sums of squares about the shift: the diagonal of a Gram matrix when there is one, else their own pass.
    sq_x = zeros(d_x) if squares and not gram else None
    sq_y = zeros(d_y) if squares and not gram_y else None
    sums4 = (
        {
            k: zeros(*shape)
            for k, shape in (
                ("saa", ()),
                ("sbb", ()),
                ("sab", ()),
                ("sxa", (d_x,)),
                ("sxb", (d_x,)),
                ("sya", (d_y,)),
                ("syb", (d_y,)),
            )
        }
        if fourth
        else {}
    )

    # Non-finite inputs are expected here (callers test the statistics with is_finite): numpy's
    # inf - inf warnings would only repeat that.
    with np.errstate(all="ignore"):
        pending = 0
        for start in range(0, n, block_rows):
            stop = min(start + block_rows, n)
            rows = stop - start
            ops.shift_into(vx[:rows], src_x[start:stop], kx)
            ops.shift_into(vy[:rows], src_y[start:stop], ky)
            for product in products.values():
                product.add_block(rows)
            sums_x += ops.column_sums(vx[:rows])
            sums_y += ops.column_sums(vy[:rows])
            if sq_x is not None:
                sq_x += ops.column_squares(vx[:rows])
            if sq_y is not None:
                sq_y += ops.column_squares(vy[:rows])
            if fourth:
                _add_fourth(sums4, buf_x[:rows], buf_y[:rows], ops.row_squares(vx[:rows]), ops.row_squares(vy[:rows]))
            pending += 1
            if pending == flush_blocks or stop == n:
                for product in products.values():
                    product.flush()
                pending = 0
    total = {k: product.total(device) for k, product in products.items()}

    # Shifted sums S = sum (x-K)(y-K)^T and s = sum (x-K); centre exactly in float64 (the fourth-order
    # sums first: moving them reads the shifted Gram matrices).
    mx = sums_x / n
    my = sums_y / n
    if fourth:
        sums4 = shift_fourth(sums4, int(n), sums_x, sums_y, total["xx"], total["yy"], total["xy"], mx, my)
    cxx = cyy = ssx = ssy = None
    if gram:
        cxx = total["xx"] - torch.outer(sums_x, mx)
        cxx = (cxx + cxx.T) / 2
    if gram_y:
        cyy = total["yy"] - torch.outer(sums_y, my)
        cyy = (cyy + cyy.T) / 2
    if squares:
        ssx = (torch.diagonal(total["xx"]) if sq_x is None else sq_x) - sums_x * mx
        ssy = (torch.diagonal(total["yy"]) if sq_y is None else sq_y) - sums_y * my
    return CrossStats(
        n=int(n),
        mean_x=shift_x + mx,
        mean_y=shift_y + my,
        cxy=total["xy"] - torch.outer(sums_x, my),
        ssx=ssx,
        ssy=ssy,
        cxx=cxx,
        cyy=cyy,
        **sums4,
    )


class _Gemm:
    """``A^T B`` of the block buffers, accumulated in their dtype and flushed into float64 (torch, any device)."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a, self.b = a, b
        self.partial = torch.zeros((a.shape[1], b.shape[1]), dtype=a.dtype, device=a.device)
        self.sum = torch.zeros((a.shape[1], b.shape[1]), dtype=_F64, device=a.device)

    def add_block(self, rows: int) -> None:
        self.partial.addmm_(self.a[:rows].T, self.b[:rows])

    def flush(self) -> None:
        self.sum += self.partial
        self.partial.zero_()

    def total(self, device: torch.device) -> torch.Tensor:
        return self.sum


class _NumpyProduct:
    """``A^T B`` of two numpy views of the block buffers (``A^T A`` by syrk when ``b is a``), accumulated in
    their dtype and flushed into float64."""

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b
        shape = (a.shape[1], b.shape[1])
        self.block = np.empty(shape, dtype=a.dtype)
        self.partial = np.zeros(shape, dtype=a.dtype)
        self.sum = np.zeros(shape, dtype=np.float64)
        self.empty = True

    def add_block(self, rows: int) -> None:
        a = self.a[:rows]
        b = a if self.b is self.a else self.b[:rows]  # the same view twice: numpy calls syrk
        if self.empty:
            np.matmul(a.T, b, out=self.partial)
            self.empty = False
        else:
            np.matmul(a.T, b, out=self.block)
            self.partial += self.block

    def flush(self) -> None:
        if not self.empty:
            self.sum += self.partial
            self.empty = True

    def total(self, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(self.sum)


class _TriangularGram:
    """``A^T A`` of a block buffer, upper triangle only, by GEMMs on column panels (torch, any device).

    torch has no syrk binding (used on the GPU; on the CPU numpy's syrk is faster). The columns are split into panels of about
    :data:`GRAM_PANEL` and panel ``i`` is multiplied with every column from its own on: one GEMM per panel
    into a strided view of the output, ``(1 + 1/p)/2`` of the full product's flops with ``p`` panels.
    """

    def __init__(self, a: torch.Tensor) -> None:
        self.a = a
        d = a.shape[1]
        panels = max(1, round(d / GRAM_PANEL))
        self.cuts = [round(i * d / panels) for i in range(panels + 1)]
        self.partial = torch.zeros((d, d), dtype=a.dtype, device=a.device)
        self.sum = torch.zeros((d, d), dtype=_F64, device=a.device)

    def add_block(self, rows: int) -> None:
        block = self.a[:rows]
        for lo, hi in zip(self.cuts[:-1], self.cuts[1:]):
            self.partial[lo:hi, lo:].addmm_(block[:, lo:hi].T, block[:, lo:])

    def flush(self) -> None:
        self.sum += self.partial
        self.partial.zero_()

    def total(self, device: torch.device) -> torch.Tensor:
        upper = self.sum.triu()
        return upper + upper.triu(1).T


def _add_fourth(
    sums: dict[str, torch.Tensor], bx: torch.Tensor, by: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> None:
    """Add one block's fourth-order sums (``a``, ``b``: the row norms of the shifted blocks ``bx``, ``by``)."""
    a64, b64 = a.to(_F64), b.to(_F64)
    sums["saa"] += a64 @ a64
    sums["sbb"] += b64 @ b64
    sums["sab"] += a64 @ b64
    sums["sxa"] += bx.T @ a
    sums["sxb"] += bx.T @ b
    sums["sya"] += by.T @ a
    sums["syb"] += by.T @ b


class _NumpyOps:
    """Element-wise steps on CPU tensors, single-threaded in numpy (views, no copies)."""

    @staticmethod
    def vector(t: torch.Tensor) -> Any:
        return t.numpy()

    @staticmethod
    def view(t: torch.Tensor) -> Any:
        return t.detach().numpy()

    @staticmethod
    def shift_into(out: Any, block: Any, shift: Any) -> None:
        np.subtract(block, shift, out=out, casting="same_kind")

    @staticmethod
    def column_sums(block: Any) -> torch.Tensor:
        return torch.from_numpy(np.add.reduce(block, axis=0, dtype=block.dtype))

    @staticmethod
    def column_squares(block: Any) -> torch.Tensor:
        return torch.from_numpy(np.einsum("ij,ij->j", block, block))

    @staticmethod
    def row_squares(block: Any) -> torch.Tensor:
        return torch.from_numpy(np.einsum("ij,ij->i", block, block))


class _TorchOps:
    """Element-wise steps on other devices (GPU), in torch."""

    @staticmethod
    def vector(t: torch.Tensor) -> torch.Tensor:
        return t

    @staticmethod
    def view(t: torch.Tensor) -> torch.Tensor:
        return t

    @staticmethod
    def shift_into(out: torch.Tensor, block: torch.Tensor, shift: torch.Tensor) -> None:
        if block.dtype == out.dtype:
            torch.sub(block, shift, out=out)
        else:
            out.copy_(block)
            out.sub_(shift)

    @staticmethod
    def column_sums(block: torch.Tensor) -> torch.Tensor:
        return block.sum(0)

    @staticmethod
    def column_squares(block: torch.Tensor) -> torch.Tensor:
        return block.square().sum(0)

    @staticmethod
    def row_squares(block: torch.Tensor) -> torch.Tensor:
        return block.square().sum(1)


def is_finite(stats: CrossStats) -> bool:
    """Whether every statistic is finite (a NaN or infinity anywhere in the inputs makes them not)."""
    parts = [getattr(stats, f.name) for f in fields(stats) if f.name != "n"]
    return all(bool(torch.isfinite(p).all()) for p in parts if p is not None)
