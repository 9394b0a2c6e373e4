"""Procrustes aligner: a rotation (semi-orthogonal map), with optional centring, scaling and standardising.

Also home of :class:`StreamingAligner`, the shared shell of the aligners solved from streamed sufficient
statistics (:class:`~latentalign.functional.moments.CrossStats`): Procrustes and Affine.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch

from latentalign._array import ArrayLike
from latentalign._validation import (
    check_choice,
    check_is_fitted,
    check_number,
    check_pair,
    external_stacklevel,
    warn_underdetermined,
)
from latentalign.align.base import Aligner, cast_like
from latentalign.exceptions import IllConditionedWarning
from latentalign.functional.moments import CrossStats, compute_stats
from latentalign.functional.procrustes import (
    COMPLEMENTS,
    paired_stats,
    procrustes_from_stats,
    procrustes_path_from_stats,
)

__all__ = ["Procrustes", "StreamingAligner", "SHRINKAGE_GRID", "SHRINKAGE_FOLDS"]

_F64 = torch.float64
#: Shrinkage values ``shrinkage="cv"`` chooses among (0: the unshrunk fit; the largest is nearly the identity).
SHRINKAGE_GRID = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
#: Folds of the pairs for ``shrinkage="cv"`` (fewer when there are fewer pairs).
SHRINKAGE_FOLDS = 5


class StreamingAligner(Aligner):
    """An aligner fitted from :class:`CrossStats`: ``fit``, ``partial_fit`` and ``fit_from_stats``.

    ``fit`` computes the statistics in one pass and solves at once. ``partial_fit`` merges the chunk's
    statistics into ``stats_`` and solves *lazily*: the ``O(d^3)`` solve runs on the first use of the
    solution (``transform``, ``inverse_transform``, ``score``, ``save`` or reading a solution attribute),
    so streaming many chunks costs one solve, not one per chunk. Statistics merge exactly, so any split
    of the rows into ``partial_fit`` calls gives the ``fit`` result up to float64 rounding.

    Subclasses define ``_solution_attrs``, ``_check_params``, ``_stats_options``, ``_min_rows`` and
    ``_solve``.
    """

    supports_partial_fit: ClassVar[bool] = True
    #: Fitted attributes computed by ``_solve`` from ``stats_`` (recomputed lazily after partial_fit).
    _solution_attrs: ClassVar[tuple[str, ...]] = ()

    # -- to implement -------------------------------------------------------------------------------
    def _check_params(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _stats_options(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _min_rows(self) -> int:
        return 1

    def _solve(self, stats: CrossStats) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- fitting ------------------------------------------------------------------------------------
    def fit(self, X: ArrayLike, Y: ArrayLike) -> StreamingAligner:
        """Fit on paired rows of ``X`` (source) and ``Y`` (target) in one pass; return ``self``.

        Parameters
        ----------
        X : array of shape (n_samples, d_x)
        Y : array of shape (n_samples, d_y)
            Paired rows, numpy arrays or torch tensors (not mixed), any float dtype; never copied whole.
        """
        self._check_params()
        stats, _, _ = paired_stats(X, Y, min_rows=self._min_rows(), **self._stats_options())
        self._reset()
        self._remember_feature_names(X)
        self._set_stats(stats)
        self._ensure_solved()
        return self

    def partial_fit(self, X: ArrayLike, Y: ArrayLike) -> StreamingAligner:
        """Add a chunk of paired rows to the statistics; return ``self`` (solved lazily, see the class).

        Calling ``partial_fit`` after ``fit`` continues from the rows ``fit`` saw; use ``fit`` or
        ``clone()`` to start over.
        """
        self._check_params()
        stats, _, _ = paired_stats(X, Y, **self._stats_options())
        if "stats_" in vars(self):
            self._check_chunk_dims(stats)
            self._check_feature_names(X)
            stats = self.get_stats().merge(stats)
        else:
            self._remember_feature_names(X)
        self._set_stats(stats)
        return self

    def fit_from_stats(self, stats: CrossStats) -> StreamingAligner:
        """Fit from precomputed statistics (e.g. merged from shards computed elsewhere); return ``self``.

        Examples
        --------
        >>> import torch
        >>> from latentalign.functional.moments import compute_stats
        >>> X = torch.randn(200, 4, dtype=torch.float64)
        >>> Y = X @ torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))[0]
        >>> shards = [compute_stats(X[i:i + 50], Y[i:i + 50]) for i in range(0, 200, 50)]
        >>> merged = shards[0].merge(shards[1]).merge(shards[2]).merge(shards[3])
        >>> a = Procrustes().fit_from_stats(merged); b = Procrustes().fit(X, Y)
        >>> bool(torch.allclose(a.rotation_, b.rotation_, atol=1e-10))
        True
        """
        if not isinstance(stats, CrossStats):
            raise TypeError(f"stats must be a CrossStats, got {type(stats).__name__}.")
        self._check_params()
        self._reset()
        self._set_stats(stats)
        self._ensure_solved()
        return self

    def get_stats(self) -> CrossStats:
        """The accumulated :class:`CrossStats` (mergeable with other shards' statistics)."""
        check_is_fitted(self, ["stats_"])
        return CrossStats.from_dict(self.stats_)

    # -- internals ----------------------------------------------------------------------------------
    def _check_chunk_dims(self, stats: CrossStats) -> None:
        owner = type(self).__name__
        if stats.dim_x != self.n_features_in_:
            raise ValueError(
                f"X has {stats.dim_x} features, but {owner} was fitted with {self.n_features_in_}. Pass "
                "chunks from the same model (and layer) as the earlier partial_fit calls."
            )
        if stats.dim_y != self.n_features_out_:
            raise ValueError(
                f"Y has {stats.dim_y} features, but {owner} was fitted with {self.n_features_out_} target "
                "features. Pass chunks from the same model (and layer) as the earlier partial_fit calls."
            )

    def _reset(self) -> None:
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)

    def _set_stats(self, stats: CrossStats) -> None:
        self.n_features_in_ = stats.dim_x
        self.n_features_out_ = stats.dim_y
        self.stats_ = stats.to_dict()
        for key in self._solution_attrs:
            self.__dict__.pop(key, None)

    def _ensure_solved(self) -> None:
        if all(key in self.__dict__ for key in self._solution_attrs):
            return
        stats = self.get_stats()
        if stats.n < self._min_rows():
            raise ValueError(
                f"{type(self).__name__} has seen {stats.n} rows, but at least {self._min_rows()} are "
                "required with these settings; pass more rows to partial_fit."
            )
        self.__dict__.update(self._solve(stats))

    def __getattr__(self, name: str) -> Any:
        # Called only when normal lookup fails: solution attributes are computed on first access after
        # partial_fit. Everything else (including during copying/unpickling) raises as usual.
        if name in type(self)._solution_attrs and "stats_" in self.__dict__:
            self._ensure_solved()
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _prepare_save(self) -> None:
        if "stats_" in self.__dict__:
            self._ensure_solved()

    def _transform(self, X: torch.Tensor) -> torch.Tensor:
        self._ensure_solved()
        W, b = self._forward_map()
        return torch.addmm(cast_like(b, X), X, cast_like(W, X))

    def _inverse_transform(self, Z: torch.Tensor) -> torch.Tensor:
        self._ensure_solved()
        W, b = self._backward_map()
        return torch.addmm(cast_like(b, Z), Z, cast_like(W, Z))

    def _module(self, *, trainable: bool, inverse: bool) -> torch.nn.Module:
        from latentalign.align.modules import LinearMap

        self._ensure_solved()
        W, b = self._backward_map() if inverse else self._forward_map()
        return LinearMap(W.T, b, trainable=trainable)

    def _forward_map(self) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward_map(self) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


class Procrustes(StreamingAligner):
    """Orthogonal Procrustes alignment ``Y ~ s ((X - m_x) / s_x) R * s_y + m_y``.

    ``R`` is the rotation (``d_x == d_y``) or semi-orthogonal map (``d_x != d_y``) maximising
    ``trace(R^T M)`` with ``M`` the (standardised) cross-covariance: the float64 thin SVD ``M = U S V^T``
    gives ``R = U V^T``. See :mod:`latentalign.functional.procrustes` for why the different-dimension
    solution is exactly the zero-padded one.

    Parameters
    ----------
    center : bool, default True
        Subtract the column means of ``X`` and ``Y`` (saved as ``mean_x_``, ``mean_y_``).
    scale : bool, default False
        Fit the isotropic scale ``s = trace(S) / ||X_std||_F^2`` (``scale_``); otherwise ``scale_ = 1``.
    standardize : bool, default False
        Divide each column of both sides by its standard deviation (about the mean, or about 0 with
        ``center=False``; constant columns are left as they are), saved as ``std_x_``, ``std_y_``.
    pad : {"zero"}, default "zero"
        How spaces of different dimensions are matched: ``"zero"`` pads the smaller one with zeros, which
        is the thin-SVD semi-orthogonal solution (nothing is materialised).
    complement : {"identity", "svd"}, default "identity"
        With fewer pairs than dimensions the pairs fix the rotation only on their span; every rotation of
        the rest fits them equally well. ``"identity"`` chooses, among those optimal rotations, the one
        closest to the (zero-padded) identity: the directions no pair constrains stay where they are
        (a second, small Procrustes problem on the complements of both spans, with the identity as
        target; see :mod:`latentalign.functional.procrustes`). That is right when both sides share
        coordinates (the same space seen twice, a fine-tuned copy) and no worse than arbitrary otherwise.
        ``"svd"``: whatever the thin SVD returns (the behaviour of earlier versions). Needs only the
        streamed statistics; a full-rank fit is the same either way.
    whiten : bool, default False
        ZCA-whiten both sides before the rotation and de-whiten the mapped source with the target's
        covariance (VecMap's whitening, orthogonal mapping and target de-whitening): the map is
        ``C_xx^{-1/2} R C_yy^{1/2}`` with ``R`` the rotation between the whitened spaces. It sends ``X``
        exactly onto ``Y = X A + b`` for any invertible ``A`` (not only rotations), at the price of the
        full covariances (``d^2`` statistics per side) and of needing clearly more pairs than dimensions
        (the covariances must be well estimated). Not combined with ``scale`` or ``standardize``.
    shrinkage : float or "cv", default 0.0
        Pull the rotation towards the (zero-padded) identity: the fit maximises
        ``trace(R^T M) + shrinkage * mean(S) * trace(R^T E)``, the most probable rotation under a prior
        centred on the identity (see :mod:`latentalign.functional.procrustes`). With fewer pairs than
        dimensions, between spaces that share coordinates (a distilled or fine-tuned copy), this is what
        generalises: MiniLM-L6 -> MiniLM-L3 on WordNet lemmas, 50 pairs, held-out R@1 (CSLS) 0.93 with
        ``"cv"`` against 0.86 unshrunk. ``"cv"`` chooses the value in :data:`SHRINKAGE_GRID` whose maps,
        fitted on 4/5 of the pairs, send the held-out fifth closest to their targets (mean cosine; the
        smallest value among equals); it needs the rows, so only :meth:`fit` takes it. Spaces that do
        not share coordinates get ``0`` chosen (the identity explains nothing there). Not with
        ``whiten=True``.

    Attributes
    ----------
    rotation_ : torch.Tensor of shape (d_x, d_y), float64
    scale_ : float
    mean_x_, mean_y_, std_x_, std_y_ : torch.Tensor, float64
    singular_values_ : torch.Tensor of shape (min(d_x, d_y),), float64
        Singular values of the (standardised) cross-covariance ``M``.
    rank_ : int
        Directions of the rotation fixed by the pairs (``min(d_x, d_y)`` when the fit is determined):
        singular values of ``M`` above ``1e-10`` of the largest. Rows that are computed (projections onto
        a subspace, transferred or averaged rows) should come in float64: rounded to float32, their
        rounding noise (about ``1e-7``) counts as fixed directions, and decides the rotation there.
    shrinkage_ : float
        The shrinkage used (the chosen one with ``shrinkage="cv"``).
    cv_scores_ : torch.Tensor of shape (len(SHRINKAGE_GRID),), float64
        ``shrinkage="cv"`` only: held-out mean cosine of each value of :data:`SHRINKAGE_GRID`, in its order.
    whiten_x_, dewhiten_x_ : torch.Tensor of shape (d_x, d_x), float64
        ``C_xx^{-1/2}`` and ``C_xx^{1/2}`` with ``whiten=True`` (empty ``(0, 0)`` tensors otherwise).
    whiten_y_, dewhiten_y_ : torch.Tensor of shape (d_y, d_y), float64
        The same for ``Y``.
    stats_ : dict
        The streamed sufficient statistics (see :meth:`get_stats`), kept so that ``partial_fit`` can go on
        after loading a saved aligner.
    n_features_in_, n_features_out_ : int

    Notes
    -----
    ``inverse_transform`` is exact when ``d_x <= d_y`` (then ``R R^T = I``): ``inverse_transform(transform(X))
    == X``. When ``d_x > d_y`` it returns the projection of ``X`` onto the ``d_y``-dimensional subspace the
    map keeps (``R R^T`` is a projection), i.e. the least-squares preimage.

    ``partial_fit`` solves lazily (see :class:`StreamingAligner`). Streaming ``standardize``/``scale`` uses
    the per-column centred sums of squares, merged with Chan's update, never raw sums of squares.

    Warns
    -----
    IllConditionedWarning
        When solved from fewer samples than ``min(d_x, d_y)`` (one more with ``center=True``): the rotation
        is then determined only on the span of the samples, the rest is chosen by ``complement``. Like
        :class:`Affine`'s.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((100, 5))
    >>> Q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    >>> aligner = Procrustes(scale=True).fit(X, 3.0 * X @ Q + 2.0)
    >>> bool(np.allclose(aligner.rotation_.numpy(), Q)), round(aligner.scale_, 8)
    (True, 3.0)
    >>> bool(np.allclose(aligner.inverse_transform(aligner.transform(X)), X))
    True
    """

    _solution_attrs: ClassVar[tuple[str, ...]] = (
        "rotation_",
        "scale_",
        "mean_x_",
        "mean_y_",
        "std_x_",
        "std_y_",
        "singular_values_",
        "rank_",
        "whiten_x_",
        "dewhiten_x_",
        "whiten_y_",
        "dewhiten_y_",
        "shrinkage_",
    )

    def __init__(
        self,
        *,
        center: bool = True,
        scale: bool = False,
        standardize: bool = False,
        pad: str = "zero",
        complement: str = "identity",
        whiten: bool = False,
        shrinkage: float | str = 0.0,
    ) -> None:
        self.center = center
        self.scale = scale
        self.standardize = standardize
        self.pad = pad
        self.complement = complement
        self.whiten = whiten
        self.shrinkage = shrinkage

    def _check_params(self) -> None:
        for name in ("center", "scale", "standardize", "whiten"):
            check_choice(getattr(self, name), name, [True, False])
        check_choice(self.pad, "pad", ["zero"])
        check_choice(self.complement, "complement", COMPLEMENTS)
        if self.shrinkage != "cv":
            if isinstance(self.shrinkage, str):
                raise ValueError(
                    f"shrinkage must be a number >= 0 or 'cv', got {self.shrinkage!r}. Pass e.g. "
                    "shrinkage=1.0, or shrinkage='cv' to choose it on held-out pairs."
                )
            check_number(self.shrinkage, "shrinkage", low=0.0)
        if self.whiten and self.shrinkage != 0:
            raise ValueError(
                f"whiten=True cannot be combined with shrinkage={self.shrinkage!r}: the identity prior has "
                "no meaning between whitened spaces. Set shrinkage=0.0, or whiten=False."
            )
        if self.whiten and (self.scale or self.standardize):
            raise ValueError(
                "whiten=True cannot be combined with scale=True or standardize=True: whitening already "
                "rescales every direction of both sides. Keep whiten=True alone, or set whiten=False."
            )

    def _stats_options(self) -> dict[str, Any]:
        whiten = bool(self.whiten)
        return {"squares": bool(self.scale or self.standardize), "gram": whiten, "gram_y": whiten}

    def _min_rows(self) -> int:
        return 2 if self.center else 1

    def fit(self, X: ArrayLike, Y: ArrayLike) -> Procrustes:
        """Fit on paired rows of ``X`` (source) and ``Y`` (target) in one pass; return ``self``.

        With ``shrinkage="cv"`` the pairs are first split into folds to choose the shrinkage (see the
        class); the final map is fitted on all of them.

        Parameters
        ----------
        X : array of shape (n_samples, d_x)
        Y : array of shape (n_samples, d_y)
            Paired rows, numpy arrays or torch tensors (not mixed), any float dtype.
        """
        self._check_params()
        self._cv_choice: float | None = None
        if self.shrinkage == "cv":
            scores = self._cross_validate(X, Y)
            self._cv_choice = max(scores, key=lambda lam: scores[lam])  # the smallest of equal scores
        super().fit(X, Y)
        if self._cv_choice is not None:
            self.cv_scores_ = torch.tensor([scores[lam] for lam in SHRINKAGE_GRID], dtype=_F64)
        return self

    def partial_fit(self, X: ArrayLike, Y: ArrayLike) -> Procrustes:
        self._reject_cv("partial_fit")
        return super().partial_fit(X, Y)

    def fit_from_stats(self, stats: CrossStats) -> Procrustes:
        self._reject_cv("fit_from_stats")
        return super().fit_from_stats(stats)

    partial_fit.__doc__ = StreamingAligner.partial_fit.__doc__
    fit_from_stats.__doc__ = StreamingAligner.fit_from_stats.__doc__

    def _reject_cv(self, method: str) -> None:
        if self.shrinkage == "cv":
            raise ValueError(
                f"shrinkage='cv' holds out pairs to choose the shrinkage, so it needs the rows; {method} sees "
                "only statistics. Use fit(X, Y), or pass a number (e.g. the shrinkage_ that a fit chose)."
            )

    def _cross_validate(self, X: ArrayLike, Y: ArrayLike) -> dict[float, float]:
        """Held-out mean cosine of every shrinkage in :data:`SHRINKAGE_GRID` (folds: row ``i`` in ``i % k``)."""
        Xt, Yt, _ = check_pair(X, Y, min_rows=3)
        n = Xt.shape[0]
        k = min(SHRINKAGE_FOLDS, n)
        fold = torch.arange(n, device=Xt.device) % k
        totals = dict.fromkeys(SHRINKAGE_GRID, 0.0)
        for f in range(k):
            train, held = fold != f, fold == f
            stats = compute_stats(Xt[train], Yt[train], **self._stats_options())
            path = procrustes_path_from_stats(
                stats,
                SHRINKAGE_GRID,
                center=bool(self.center),
                scale=bool(self.scale),
                standardize=bool(self.standardize),
                complement=self.complement,
            )
            for lam, sol in zip(SHRINKAGE_GRID, path):
                W, b = _rotation_map(
                    sol["rotation"], sol["scale"], sol["std_x"], sol["std_y"], sol["mean_x"], sol["mean_y"]
                )
                mapped = torch.addmm(b, Xt[held].to(_F64), W)
                cos = torch.nn.functional.cosine_similarity(mapped, Yt[held].to(_F64), dim=1)
                totals[lam] += float(cos.sum())
        return {lam: total / n for lam, total in totals.items()}

    def _solve(self, stats: CrossStats) -> dict[str, Any]:
        shrinkage = float(self._cv_choice if self.shrinkage == "cv" else self.shrinkage)  # type: ignore[arg-type]
        # centring spends one row: n centred rows span at most n - 1 directions
        dim = min(stats.dim_x, stats.dim_y)
        warn_underdetermined(
            "Procrustes",
            stats.n,
            dim,
            dim + int(bool(self.center)),
            setting=" and center=True" if self.center else "",
            consequence="the rotation is fixed only on the span of the samples; the other directions are "
            + (
                "pulled towards the identity (shrinkage), which is right only if both sides share coordinates."
                if shrinkage > 0
                else "kept as close to the identity as the fit allows, which is right only if both sides share coordinates."
                if self.complement == "identity"
                else "arbitrary, so the map generalises poorly."
            ),
            fix="Use more anchors than dimensions, or reduce the dimension first (e.g. with PCA).",
            stacklevel=external_stacklevel(),
        )
        sol = procrustes_from_stats(
            stats,
            center=bool(self.center),
            scale=bool(self.scale),
            standardize=bool(self.standardize),
            complement=self.complement,
            whiten=bool(self.whiten),
            shrinkage=shrinkage,
        )
        empty = torch.zeros((0, 0), dtype=_F64)
        if self.whiten and sol["whiten_rank"] < max(stats.dim_x, stats.dim_y):
            warnings.warn(
                f"whiten=True: the covariance of X or Y has numerical rank {sol['whiten_rank']}, below its "
                f"dimension ({stats.dim_x} / {stats.dim_y}), so the directions without variance are dropped "
                "from the map. Use clearly more pairs than dimensions, or reduce the dimension first (PCA).",
                IllConditionedWarning,
                stacklevel=external_stacklevel(),
            )
        return {
            "rotation_": sol["rotation"],
            "scale_": float(sol["scale"]),
            "mean_x_": sol["mean_x"],
            "mean_y_": sol["mean_y"],
            "std_x_": sol["std_x"],
            "std_y_": sol["std_y"],
            "singular_values_": sol["singular_values"],
            "rank_": int(sol["rank"]),
            **{f"{key}_": sol.get(key, empty) for key in ("whiten_x", "dewhiten_x", "whiten_y", "dewhiten_y")},
            "shrinkage_": shrinkage,
        }

    def _forward_map(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.whiten_x_.numel():
            W = self.whiten_x_ @ self.rotation_.to(_F64) @ self.dewhiten_y_
        else:
            return _rotation_map(self.rotation_, self.scale_, self.std_x_, self.std_y_, self.mean_x_, self.mean_y_)
        return W, self.mean_y_ - self.mean_x_ @ W

    def _backward_map(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.scale_ == 0:
            raise ValueError(
                "This Procrustes map has scale_ = 0 (the fitted scale collapsed), so it cannot be inverted."
            )
        if self.whiten_x_.numel():
            W = self.whiten_y_ @ self.rotation_.to(_F64).T @ self.dewhiten_x_
        else:
            W = self.rotation_.to(_F64).T * (self.std_x_[None, :] / (self.scale_ * self.std_y_[:, None]))
        return W, self.mean_x_ - self.mean_y_ @ W


def _rotation_map(
    rotation: torch.Tensor,
    scale: float,
    std_x: torch.Tensor,
    std_y: torch.Tensor,
    mean_x: torch.Tensor,
    mean_y: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)`` of ``x -> x W + b`` for a Procrustes solution without whitening (float64)."""
    W = rotation.to(_F64) * (scale / std_x[:, None]) * std_y[None, :]
    return W, mean_y - mean_x @ W
