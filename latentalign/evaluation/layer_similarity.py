"""Layer-by-layer similarity of two networks: a ``layers_a x layers_b`` table of one measure.

:func:`similarity_matrix` takes the hidden states of two models on the same items (mappings layer name ->
``(n, d)`` array, e.g. from ``encoder.encode(inputs, layers="all")``, or
:class:`~latentalign.store.LayeredStore` objects) and scores every pair of layers.

Cost: each layer's own statistics are computed once, not once per pair.

- ``linear_cka``, all rows at once (arrays in memory, by default): each layer's centred Gram matrix
  ``X^T X`` (``d x d``) once and each pair's cross product ``X_a^T X_b`` once, through the package's one
  moments accumulator (:func:`~latentalign.functional.moments.compute_stats`, which reads the arrays in
  place), every pair reduced to its score at once. Time ``O(n (L_a + L_b) d^2 + n L_a L_b d^2)`` (the
  pairs' products dominate); memory ``O(d^2)`` besides the inputs.
- ``linear_cka`` in chunks of ``chunk_rows`` rows (layered stores, or ``chunk_rows`` below ``n``): per
  chunk, B's layers are copied side by side and shifted by fixed reference means, and each layer of A
  meets them all in one float32 product added into a float64 sum (centred exactly at the end). The float64
  sums of ``L_b`` cross products ``d_a x d_b`` per layer of A are the large part, so A's layers are taken
  in groups that fit in :data:`CROSS_BYTES` (256 MiB), one pass over the rows per group: memory about
  ``CROSS_BYTES`` plus one chunk of every layer, the same flops as above. At 12 x 12 layers of
  10,000 x 768 float32 in chunks of 2,048 rows: 3 passes, about 550 MB besides the inputs (measured).
- ``mutual_knn`` / ``cknna``: every layer's exact cosine k-nearest neighbours are searched once
  (:func:`~latentalign.functional.similarity.self_knn_cosine`, one layer in memory at a time), then every
  pair only intersects the ``(n, k)`` neighbour lists.

The values equal the pairwise functions of :mod:`latentalign.functional.similarity` (``linear_cka``,
``mutual_knn`` with cosine neighbours, ``cknna``) on the same arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from latentalign._validation import check_array, check_choice, check_number
from latentalign.functional.moments import CrossStats, compute_stats, is_finite
from latentalign.functional.similarity import (
    cknna_from_neighbours,
    mutual_knn_from_neighbours,
    self_knn_cosine,
)
from latentalign.store.layers import LayeredStore

__all__ = ["CROSS_BYTES", "LAYER_METRICS", "STORE_CHUNK_ROWS", "LayerSimilarity", "similarity_matrix"]

logger = logging.getLogger(__name__)

LAYER_METRICS = ("linear_cka", "mutual_knn", "cknna")
#: Rows read at once from layered stores (each layer's chunk is held at the same time).
STORE_CHUNK_ROWS = 8192
#: Bytes of float64 cross products ``X_a^T X_b`` that linear CKA accumulates at once over row chunks: A's
#: layers are taken in groups that fit, one pass over the rows per group.
CROSS_BYTES = 256 * 2**20


@dataclass(frozen=True)
class LayerSimilarity:
    """The result of :func:`similarity_matrix`.

    Attributes
    ----------
    values : numpy.ndarray of shape (len(layers_a), len(layers_b))
        ``values[i, j]`` scores layer ``layers_a[i]`` of model A against ``layers_b[j]`` of model B.
    layers_a, layers_b : list of str
    metric : str
    n : int
        Number of paired rows.
    name_a, name_b : str
        Model names (axis labels of plots and tables).
    k : int or None
        Neighbourhood size of the k-NN measures.
    """

    values: np.ndarray
    layers_a: list[str]
    layers_b: list[str]
    metric: str
    n: int
    name_a: str = "A"
    name_b: str = "B"
    k: int | None = None

    def best_match(self) -> dict[str, str]:
        """For each layer of A, the layer of B it scores highest with.

        Examples
        --------
        >>> import numpy as np
        >>> r = LayerSimilarity(np.array([[0.2, 0.9], [0.8, 0.1]]), ["a0", "a1"], ["b0", "b1"], "linear_cka", 10)
        >>> r.best_match()
        {'a0': 'b1', 'a1': 'b0'}
        """
        return {a: self.layers_b[int(np.argmax(row))] for a, row in zip(self.layers_a, self.values)}

    def to_markdown(self, digits: int = 3) -> str:
        """The table as GitHub markdown: rows are A's layers, columns B's.

        Examples
        --------
        >>> import numpy as np
        >>> r = LayerSimilarity(np.array([[1.0, 0.5]]), ["x"], ["y0", "y1"], "linear_cka", 4, "A", "B")
        >>> print(r.to_markdown(2))
        | A / B (linear_cka) | y0 | y1 |
        |---|---|---|
        | x | 1.00 | 0.50 |
        """
        head = f"| {self.name_a} / {self.name_b} ({self.metric}) | " + " | ".join(self.layers_b) + " |"
        rule = "|" + "---|" * (len(self.layers_b) + 1)
        rows = [
            f"| {a} | " + " | ".join(f"{v:.{digits}f}" for v in row) + " |"
            for a, row in zip(self.layers_a, self.values)
        ]
        return "\n".join([head, rule, *rows])


# -------------------------------------------------------------------------------------------- inputs
class _Layers:
    """One side's layers: names, row count, and access to whole layers or row chunks as tensors."""

    def __init__(self, states: Any, side: str) -> None:
        self.side = side
        self.store: LayeredStore | None = None
        self.arrays: dict[str, torch.Tensor] = {}
        if isinstance(states, LayeredStore):
            self.store = states
            self.names = list(states.layers)
            self.n = len(states)
            self.ids: list[Any] | None = states.ids
        elif isinstance(states, Mapping) and states:
            self.names = [str(name) for name in states]
            for name, X in states.items():
                # finiteness is found later through the statistics (or checked before a k-NN search)
                self.arrays[str(name)] = check_array(X, f"{side}[{name!r}]", ensure_finite=False)[0]
            rows = {name: int(t.shape[0]) for name, t in self.arrays.items()}
            if len(set(rows.values())) > 1:
                raise ValueError(
                    f"the layers of {side} have different numbers of rows ({rows}); every layer must hold the "
                    "same items in the same order."
                )
            self.n = next(iter(rows.values()))
            self.ids = None
        else:
            raise TypeError(
                f"{side} must be a non-empty mapping layer name -> (n, d) array or a LayeredStore, got "
                f"{type(states).__name__}{' (empty)' if isinstance(states, Mapping) else ''}. Pass "
                "encoder.encode(inputs, layers='all') or LayeredStore(path)."
            )
        self._order: np.ndarray | None = None

    def align_to(self, other: _Layers) -> None:
        """Read this side's rows in the order of ``other``'s ids (two stores written in different orders)."""
        if self.n != other.n:
            raise ValueError(
                f"A has {other.n} rows but B has {self.n}: the two models must be encoded on the same items "
                "(rows paired)."
            )
        if self.store is None or self.ids is None or other.ids is None or self.ids == other.ids:
            return
        index = {key: i for i, key in enumerate(self.ids)}
        missing = [key for key in other.ids if key not in index]
        if missing:
            raise ValueError(
                f"B's layered store lacks {len(missing)} of A's ids (e.g. {missing[:3]}); write both from the "
                "same items."
            )
        self._order = np.array([index[key] for key in other.ids])

    def dtype(self) -> torch.dtype:
        if self.store is not None:
            return torch.float32
        return torch.float64 if any(t.dtype == torch.float64 for t in self.arrays.values()) else torch.float32

    def chunk(self, name: str, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        if self.store is not None:
            store = self.store[name]
            if self._order is not None:
                block = store.get([store.ids[i] for i in self._order[start:stop]])
            elif self.ids is not None:
                block = store.get(self.ids[start:stop])
            return torch.from_numpy(np.ascontiguousarray(block)).to(dtype)
        return self.arrays[name][start:stop].to(dtype)

    def whole(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        return self.chunk(name, 0, self.n, dtype)


def _chunks(n: int, chunk_rows: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, chunk_rows):
        yield start, min(start + chunk_rows, n)


# -------------------------------------------------------------------------------------------- linear CKA
def _stats(X: torch.Tensor, Y: torch.Tensor, gram: bool, what: str) -> CrossStats:
    """Statistics of one chunk; float32 products that overflow are redone in float64."""
    stats = compute_stats(X, Y, gram=gram)
    if not is_finite(stats) and torch.float64 not in (X.dtype, Y.dtype):
        stats = compute_stats(X, Y, gram=gram, product_dtype=torch.float64)
    if not is_finite(stats):
        check_array(X, what)  # names the first non-finite entry
        raise ValueError(
            f"the products of {what} overflowed even in float64 (values beyond ~1e150). Rescale the layer "
            "(linear CKA does not change)."
        )
    return stats


def _gram_norm(stats: CrossStats, layer: str, side: str) -> float:
    """``||X_c^T X_c||_F`` of one layer (the denominator of linear CKA)."""
    norm = float(torch.linalg.matrix_norm(stats.gram()))
    if norm <= 0:
        raise ValueError(
            f"layer {layer!r} of {side} has zero variance (all rows are identical), so linear CKA is "
            "undefined. Leave that layer out, or check how it was extracted."
        )
    return norm


def _squared_norm(block: torch.Tensor) -> float:
    return float((block * block).sum())


def _linear_cka(a: _Layers, b: _Layers, same: bool, chunk_rows: int) -> np.ndarray:
    dtype = torch.float64 if torch.float64 in (a.dtype(), b.dtype()) else torch.float32
    if chunk_rows >= a.n:
        numerators, norms_a, norms_b = _cka_parts_whole(a, b, same, dtype)
    else:
        # non-finite values and float32 overflow are found by their results (and named, or redone in float64)
        with np.errstate(all="ignore"):
            numerators, norms_a, norms_b = _cka_parts_streamed(a, b, same, chunk_rows, dtype)
    out = np.empty((len(a.names), len(b.names)))
    for i in range(len(a.names)):
        for j in range(len(b.names)):
            if same and j < i:
                out[i, j] = out[j, i]  # the table of a model with itself is symmetric
            elif same and i == j:
                out[i, j] = 1.0
            else:
                out[i, j] = numerators[(i, j)] / (norms_a[i] * norms_b[j])
    return out


def _cka_parts_whole(
    a: _Layers, b: _Layers, same: bool, dtype: torch.dtype
) -> tuple[dict[tuple[int, int], float], list[float], list[float]]:
    """Every layer read whole (in place for arrays): one GEMM per pair, each reduced to its score at once."""
    blocks_a = [a.whole(name, dtype) for name in a.names]
    blocks_b = blocks_a if same else [b.whole(name, dtype) for name in b.names]
    norms_a = [_gram_norm(_stats(X, X[:, :1], True, f"A[{name!r}]"), name, "A") for X, name in zip(blocks_a, a.names)]
    norms_b = (
        norms_a
        if same
        else [_gram_norm(_stats(X, X[:, :1], True, f"B[{name!r}]"), name, "B") for X, name in zip(blocks_b, b.names)]
    )
    numerators = {}
    for i, name_a in enumerate(a.names):
        for j, name_b in enumerate(b.names):
            if same and j <= i:
                continue
            stats = _stats(blocks_a[i], blocks_b[j], False, f"A[{name_a!r}] x B[{name_b!r}]")
            numerators[(i, j)] = _squared_norm(stats.cxy)
    return numerators, norms_a, norms_b


def _groups(widths_a: list[int], columns: list[int], budget: int) -> list[list[int]]:
    """A's layers in order, grouped so that each group's float64 cross products fit in ``budget`` bytes."""
    groups: list[list[int]] = [[]]
    held = 0
    for i, (d, cols) in enumerate(zip(widths_a, columns)):
        size = 8 * d * cols
        if groups[-1] and held + size > budget:
            groups.append([])
            held = 0
        groups[-1].append(i)
        held += size
    return groups


class _Products:
    """``A^T B`` of shifted chunks added into float64 sums, through one reused product buffer.

    The products run in the chunk dtype (float32 at the float32 GEMM rate; ``A^T A`` by syrk); a
    product that overflows float32 is redone in float64.
    """

    def __init__(self, size: int, dtype: np.dtype) -> None:
        self.flat = np.empty(size, dtype=dtype)

    def add(self, total: np.ndarray, A: np.ndarray, B: np.ndarray, what: str) -> None:
        block = self.flat[: total.size].reshape(total.shape)
        np.matmul(A.T, A if B is A else B, out=block)
        if not np.isfinite(block).all():
            block = A.T.astype(np.float64) @ B.astype(np.float64)
            if not np.isfinite(block).all():
                raise ValueError(
                    f"the products of {what} overflowed even in float64 (values beyond ~1e150). Rescale the "
                    "layer (linear CKA does not change)."
                )
        total += block


def _host(t: torch.Tensor) -> np.ndarray:
    """A chunk as a numpy array on the CPU, where the streamed products run (a view when it is there)."""
    return t.detach().cpu().numpy()


def _shifted_sums(X: np.ndarray, what: str, start: int) -> np.ndarray:
    sums = X.sum(0, dtype=np.float64)
    if not np.isfinite(sums).all():
        raise ValueError(
            f"{what} has NaN or infinite values in rows {start}..{start + len(X) - 1}; linear CKA needs finite "
            "layers. Check how the layer was extracted (e.g. an overflow in float16)."
        )
    return sums


def _cka_parts_streamed(
    a: _Layers, b: _Layers, same: bool, chunk_rows: int, dtype: torch.dtype
) -> tuple[dict[tuple[int, int], float], list[float], list[float]]:
    """Rows read in chunks; A's layers in groups whose cross products fit in :data:`CROSS_BYTES`.

    Per chunk, B's layers are copied side by side into one ``(rows, sum d_b)`` array and shifted in place
    by a fixed reference (the column means of the first chunk), so each layer of A meets all of B's
    layers in one product ``(X_a - K_a)^T [X_b1 - K_b1 ... X_bL - K_bL]`` (with itself: only the layers
    after it), added into a float64 sum; the column sums of the shifted chunks centre the sums exactly at
    the end (``C = S - s_a s_b^T / n``). The shift removes the means before the float32 products, the
    cause of cancellation. Each group of A's layers is one pass over the rows (B's layers are read once
    per pass); every buffer is allocated once.
    """
    n = a.n
    np_dtype = np.dtype(np.float64 if dtype == torch.float64 else np.float32)
    widths_a = [int(a.chunk(name, 0, 1, dtype).shape[1]) for name in a.names]
    widths_b = widths_a if same else [int(b.chunk(name, 0, 1, dtype).shape[1]) for name in b.names]
    offsets = np.concatenate([[0], np.cumsum(widths_b)]).astype(int).tolist()
    # with itself, layer i meets the layers after it: the columns from offsets[i + 1] on
    first_col = [offsets[i + 1] if same else 0 for i in range(len(a.names))]
    columns = [offsets[-1] - first for first in first_col]
    groups = _groups(widths_a, columns, CROSS_BYTES)
    label_b = "A" if same else "B"
    products = _Products(
        max([w * w for w in widths_a + widths_b] + [w * c for w, c in zip(widths_a, columns)]), np_dtype
    )
    shift_b: np.ndarray | None = None
    sums_b = np.zeros(offsets[-1])
    grams_b = [np.zeros((w, w)) for w in widths_b]
    shift_a: dict[int, np.ndarray] = {}
    sums_a = {i: np.zeros(w) for i, w in enumerate(widths_a)}
    grams_a = grams_b if same else [np.zeros((w, w)) for w in widths_a]
    buffers: dict[int, np.ndarray] = {}
    numerators: dict[tuple[int, int], float] = {}
    for g, group in enumerate(groups):
        cross = {i: np.zeros((widths_a[i], columns[i])) for i in group if columns[i]}
        for start, stop in _chunks(n, chunk_rows):
            wide = np.concatenate([_host(b.chunk(name, start, stop, dtype)) for name in b.names], axis=1)
            if shift_b is None:
                shift_b = wide.mean(0, dtype=np.float64).astype(np_dtype)
            wide -= shift_b
            if g == 0:  # B's own statistics (with itself: A's too), on the first pass only
                for j, name in enumerate(b.names):
                    part = wide[:, offsets[j] : offsets[j + 1]]
                    what = f"{label_b}[{name!r}]"
                    sums_b[offsets[j] : offsets[j + 1]] += _shifted_sums(part, what, start)
                    products.add(grams_b[j], part, part, what)
            for i in group:
                name = a.names[i]
                if same:
                    X = wide[:, offsets[i] : offsets[i + 1]]
                else:
                    raw = _host(a.chunk(name, start, stop, dtype))
                    if i not in shift_a:
                        shift_a[i] = raw.mean(0, dtype=np.float64).astype(np_dtype)
                    buffer = buffers.setdefault(widths_a[i], np.empty((chunk_rows, widths_a[i]), dtype=np_dtype))
                    X = np.subtract(raw, shift_a[i], out=buffer[: stop - start], casting="same_kind")
                    sums_a[i] += _shifted_sums(X, f"A[{name!r}]", start)
                    products.add(grams_a[i], X, X, f"A[{name!r}]")
                if i in cross:
                    products.add(cross[i], X, wide[:, first_col[i] :], f"A[{name!r}] x the layers of {label_b}")
            del wide
            logger.debug("linear CKA: group %d of %d, rows %d..%d of %d read", g + 1, len(groups), start, stop, n)
        for i, total in cross.items():
            s_a = sums_b[offsets[i] : offsets[i + 1]] if same else sums_a[i]
            total -= np.outer(s_a, sums_b[first_col[i] :] / n)
            for j in range(len(b.names)):
                if not same or j > i:
                    block = total[:, offsets[j] - first_col[i] : offsets[j + 1] - first_col[i]]
                    numerators[(i, j)] = float(np.einsum("ij,ij->", block, block))
        del cross
    if same:
        sums_a = {i: sums_b[offsets[i] : offsets[i + 1]] for i in range(len(a.names))}
    norms_b = [
        _centred_norm(grams_b[j], sums_b[offsets[j] : offsets[j + 1]], n, name, label_b)
        for j, name in enumerate(b.names)
    ]
    norms_a = (
        norms_b if same else [_centred_norm(grams_a[i], sums_a[i], n, name, "A") for i, name in enumerate(a.names)]
    )
    return numerators, norms_a, norms_b


def _centred_norm(gram: np.ndarray, sums: np.ndarray, n: int, layer: str, side: str) -> float:
    """``||X_c^T X_c||_F`` from the shifted Gram matrix and column sums."""
    norm = float(np.linalg.norm(gram - np.outer(sums, sums / n)))
    if norm <= 0:
        raise ValueError(
            f"layer {layer!r} of {side} has zero variance (all rows are identical), so linear CKA is "
            "undefined. Leave that layer out, or check how it was extracted."
        )
    return norm


# -------------------------------------------------------------------------------------------- k-NN measures
def _neighbour_lists(side: _Layers, k: int, dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    out = {}
    for name in side.names:
        what = f"{side.side}[{name!r}]"
        X = check_array(side.whole(name, dtype), what)[0]
        if bool((X == X[0]).all()):
            raise ValueError(
                f"layer {name!r} of {side.side} has zero variance (all rows are identical), so its nearest "
                "neighbours are undefined. Leave that layer out, or check how it was extracted."
            )
        out[name] = self_knn_cosine(X, k, name=what)
        logger.debug("k-NN of %s done", what)
    return out


def _knn_table(a: _Layers, b: _Layers, same: bool, metric: str, k: int) -> np.ndarray:
    dtype = torch.float64 if torch.float64 in (a.dtype(), b.dtype()) else torch.float32
    low = 2 if metric == "cknna" else 1
    check_number(k, "k", integer=True, low=low)
    min_rows = 4 if metric == "cknna" else 2
    if a.n < min_rows or k > a.n - 1:
        raise ValueError(
            f"{metric} with k={k} needs more than k rows (and at least {min_rows}); the layers have {a.n}. "
            "Lower k or encode more items."
        )
    neigh_a = _neighbour_lists(a, k, dtype)
    neigh_b = neigh_a if same else _neighbour_lists(b, k, dtype)
    out = np.empty((len(a.names), len(b.names)))
    for i, name_a in enumerate(a.names):
        for j, name_b in enumerate(b.names):
            if same and j < i and metric == "mutual_knn":
                # mutual kNN is symmetric; CKNNA is not (its HSIC reads 1^T K L 1 of non-symmetric kNN kernels)
                out[i, j] = out[j, i]
                continue
            va, ia = neigh_a[name_a]
            vb, ib = neigh_b[name_b]
            out[i, j] = (
                mutual_knn_from_neighbours(ia, ib) if metric == "mutual_knn" else cknna_from_neighbours(va, ia, vb, ib)
            )
    return out


# -------------------------------------------------------------------------------------------- entry point
def similarity_matrix(
    states_a: Mapping[str, Any] | LayeredStore,
    states_b: Mapping[str, Any] | LayeredStore | None = None,
    *,
    metric: str = "linear_cka",
    k: int = 10,
    chunk_rows: int | None = None,
    name_a: str = "A",
    name_b: str | None = None,
) -> LayerSimilarity:
    """Score every layer of model A against every layer of model B on the same items.

    Parameters
    ----------
    states_a : mapping of str to array of shape (n, d_layer), or LayeredStore
        Model A's layers (numpy arrays or torch tensors), rows paired with ``states_b``'s.
    states_b : same as states_a, optional
        Model B's layers; ``None`` compares A with itself (each layer's statistics are computed once and,
        for the symmetric measures linear CKA and mutual kNN, only half of the table).
        Two layered stores may list the same ids in different orders: B is read in A's order.
    metric : {"linear_cka", "mutual_knn", "cknna"}
        As :func:`~latentalign.functional.similarity.linear_cka`,
        :func:`~latentalign.functional.similarity.mutual_knn` (cosine neighbours) and
        :func:`~latentalign.functional.similarity.cknna`.
    k : int
        Neighbourhood size of the k-NN measures.
    chunk_rows : int, optional
        Rows read at once for linear CKA (one chunk of every layer is held at a time; the chunked
        products run on the CPU). Default: all rows for arrays in memory, 8192 for layered stores.
    name_a, name_b : str
        Model names kept in the result (axis labels); ``name_b`` defaults to ``name_a`` when
        ``states_b`` is None, else to ``"B"``.

    Returns
    -------
    LayerSimilarity

    Raises
    ------
    ValueError
        If the sides have different row counts, a layer has zero variance or non-finite values.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 8))
    >>> Q = np.linalg.qr(rng.standard_normal((8, 8)))[0]
    >>> result = similarity_matrix({"x": X, "noise": rng.standard_normal((200, 8))}, {"rotated": X @ Q})
    >>> np.round(result.values, 3).tolist()
    [[1.0], [0.038]]
    """
    check_choice(metric, "metric", LAYER_METRICS)
    check_number(chunk_rows, "chunk_rows", integer=True, low=1, allow_none=True)
    same = states_b is None
    a = _Layers(states_a, "A")
    b = a if states_b is None else _Layers(states_b, "B")
    if not same:
        b.align_to(a)
    if chunk_rows is None:
        chunk_rows = STORE_CHUNK_ROWS if (a.store is not None or b.store is not None) else max(a.n, 1)
    if a.n < 2:
        raise ValueError(f"{metric} needs at least 2 paired rows; the layers have {a.n}.")
    with torch.no_grad():
        if metric == "linear_cka":
            values = _linear_cka(a, b, same, int(chunk_rows))
        else:
            values = _knn_table(a, b, same, metric, k)
    return LayerSimilarity(
        values=values,
        layers_a=list(a.names),
        layers_b=list(b.names),
        metric=metric,
        n=a.n,
        name_a=name_a,
        name_b=(name_a if same else "B") if name_b is None else name_b,
        k=None if metric == "linear_cka" else int(k),
    )
