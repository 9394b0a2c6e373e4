"""Streamed, mergeable sufficient statistics of paired data (the whole data pass of Procrustes and Affine).

:class:`CrossStats` holds, for paired rows ``x_i`` (``d_x`` features) and ``y_i`` (``d_y`` features):

- ``n``: the number of rows,
- ``mean_x``, ``mean_y``: the column means,
- ``cxy = sum_i (x_i - mean_x)^T (y_i - mean_y)``: the centred cross-product matrix, ``(d_x, d_y)``,
- optionally ``ssx``, ``ssy``: the centred per-column sums of squares (for scaling and standardising),
- optionally ``cxx = sum_i (x_i - mean_x)^T (x_i - mean_x)``: the centred Gram matrix (for least squares).

Everything is float64. The statistics of two disjoint sets of rows combine exactly with :meth:`merge`
(Chan, Golub and LeVeque's pairwise update of centred moments), so chunks of a stream, or shards computed
on different machines, give the statistics of the whole data up to float64 rounding.

How one call reads the data (:func:`compute_stats`): rows are processed in blocks of a few thousand. Each
block is shifted by a fixed reference row mean ``K`` (the mean of the first block) into one reused,
cache-sized buffer ``[x - K_x | y - K_y]`` (each part starting on an aligned column), then one GEMM
``(x - K_x)^T (y - K_y)`` (or ``(x - K_x)^T [x - K_x | y - K_y]`` for the Gram matrix) and one column sum
over the buffer. The GEMM runs in the input dtype (float32 data runs at the float32 GEMM rate) and
accumulates in that dtype over at most ``flush_rows`` rows before being added into float64. The inputs
are never copied whole: the extra memory is the ``(block_rows, ~d_x + d_y)`` buffer plus ``O(d^2)``
accumulators. The shift makes the float32 products as accurate as products of exactly centred data (it
removes the mean, the cause of cancellation); the exact centring is applied in float64 at the end.
(A column of ones appended to the buffer would give the sums from the GEMM itself, but the odd
``d + 1`` size costs the GEMM more than the separate sum.)

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

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

__all__ = ["CrossStats", "compute_stats", "is_finite", "BLOCK_BYTES", "FLUSH_ROWS"]

#: Target size in bytes of the per-block centring buffer (it stays in the last-level cache).
BLOCK_BYTES = 8 * 2**20
#: Bounds on the rows per block (few, large operations: each one is a parallel region).
MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 2048, 16384
#: Rows accumulated by the GEMM in the input dtype before the partial sum is added into float64.
FLUSH_ROWS = 65536

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
        Centred Gram matrix, present when computed with ``gram=True``.
    """

    n: int
    mean_x: torch.Tensor
    mean_y: torch.Tensor
    cxy: torch.Tensor
    ssx: torch.Tensor | None = None
    ssy: torch.Tensor | None = None
    cxx: torch.Tensor | None = None

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

    def merge(self, other: CrossStats) -> CrossStats:
        """Statistics of the union of two disjoint sets of rows (exact up to float64 rounding).

        Parameters
        ----------
        other : CrossStats
            Statistics of other rows, with the same dimensions. Optional parts (sums of squares, Gram
            matrix) are kept only when both sides have them.

        Returns
        -------
        CrossStats
            A new object; neither input is modified.
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
        ssx = ssy = cxx = None
        if self.has_squares and other.has_squares:
            ssx = self.ssx + other.ssx + weight * dx * dx
            ssy = self.ssy + other.ssy + weight * dy * dy
        if self.has_gram and other.has_gram:
            cxx = self.cxx + other.cxx + weight * torch.outer(dx, dx)
        return CrossStats(
            n=n,
            mean_x=self.mean_x + dx * (other.n / n),
            mean_y=self.mean_y + dy * (other.n / n),
            cxy=self.cxy + other.cxy + weight * torch.outer(dx, dy),
            ssx=ssx,
            ssy=ssy,
            cxx=cxx,
        )

    __add__ = merge

    def to(self, device: torch.device | str) -> CrossStats:
        """The same statistics with every tensor on ``device``."""
        moved = {
            f.name: (v.to(device) if isinstance(v, torch.Tensor) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return replace(self, **moved)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tensors and an int) for saving; optional parts that are absent are left out."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> CrossStats:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: (int(v) if k == "n" else v) for k, v in state.items()})


def compute_stats(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    squares: bool = False,
    gram: bool = False,
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
    product_dtype : torch.dtype, optional
        Dtype of the block GEMMs: by default float64 when either input is float64, else float32.
    block_rows : int, optional
        Rows per centred block (default: about :data:`BLOCK_BYTES` of buffer).
    flush_rows : int
        Rows accumulated in ``product_dtype`` before the partial sums are added into float64.

    Returns
    -------
    CrossStats
        Non-finite inputs give non-finite statistics (callers check, see :func:`is_finite`).
    """
    n, d_x = X.shape
    d_y = Y.shape[1]
    device = X.device
    if product_dtype is None:
        product_dtype = _F64 if _F64 in (X.dtype, Y.dtype) else torch.float32
    # Buffer columns: [x - K_x | 0-pad | y - K_y | 0-pad], each part starting on a multiple of 16 elements.
    off_y = _round_up(d_x, 16)
    width = off_y + _round_up(d_y, 16)
    if block_rows is None:
        itemsize = torch.empty((), dtype=product_dtype).element_size()
        block_rows = max(MIN_BLOCK_ROWS, min(MAX_BLOCK_ROWS, BLOCK_BYTES // (itemsize * width)))
    block_rows = max(1, min(block_rows, n))
    flush_blocks = max(1, flush_rows // block_rows)

    # Reference shift: the mean of the first block (float64), kept in the product dtype for the buffer.
    shift_x = X[:block_rows].to(_F64).mean(0)
    shift_y = Y[:block_rows].to(_F64).mean(0)
    kx = shift_x.to(product_dtype)
    ky = shift_y.to(product_dtype)
    buf = torch.zeros((block_rows, width), dtype=product_dtype, device=device)
    right_cols = slice(0, off_y + d_y) if gram else slice(off_y, off_y + d_y)
    n_right = right_cols.stop - right_cols.start
    acc = torch.zeros((d_x, n_right), dtype=product_dtype, device=device)
    total = torch.zeros((d_x, n_right), dtype=_F64, device=device)
    sums_acc = torch.zeros(width, dtype=product_dtype, device=device)
    sums = torch.zeros(width, dtype=_F64, device=device)
    sq_acc = torch.zeros(width, dtype=product_dtype, device=device) if squares else None
    sq = torch.zeros(width, dtype=_F64, device=device) if squares else None

    pending = 0
    for start in range(0, n, block_rows):
        stop = min(start + block_rows, n)
        block = buf[: stop - start]
        _shift_into(block[:, :d_x], X[start:stop], kx)
        _shift_into(block[:, off_y : off_y + d_y], Y[start:stop], ky)
        acc.addmm_(block[:, :d_x].T, block[:, right_cols])
        sums_acc += block.sum(0)
        if squares:
            sq_acc += block.square().sum(0)
        pending += 1
        if pending == flush_blocks or stop == n:
            total += acc
            acc.zero_()
            sums += sums_acc
            sums_acc.zero_()
            if squares:
                sq += sq_acc
                sq_acc.zero_()
            pending = 0

    # Unpack the shifted sums S = sum (x-K)(y-K)^T, s = sum (x-K); then centre exactly in float64.
    sx = sums[:d_x]
    sy = sums[off_y : off_y + d_y]
    sxy = total[:, off_y : off_y + d_y] if gram else total
    mx = sx / n
    my = sy / n
    cxx = None
    if gram:
        sxx = total[:, :d_x]
        cxx = sxx - torch.outer(sx, mx)
        cxx = (cxx + cxx.T) / 2
    ssx = ssy = None
    if squares:
        ssx = sq[:d_x] - sx * mx
        ssy = sq[off_y : off_y + d_y] - sy * my
    return CrossStats(
        n=int(n),
        mean_x=shift_x + mx,
        mean_y=shift_y + my,
        cxy=sxy - torch.outer(sx, my),
        ssx=ssx,
        ssy=ssy,
        cxx=cxx,
    )


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _shift_into(out: torch.Tensor, block: torch.Tensor, shift: torch.Tensor) -> None:
    """``out = block - shift`` written into the buffer view ``out`` (casting when dtypes differ)."""
    if block.dtype == out.dtype and block.device == out.device:
        torch.sub(block, shift, out=out)
    else:
        out.copy_(block)
        out.sub_(shift)


def is_finite(stats: CrossStats) -> bool:
    """Whether every statistic is finite (a NaN or infinity anywhere in the inputs makes them not)."""
    parts = [stats.mean_x, stats.mean_y, stats.cxy, stats.ssx, stats.ssy, stats.cxx]
    return all(bool(torch.isfinite(p).all()) for p in parts if p is not None)
