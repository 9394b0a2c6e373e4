"""Rows in coordinates of their own span, for rounds that fit a rotation on fewer rows than dimensions.

A self-learning round fits ``W = polar(X[rows]^T Y[cols])`` and compares ``X W`` with ``Y``. With
``n < d`` rows per side the ``d x d`` cross-product has rank at most ``n``, and every quantity a round
uses depends on ``W`` only through its restriction to the rows' spans. Writing ``X = C_x Q_x^T`` with
``Q_x`` an orthonormal basis of the span of ``X``'s rows (``d x n``, from a QR decomposition), the
rotation problem becomes ``P = polar(C_x[rows]^T C_y[cols])`` on ``n x n`` coordinates, and
``X W Y^T = C_x P C_y^T`` for every maximiser ``W``: an ``O(n^3)`` solve per round instead of
``O(d^3)`` (EfficientNet features, 562 rows of 1,280 dimensions per side: about an eighth of the time).

The similarities keep their full-space normalisation: a rotation with orthonormal rows
(``d_x <= d_y``) preserves every row's length, but ``C_x P`` can be shorter than ``C_x`` when the two
spans differ in dimension (the rest of the row then lands outside ``Y``'s span, where it meets no target).
:func:`with_length_column` restores that length in an extra coordinate that no target row has.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["RowSpan", "row_span", "reduces", "with_length_column"]

_F64 = torch.float64


@dataclass(frozen=True)
class RowSpan:
    """Rows as coordinates in an orthonormal basis of their span: ``rows == coords @ basis.T``.

    Attributes
    ----------
    coords : torch.Tensor of shape (n, r)
        The coordinates, in the rows' dtype (``r = min(n, d)``).
    basis : torch.Tensor of shape (d, r) or None
        Orthonormal columns, float64; None when the rows are kept as they are (``n >= d``).
    """

    coords: torch.Tensor
    basis: torch.Tensor | None


def row_span(rows: torch.Tensor) -> RowSpan:
    """The rows in coordinates of an orthonormal basis of their span (as they are when ``n >= d``).

    Parameters
    ----------
    rows : torch.Tensor of shape (n, d)

    Returns
    -------
    RowSpan

    Examples
    --------
    >>> import torch
    >>> A = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> span = row_span(A)
    >>> span.coords.shape, torch.allclose(span.coords @ span.basis.T, A)
    (torch.Size([3, 3]), True)
    >>> torch.allclose(span.coords.norm(dim=1), A.norm(dim=1))
    True
    """
    n, d = rows.shape
    if n >= d:
        return RowSpan(coords=rows, basis=None)
    Q, R = torch.linalg.qr(rows.T.to(_F64))  # rows^T = Q R, so rows = R^T Q^T
    return RowSpan(coords=R.T.to(rows.dtype), basis=Q)


def reduces(X: torch.Tensor, Y: torch.Tensor) -> bool:
    """Whether rounds between ``X`` and ``Y`` gain from :func:`row_span` coordinates.

    True when the source side has fewer rows than dimensions, so that each round's rotation costs
    ``O(n_x^2 d_y)`` instead of ``O(d_x^2 d_y)`` (a target side with fewer rows than dimensions alone
    saves only in proportion), and ``d_x <= d_y``, so that the full rotation preserves the length of
    every source row (what :func:`with_length_column` relies on).

    Examples
    --------
    >>> import torch
    >>> reduces(torch.zeros(562, 1280), torch.zeros(562, 1280)), reduces(torch.zeros(475, 384), torch.zeros(475, 768))
    (True, False)
    """
    (n_x, d_x), d_y = X.shape, Y.shape[1]
    return d_x <= d_y and n_x < d_x


def with_length_column(
    mapped: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mapped`` and ``targets`` with one more column, so that each mapped row has its full length.

    ``mapped`` holds source rows rotated onto the targets' span coordinates; the part of each row that
    the rotation sends outside that span is put into the new column (``sqrt(length^2 - ||mapped||^2)``),
    where every target row has 0. Dot products are unchanged and cosines are those of the full space.

    Examples
    --------
    A source row of length 5 whose rotated part in the targets' span is ``(0, 3)``:

    >>> import torch
    >>> Z, T = with_length_column(torch.tensor([[0.0, 3.0]]), torch.tensor([5.0]), torch.eye(2))
    >>> Z.tolist(), T.tolist()
    ([[0.0, 3.0, 4.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    """
    outside = (lengths.to(mapped.dtype).pow(2) - mapped.pow(2).sum(1)).clamp(min=0).sqrt()
    zeros = torch.zeros(targets.shape[0], 1, dtype=targets.dtype, device=targets.device)
    return torch.cat([mapped, outside[:, None]], 1), torch.cat([targets, zeros], 1)
