"""Relative representations as an aligner: both spaces are sent to a shared, anchor-defined space."""

from __future__ import annotations

from typing import Any

import torch

from latentalign._array import ArrayLike, restore
from latentalign._validation import check_array, check_is_fitted, check_n_features, check_pair
from latentalign.align.base import Aligner, cast_like
from latentalign.anchors import check_anchors
from latentalign.functional.relative import (
    Decoder,
    MetricSpec,
    anchor_basis,
    check_anchor_norms,
    check_n_anchors,
    check_relative_options,
    parse_metrics,
    pick_invertible_block,
    project,
)

__all__ = ["RelativeProjection"]


class RelativeProjection(Aligner):
    """Relative projection (Moschella et al., ICLR 2023) fitted on paired anchors of two spaces.

    ``fit(X, Y)`` takes paired anchor rows: row ``i`` of ``X`` (source model) and row ``i`` of ``Y``
    (target model) embed the same item. Both spaces are then represented by their similarities to their
    own anchors, which makes them comparable: :meth:`transform` maps source embeddings and
    :meth:`transform_target` maps target embeddings into the same ``n_features_out_``-dimensional
    relative space, so a head trained on ``transform_target(Y)`` can be applied to ``transform(X)``
    (zero-shot stitching). :meth:`inverse_transform` decodes relative coordinates into the *target*
    absolute space.

    The design notes sketch ``RelativeProjection(anchors, ...)``; this class takes the anchors in
    ``fit(X, Y)`` instead, the scikit-learn shape every latentalign aligner shares (parameters in the
    constructor, data in ``fit``). Select the anchor rows first, e.g. with
    :func:`latentalign.anchors.select_anchors`, and pass ``X[idx], Y[idx]``.

    Parameters
    ----------
    metric : str or sequence of str, default="cosine"
        ``"cosine"``, ``"angular"``, ``"euclidean"``, ``"l1"``, ``"linf"``, ``"change_of_basis"`` (the
        coordinates of a point in the anchor basis, by least squares; invariant to every invertible linear
        map of the space when the centred anchors span it), or several for the product
        space of Cannistraci et al. (ICLR 2024); see :mod:`latentalign.functional.relative`.
    top_k : int, optional
        ASIF sparsification (Norelli et al., 2023): keep the ``top_k`` largest similarities per row,
        apply ``power``, rescale rows to unit norm.
    power : float, default=1.0
        Sign-preserving exponent of the kept similarities.
    center : bool, default=True
        Centre each space on the mean of its own anchors before projecting (Moschella et al.; Maiorca
        et al.): source embeddings by the source-anchor mean, target embeddings by the target-anchor mean.
    aggregate : {"concat", "concat_norm", "sum"}, default="concat"
        How a product of several metrics is combined (raw blocks side by side, per-row standardised
        blocks side by side, or standardised blocks summed).
    chunk_size : int, optional
        Rows processed at a time (memory bound); default: automatic.

    Attributes
    ----------
    source_anchors_ : tensor of shape ``(n_anchors, n_features_in_)``
    target_anchors_ : tensor of shape ``(n_anchors, n_features_target_)``
    source_mean_, target_mean_ : tensor
        Anchor means subtracted before projecting (zeros when ``center=False``).
    n_anchors_ : int
    n_features_in_ : int
        Source dimension.
    n_features_target_ : int
        Target dimension (what :meth:`inverse_transform` returns).
    n_features_out_ : int
        Relative dimension: ``n_anchors_`` (``len(metric) * n_anchors_`` for a product of metrics
        with ``aggregate="concat"`` or ``"concat_norm"``).

    Notes
    -----
    ``fit`` raises on fewer than 2 anchors, on exactly duplicated anchor rows in either space, and (for
    angle-based metrics) on anchors with zero norm after centring.

    :meth:`inverse_transform` solves a least-squares problem with the target anchors
    (:func:`latentalign.functional.relative.relative_inverse`): for cosine it recovers the direction of
    the centred target point exactly when ``n_anchors >= n_features_target_`` and the centred target
    anchors span the space; the norm is lost by construction and set to the mean norm of the centred
    target anchors. With fewer anchors (or a rank-deficient set) it returns the least-squares direction
    within their span (an approximation, announced by an ``IllConditionedWarning``). Euclidean
    coordinates are inverted exactly, norm included, with ``n_anchors >= n_features_target_ + 1`` in
    general position. Sparsified (``top_k``/``power``) coordinates, ``l1``/``linf`` alone and
    ``aggregate="sum"``/``"concat_norm"`` products are not invertible (``NotImplementedError``).

    :meth:`score` is the mean, over paired rows, of the Pearson correlation between ``transform(x_i)``
    and ``transform_target(y_i)`` (the cosine similarity of the two relative vectors after subtracting
    each one's mean over its coordinates), averaged over the metric blocks of a concatenated product
    (so that no block's offset or scale dominates). 1.0 means identical relative coordinates up to a
    positive affine rescaling per row (per block). The row centring removes the offset that makes the
    plain cosine of two all-negative distance vectors near 1 for any pair. Unrelated pairs do not
    score 0: all rows share the anchors' common similarity profile (on MiniLM vs e5 text embeddings a
    shuffled pairing scores about 0.6 with cosine, 0.17 with euclidean, against 0.74 and 0.44 for the
    true pairing), so compare a score with the same aligner's score on a shuffled pairing.

    Examples
    --------
    A target space that is a rotated, rescaled and shifted copy of the source is matched exactly:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 16))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    >>> Y = 2.0 * X @ Q + 1.0
    >>> rel = RelativeProjection().fit(X[:50], Y[:50])
    >>> bool(np.allclose(rel.transform(X), rel.transform_target(Y), atol=1e-8))
    True
    >>> round(rel.score(X, Y), 6)
    1.0
    """

    def __init__(
        self,
        *,
        metric: MetricSpec = "cosine",
        top_k: int | None = None,
        power: float = 1.0,
        center: bool = True,
        aggregate: str = "concat",
        chunk_size: int | None = None,
    ) -> None:
        self.metric = metric
        self.top_k = top_k
        self.power = power
        self.center = center
        self.aggregate = aggregate
        self.chunk_size = chunk_size

    # -- fit --------------------------------------------------------------------------------------------
    def fit(self, X: ArrayLike, Y: ArrayLike) -> RelativeProjection:
        """Store the paired anchors of both spaces (rows of ``X``: source, rows of ``Y``: target).

        Parameters
        ----------
        X : array of shape (n_anchors, n_features_in)
            Source-model embeddings of the anchors.
        Y : array of shape (n_anchors, n_features_target)
            Target-model embeddings of the same anchors, in the same order.

        Returns
        -------
        self
        """
        Xt, Yt, spec = self._validate_pair(X, Y)
        check_n_anchors(Xt.shape[0], "X (the source anchors)")
        metrics = parse_metrics(self.metric)
        n_out = check_relative_options(metrics, Xt.shape[0], self.top_k, self.power, self.aggregate, self.chunk_size)
        if not isinstance(self.center, bool):
            raise TypeError(f"center must be True or False, got {self.center!r}.")
        for name, A in (("X (the source anchors)", Xt), ("Y (the target anchors)", Yt)):
            check_anchors(A, name=name, warn=False)  # raises on exact duplicates
        dtype = spec.compute_dtype
        source = Xt.to(dtype).clone()
        target = Yt.to(dtype=dtype, device=Xt.device).clone()
        source_mean = source.mean(0) if self.center else torch.zeros_like(source[0])
        target_mean = target.mean(0) if self.center else torch.zeros_like(target[0])
        check_anchor_norms(source - source_mean, metrics, "X (the source anchors)")
        check_anchor_norms(target - target_mean, metrics, "Y (the target anchors)")
        self.source_anchors_ = source
        self.target_anchors_ = target
        self.source_mean_ = source_mean
        self.target_mean_ = target_mean
        self.n_anchors_ = int(source.shape[0])
        self.n_features_in_ = int(source.shape[1])
        self.n_features_target_ = int(target.shape[1])
        self.n_features_out_ = int(n_out)
        self._decoder_cache: tuple[Any, Decoder] | None = None
        return self

    # -- projections ------------------------------------------------------------------------------------
    def _project(self, Z: torch.Tensor, anchors: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        A = cast_like(anchors, Z)
        shift = cast_like(mean, Z) if self.center else None
        A_c = A - shift if shift is not None else A
        return project(
            Z,
            A_c,
            parse_metrics(self.metric),
            shift=shift,
            top_k=self.top_k,
            power=self.power,
            aggregate=self.aggregate,
            chunk_size=self.chunk_size,
        )

    def _transform(self, X: torch.Tensor) -> torch.Tensor:
        return self._project(X, self.source_anchors_, self.source_mean_)

    def _module(self, *, trainable: bool, inverse: bool) -> torch.nn.Module:
        from latentalign.align.modules import LinearMap, RelativeInverse, RelativeMap

        metrics = parse_metrics(self.metric)
        if "change_of_basis" in metrics:
            # coordinates in the anchor basis are a linear map (x - mean) pinv(A_c), and so is their inverse
            if len(metrics) > 1 or self.top_k is not None or self.power != 1.0:
                raise NotImplementedError(
                    "to_module supports metric='change_of_basis' alone (no product space, top_k=None, "
                    "power=1.0); use transform for other settings."
                )
            if inverse:
                A_c = (self.target_anchors_ - self.target_mean_).to(torch.float64)
                return LinearMap(A_c.T, self.target_mean_.to(torch.float64), trainable=trainable)
            A_c = (self.source_anchors_ - self.source_mean_).to(torch.float64)
            P = anchor_basis(A_c)
            return LinearMap(P.T, -(self.source_mean_.to(torch.float64) @ P), trainable=trainable)
        if inverse:
            block, decoder = self._decoder()  # raises where inverse_transform raises
            euclidean = decoder.metric == "euclidean"
            return RelativeInverse(
                decoder.pinv_T,
                self.target_mean_,
                metric=decoder.metric,
                block=block,
                sq=decoder.sq if euclidean else None,
                mid=decoder.mid if euclidean else None,
                scale=1.0 if euclidean else decoder.scale,
            )
        return RelativeMap(
            self.source_anchors_,
            self.source_mean_,
            metrics=parse_metrics(self.metric),
            top_k=self.top_k,
            power=self.power,
            aggregate=self.aggregate,
            trainable=trainable,
        )

    def transform(self, X: ArrayLike) -> ArrayLike:
        """Relative coordinates of source embeddings: similarities to the source anchors.

        Parameters
        ----------
        X : array of shape (n_samples, n_features_in_)

        Returns
        -------
        array of shape (n_samples, n_features_out_)
            Same kind (numpy/torch), dtype and device as ``X``.
        """
        return super().transform(X)

    def transform_target(self, Y: ArrayLike) -> ArrayLike:
        """Relative coordinates of target embeddings: similarities to the target anchors.

        Parameters
        ----------
        Y : array of shape (n_samples, n_features_target_)

        Returns
        -------
        array of shape (n_samples, n_features_out_)
            Same kind, dtype and device as ``Y``; comparable with :meth:`transform` of the paired rows.
        """
        check_is_fitted(self)
        Yt, spec = check_array(Y, "Y")
        check_n_features(Yt, self.n_features_target_, type(self).__name__ + " (target side)", "Y")
        return restore(self._project(Yt.to(spec.compute_dtype), self.target_anchors_, self.target_mean_), spec)

    # -- inverse ----------------------------------------------------------------------------------------
    def inverse_transform(self, Z: ArrayLike) -> ArrayLike:
        """Decode relative coordinates into the TARGET absolute space (least squares on target anchors).

        Parameters
        ----------
        Z : array of shape (n_samples, n_features_out_)
            Relative coordinates, from :meth:`transform` or :meth:`transform_target`.

        Returns
        -------
        array of shape (n_samples, n_features_target_)
            Exactness is described in the class Notes (cosine: direction exact with enough anchors, norm
            set to the mean centred-anchor norm; euclidean: exact).

        Raises
        ------
        NotImplementedError
            For sparsified coordinates, ``l1``/``linf`` only, or products with ``aggregate="sum"`` or
            ``"concat_norm"``.
        """
        return super().inverse_transform(Z)

    def _decoder(self) -> tuple[int, Decoder]:
        metrics = parse_metrics(self.metric)
        block = pick_invertible_block(metrics, self.aggregate, self.top_k, self.power)
        key = (metrics, block, self.center)
        cache = getattr(self, "_decoder_cache", None)
        if cache is None or cache[0] != key:
            decoder = Decoder(self.target_anchors_ - self.target_mean_, metrics[block])
            decoder.warn_if_underdetermined(stacklevel=6)  # the caller of inverse_transform
            cache = (key, decoder)
            self._decoder_cache = cache
        return block, cache[1]

    def _inverse_transform(self, Z: torch.Tensor) -> torch.Tensor:
        block, decoder = self._decoder()
        k = self.n_anchors_
        cols = Z[:, block * k : (block + 1) * k] if len(parse_metrics(self.metric)) > 1 else Z
        return decoder.decode(cols) + cast_like(self.target_mean_, Z)

    # -- score ------------------------------------------------------------------------------------------
    def score(self, X: ArrayLike, Y: ArrayLike) -> float:
        """Mean Pearson correlation between ``transform(x_i)`` and ``transform_target(y_i)``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features_in_)
        Y : array of shape (n_samples, n_features_target_), paired with ``X`` row by row.

        Returns
        -------
        float
            In [-1, 1]; 1.0 when paired rows have the same relative coordinates (up to a positive affine
            map per row and block). Rows with constant relative coordinates count as correlation 0.
        """
        check_is_fitted(self)
        Xt, Yt, _ = check_pair(X, Y)
        check_n_features(Xt, self.n_features_in_, type(self).__name__, "X")
        check_n_features(Yt, self.n_features_target_, type(self).__name__ + " (target side)", "Y")
        zx = self._project(Xt, self.source_anchors_, self.source_mean_)
        zy = self._project(Yt, self.target_anchors_, self.target_mean_)
        zx = zx.to(torch.float64)
        zy = zy.to(device=zx.device, dtype=torch.float64)
        n_blocks = self.n_features_out_ // self.n_anchors_
        zx = zx.reshape(zx.shape[0], n_blocks, -1)
        zy = zy.reshape(zy.shape[0], n_blocks, -1)
        zx = zx - zx.mean(2, keepdim=True)
        zy = zy - zy.mean(2, keepdim=True)
        den = torch.linalg.vector_norm(zx, dim=2) * torch.linalg.vector_norm(zy, dim=2)
        corr = torch.where(den > 0, (zx * zy).sum(2) / den.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
        return float(corr.mean())
