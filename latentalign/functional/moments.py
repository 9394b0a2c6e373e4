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
block is shifted by a fixed reference row mean ``K`` (the mean of the first block) into two reused,
cache-sized buffers ``x - K_x`` and ``y - K_y``; one GEMM ``(x - K_x)^T (y - K_y)`` (plus
``(x - K_x)^T (x - K_x)`` for the Gram matrix) and the buffers' column sums follow. The GEMM runs in the
input dtype (float32 data runs at the float32 GEMM rate) and accumulates in that dtype over at most
``flush_rows`` rows before being added into float64. The inputs are never copied whole: the extra memory
is the two ``(block_rows, d)`` buffers plus ``O(d^2)`` accumulators. The shift makes the float32 products
as accurate as products of exactly centred data (it removes the mean, the cause of cancellation); the
exact centring is applied in float64 at the end.

On the CPU the shifts and sums run single-threaded in numpy and only the GEMM is multi-threaded (torch):
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

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

__all__ = ["CrossStats", "compute_stats", "is_finite", "BLOCK_BYTES", "FLUSH_ROWS"]

#: Target size in bytes of the two per-block centring buffers together (they stay in the last-level cache).
BLOCK_BYTES = 8 * 2**20
#: Bounds on the rows per block (few, large GEMMs: each one is a parallel region).
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
    if block_rows is None:
        itemsize = torch.empty((), dtype=product_dtype).element_size()
        block_rows = max(MIN_BLOCK_ROWS, min(MAX_BLOCK_ROWS, BLOCK_BYTES // (itemsize * (d_x + d_y))))
    block_rows = max(1, min(block_rows, n))
    flush_blocks = max(1, flush_rows // block_rows)

    # Reference shift: the mean of the first block (float64), kept in the product dtype for the buffers.
    shift_x = X[:block_rows].to(_F64).mean(0)
    shift_y = Y[:block_rows].to(_F64).mean(0)
    ops = _NumpyOps() if device.type == "cpu" else _TorchOps()
    kx = ops.vector(shift_x.to(product_dtype))
    ky = ops.vector(shift_y.to(product_dtype))
    buf_x = torch.empty((block_rows, d_x), dtype=product_dtype, device=device)
    buf_y = torch.empty((block_rows, d_y), dtype=product_dtype, device=device)
    vx, vy = ops.view(buf_x), ops.view(buf_y)
    src_x, src_y = ops.view(X), ops.view(Y)

    def zeros(*shape: int, dtype: torch.dtype = product_dtype) -> torch.Tensor:
        return torch.zeros(shape, dtype=dtype, device=device)

    acc_xy, total_xy = zeros(d_x, d_y), zeros(d_x, d_y, dtype=_F64)
    acc_xx, total_xx = (zeros(d_x, d_x), zeros(d_x, d_x, dtype=_F64)) if gram else (None, None)
    sums_x, sums_y = zeros(d_x, dtype=_F64), zeros(d_y, dtype=_F64)
    sq_x, sq_y = (zeros(d_x, dtype=_F64), zeros(d_y, dtype=_F64)) if squares else (None, None)

    # Non-finite inputs are expected here (callers test the statistics with is_finite): numpy's
    # inf - inf warnings would only repeat that.
    with np.errstate(all="ignore"):
        pending = 0
        for start in range(0, n, block_rows):
            stop = min(start + block_rows, n)
            rows = stop - start
            ops.shift_into(vx[:rows], src_x[start:stop], kx)
            ops.shift_into(vy[:rows], src_y[start:stop], ky)
            bx, by = buf_x[:rows], buf_y[:rows]
            acc_xy.addmm_(bx.T, by)
            if gram:
                acc_xx.addmm_(bx.T, bx)
            sums_x += ops.column_sums(vx[:rows], device)
            sums_y += ops.column_sums(vy[:rows], device)
            if squares:
                sq_x += ops.column_squares(vx[:rows], device)
                sq_y += ops.column_squares(vy[:rows], device)
            pending += 1
            if pending == flush_blocks or stop == n:
                total_xy += acc_xy
                acc_xy.zero_()
                if gram:
                    total_xx += acc_xx
                    acc_xx.zero_()
                pending = 0

    # Shifted sums S = sum (x-K)(y-K)^T and s = sum (x-K); centre exactly in float64.
    mx = sums_x / n
    my = sums_y / n
    cxx = None
    if gram:
        cxx = total_xx - torch.outer(sums_x, mx)
        cxx = (cxx + cxx.T) / 2
    ssx = ssy = None
    if squares:
        ssx = sq_x - sums_x * mx
        ssy = sq_y - sums_y * my
    return CrossStats(
        n=int(n),
        mean_x=shift_x + mx,
        mean_y=shift_y + my,
        cxy=total_xy - torch.outer(sums_x, my),
        ssx=ssx,
        ssy=ssy,
        cxx=cxx,
    )


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
    def column_sums(block: Any, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(np.add.reduce(block, axis=0, dtype=block.dtype))

    @staticmethod
    def column_squares(block: Any, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(np.einsum("ij,ij->j", block, block))


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
    def column_sums(block: torch.Tensor, device: torch.device) -> torch.Tensor:
        return block.sum(0)

    @staticmethod
    def column_squares(block: torch.Tensor, device: torch.device) -> torch.Tensor:
        return block.square().sum(0)


def is_finite(stats: CrossStats) -> bool:
    """Whether every statistic is finite (a NaN or infinity anywhere in the inputs makes them not)."""
    parts = [stats.mean_x, stats.mean_y, stats.cxy, stats.ssx, stats.ssy, stats.cxx]
    return all(bool(torch.isfinite(p).all()) for p in parts if p is not None)
