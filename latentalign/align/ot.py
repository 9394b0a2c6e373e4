"""Optimal-transport alignment: match unpaired rows with OT, then fit a map that works on unseen points.

:class:`OTAligner` alternates two steps (Wasserstein-Procrustes; Grave et al., 2019):

1. *couple*: an OT coupling between the (mapped) source rows and the target rows -- exact EMD, entropic
   Sinkhorn, or Gromov-Wasserstein (see :mod:`latentalign.functional.ot`, all solved by POT);
2. *map*: each coupled source row is sent to its barycentric target ``sum_j P_ij y_j / sum_j P_ij``,
   and a Procrustes (or affine) map is fitted on those targets plus the known pairs.

The fitted map, not the coupling, is what :meth:`~OTAligner.transform` applies, so it works on unseen
points, and :meth:`~OTAligner.inverse_transform` is the map's inverse.

Unpaired data: ``fit(X, Y, pairs=None)``
----------------------------------------
Unlike the other aligners, the rows of ``X`` and ``Y`` are **not** assumed paired, and their numbers may
differ. ``pairs`` is an optional ``(m, 2)`` integer array: row ``k`` says that ``X[pairs[k, 0]]`` and
``Y[pairs[k, 1]]`` are the same item. The rows named in ``pairs`` are the *anchors*; all other rows
are *free* and are matched by OT.

* ``pairs=None`` -- fully unsupervised. The first map comes from a Gromov-Wasserstein coupling, which
  compares distances inside each space and so needs no pairs and works across dimensions.
* ``pairs`` given -- semi-supervised. The first map is fitted on the pairs when they outnumber the source
  dimensions (otherwise that map is under-determined, and the Gromov-Wasserstein start is used, with the
  pairs added to its map fit); the OT rounds then match the free rows, and every later map is fitted on
  the pairs *and* the OT targets.
* To use rows paired by position (as ``Procrustes`` does), pass
  ``pairs=np.stack([np.arange(n), np.arange(n)], 1)``.

Scale
-----
Linear OT rounds build one ``n_x x n_y`` cost in the inputs' dtype (float32 inputs: 400 MB at 1e4 x 1e4),
never float64, except exact EMD whose POT solver copies it to float64. ``batch_size`` switches Sinkhorn
to POT's lazy solver (no ``n x m`` matrix at all). ``max_samples`` caps the rows that enter a linear OT
round and ``gw_samples`` (default 2000) those of a Gromov-Wasserstein round (O(n^3) per iteration and
two ``n x n`` matrices): rows are drawn at random (``random_state``), the map fitted on them is applied to
all rows. Gromov-Wasserstein couplings are computed in float64 whatever the input dtype (the sample is
bounded, and POT's entropic GW underflows in float32 for useful ``reg``; see
:func:`latentalign.functional.ot.gw_plan`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from latentalign._array import ArrayLike
from latentalign._validation import check_choice, check_number, check_pair
from latentalign.align.base import Aligner
from latentalign.exceptions import ConvergenceWarning
from latentalign.functional.ot import (
    METRICS,
    barycentric_projection_tensors,
    cost_matrix_tensors,
    gw_plan_tensors,
    ot_plan_tensors,
    sinkhorn_projection_tensors,
)
from latentalign.preprocessing import make_preprocessor

__all__ = ["OTAligner", "check_pairs", "check_unpaired", "make_map"]

_METHODS = ("sinkhorn", "emd", "gw")
_REFINES = ("procrustes", "affine")
_INITS = ("auto", "gw", "relative", "identity")


def make_map(refine: str) -> Aligner:
    """A fresh map estimator for ``refine`` ("procrustes" or "affine")."""
    check_choice(refine, "refine", _REFINES)
    if refine == "procrustes":
        from latentalign.align.procrustes import Procrustes

        return Procrustes()
    from latentalign.align.affine import Affine

    return Affine()


def min_pairs(refine: str) -> int:
    """Fewest rows a map of kind ``refine`` can be fitted on (2: a centred fit needs two distinct rows)."""
    return 2


def check_unpaired(X: ArrayLike, Y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two sets of rows that need not be paired (counts and widths may differ).

    Both must be of one backend and on one device, with at least 2 finite rows each; returns them as
    tensors in their common compute dtype.
    """
    Xt, Yt, _ = check_pair(X, Y, paired=False, min_rows=2)
    return Xt, Yt


def check_pairs(pairs: Any, n_x: int, n_y: int) -> torch.Tensor:
    """Validate known pairs; return them as an ``(m, 2)`` int64 tensor (``(0, 2)`` for ``None``).

    Examples
    --------
    >>> check_pairs([[0, 1], [2, 0]], 3, 2).tolist()
    [[0, 1], [2, 0]]
    """
    if pairs is None:
        return torch.zeros((0, 2), dtype=torch.long)
    if isinstance(pairs, torch.Tensor):
        arr = pairs.detach().cpu().numpy()
    else:
        arr = np.asarray(pairs)
    if arr.size == 0:
        return torch.zeros((0, 2), dtype=torch.long)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(
            f"pairs must be an integer array of shape (m, 2) (row k: index into X, index into Y), got shape "
            f"{arr.shape}. Stack the two index columns, e.g. np.stack([ix, iy], axis=1)."
        )
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"pairs must hold integer row indices, got dtype {arr.dtype}.")
    for col, (name, n) in enumerate((("X", n_x), ("Y", n_y))):
        bad = (arr[:, col] < 0) | (arr[:, col] >= n)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"pairs[{k}, {col}] = {int(arr[k, col])} is not a row of {name}, which has {n} rows "
                f"(valid indices 0..{n - 1})."
            )
    return torch.from_numpy(arr.astype(np.int64))


def _sample(rows: torch.Tensor, cap: int | None, gen: torch.Generator, how: str = "random") -> torch.Tensor:
    if cap is None or rows.numel() <= cap:
        return rows
    if how == "first":
        return rows[:cap]
    pick = torch.randperm(rows.numel(), generator=gen)[:cap]
    return rows[pick.sort().values]


def _free_rows(n: int, taken: torch.Tensor) -> torch.Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[taken] = False
    return mask.nonzero().reshape(-1)


def _relative_t(X: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Cosine similarities of the rows of ``X`` to ``anchors``: coordinates that two spaces share."""
    unit = torch.nn.functional.normalize
    return unit(X, dim=1) @ unit(anchors, dim=1).T


class OTAligner(Aligner):
    """Align two spaces from unpaired (or partly paired) rows with optimal transport (POT).

    Parameters
    ----------
    method : {"sinkhorn", "emd", "gw"}, default "sinkhorn"
        Coupling of each round. ``"sinkhorn"``: entropic OT (log domain when ``reg`` is small for the
        dtype); ``"emd"``: exact OT; ``"gw"``: Gromov-Wasserstein, fused with the cost between mapped
        source rows and target rows (weight ``1 - alpha``) once a map exists.
    reg : float, default 0.05
        Entropic regularisation relative to the mean cost (``"sinkhorn"``; ``"gw"`` when > 0, with
        ``reg=0`` running exact GW; ignored by ``"emd"``). Entropic GW needs small values (about 1e-3 to
        1e-2, float64): see :func:`latentalign.functional.ot.gw_plan`.
    refine : {"procrustes", "affine"}, default "procrustes"
        The map fitted on the barycentric targets (:class:`~latentalign.align.procrustes.Procrustes` or
        :class:`~latentalign.align.affine.Affine`), saved as ``map_``.
    n_iter : int, default 5
        Couple-then-map rounds after the start. Stops early when the row-wise matches (argmax of the
        coupling) no longer change.
    init : {"auto", "gw", "relative", "identity"}, default "auto"
        First map. ``"auto"``: fitted on ``pairs`` when there are more pairs than source dimensions (or no
        free rows left); else ``"relative"`` when there are at least 2 pairs; else ``"gw"``.
        ``"relative"``: the free rows are coupled by their cosine similarities to the known pairs (their
        relative representations, which two spaces share without any map; Moschella et al. 2023), then the
        map is fitted on the pairs and that coupling. ``"gw"``: from a Gromov-Wasserstein coupling (exact GW
        for ``"emd"``/``"sinkhorn"``, GW with ``reg`` for ``"gw"``), plus the pairs if any. ``"identity"``:
        none; the first round compares ``X`` and ``Y`` directly (same dimension, spaces already comparable,
        as in POT's ``ot.da`` domain adaptation).
    metric : {"sqeuclidean", "euclidean", "cosine"}, default "sqeuclidean"
        Cost between points (and inside each space for GW).
    alpha : float, default 0.5
        Fused-GW weight of the structure term (``method="gw"`` rounds with a map).
    max_samples : int, optional
        Cap on the free rows of each side entering a linear OT round (all by default).
    gw_samples : int, default 2000
        Cap on the free rows of each side entering a Gromov-Wasserstein coupling.
    max_iter, tol : optional
        Passed to the OT solver (defaults in :mod:`latentalign.functional.ot`, tolerance scaled to dtype).
    batch_size : int, optional
        ``method="sinkhorn"`` only: solve with POT's lazy Sinkhorn in blocks of this many rows, without any
        ``n x m`` matrix (slower per iteration).
    sample : {"random", "first"}, default "random"
        How rows are drawn when a cap applies: at random (``random_state``), or the first rows (e.g. the
        most frequent words of a frequency-sorted vocabulary, as MUSE and VecMap restrict matching to).
    preprocess : str or list of str, optional
        Steps from :func:`latentalign.preprocessing.make_preprocessor` (e.g. ``["center", "l2"]``), fitted
        on ``X`` and on ``Y`` separately and saved (``preprocess_x_``, ``preprocess_y_``); outputs are
        mapped back through ``Y``'s steps.
    random_state : int, default 0
        Seed of the row sampling.

    Attributes
    ----------
    map_ : Procrustes or Affine
        The fitted map between the preprocessed spaces.
    preprocess_x_, preprocess_y_ : Chain
    matches_ : torch.Tensor of shape (n_x,), int64
        For each row of ``X``: its paired row of ``Y`` (anchors), the row of ``Y`` carrying most of its
        mass in the last coupling (free rows that were coupled), or -1 (rows left out by sampling).
    history_ : list of dict
        One entry per round (``round`` 0 is the GW start): ``changed`` (fraction of coupled rows whose
        match changed since the previous coupling; None when there is none to compare), ``residual``
        (``1 - R^2`` of the map fitted on that round's targets), ``n_coupled``.
    converged_ : bool
        Whether the matches stopped changing within ``n_iter`` rounds.
    n_iter_ : int
        Rounds run.
    n_features_in_, n_features_out_ : int

    Examples
    --------
    No pairs at all: a rotated, shuffled copy of a skewed cloud is recovered.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.exponential(size=(80, 4))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    >>> perm = rng.permutation(80)
    >>> ot_map = OTAligner(method="emd").fit(X, (X @ Q)[perm])
    >>> float((ot_map.matches_.numpy() == np.argsort(perm)).mean())
    1.0
    >>> bool(np.allclose(ot_map.transform(X), X @ Q, atol=1e-6))
    True
    """

    def __init__(
        self,
        *,
        method: str = "sinkhorn",
        reg: float = 0.05,
        refine: str = "procrustes",
        n_iter: int = 5,
        init: str = "auto",
        metric: str = "sqeuclidean",
        alpha: float = 0.5,
        max_samples: int | None = None,
        gw_samples: int = 2000,
        max_iter: int | None = None,
        tol: float | None = None,
        batch_size: int | None = None,
        sample: str = "random",
        preprocess: str | list[str] | None = None,
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.reg = reg
        self.refine = refine
        self.n_iter = n_iter
        self.init = init
        self.metric = metric
        self.alpha = alpha
        self.max_samples = max_samples
        self.gw_samples = gw_samples
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.sample = sample
        self.preprocess = preprocess
        self.random_state = random_state

    # -- parameters ---------------------------------------------------------------------------------
    def _check_params(self) -> None:
        check_choice(self.method, "method", _METHODS)
        check_number(self.reg, "reg", low=0.0)
        if self.method == "sinkhorn" and self.reg == 0:
            raise ValueError("method='sinkhorn' needs reg > 0, got reg=0. Use method='emd' for exact OT.")
        check_choice(self.refine, "refine", _REFINES)
        check_number(self.n_iter, "n_iter", integer=True, low=0)
        check_choice(self.init, "init", _INITS)
        check_choice(self.metric, "metric", METRICS)
        check_number(self.alpha, "alpha", low=0.0, high=1.0)
        check_number(self.max_samples, "max_samples", integer=True, low=2, allow_none=True)
        check_number(self.gw_samples, "gw_samples", integer=True, low=2)
        check_number(self.max_iter, "max_iter", integer=True, low=1, allow_none=True)
        check_number(self.tol, "tol", low=0.0, low_inclusive=False, allow_none=True)
        check_number(self.batch_size, "batch_size", integer=True, low=1, allow_none=True)
        if self.batch_size is not None and self.method != "sinkhorn":
            raise ValueError(
                f"batch_size is only used by method='sinkhorn' (POT's lazy solver), got method={self.method!r}. "
                "Leave batch_size=None, or cap the rows with max_samples/gw_samples."
            )
        check_choice(self.sample, "sample", ("random", "first"))
        check_number(self.random_state, "random_state", integer=True)

    # -- fitting ------------------------------------------------------------------------------------
    def fit(self, X: ArrayLike, Y: ArrayLike, pairs: ArrayLike | None = None) -> OTAligner:
        """Fit from unpaired rows of ``X`` (source) and ``Y`` (target) and optional known ``pairs``.

        Parameters
        ----------
        X : array of shape (n_x, d_x)
        Y : array of shape (n_y, d_y)
            Not paired row by row: ``n_x`` and ``n_y`` may differ, and ``d_x`` and ``d_y`` too.
        pairs : array of shape (m, 2), optional
            Known pairs ``(index into X, index into Y)``; see the module docstring.

        Returns
        -------
        self
        """
        self._check_params()
        Xt, Yt = check_unpaired(X, Y)
        self._remember_feature_names(X)
        P = check_pairs(pairs, Xt.shape[0], Yt.shape[0])
        m = P.shape[0]
        init = self.init
        n_free_x = Xt.shape[0] - int(P[:, 0].unique().numel())
        n_free_y = Yt.shape[0] - int(P[:, 1].unique().numel())
        if init == "auto":
            # Fewer pairs than dimensions leave a map under-determined: couple the free rows first, by their
            # similarities to the pairs when there are some (pairs still join the fit), else by GW.
            enough = m > Xt.shape[1] or min(n_free_x, n_free_y) < 2
            if m >= min_pairs(self.refine) and enough:
                init = "pairs"
            else:
                init = "relative" if m >= 2 and min(n_free_x, n_free_y) >= 2 else "gw"
        if init == "identity" and Xt.shape[1] != Yt.shape[1]:
            raise ValueError(
                f"init='identity' compares X and Y directly, but X has {Xt.shape[1]} features and Y has "
                f"{Yt.shape[1]}. Use init='gw' (works across dimensions) or pass known pairs."
            )

        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)
        prep_x = make_preprocessor(self.preprocess).fit(Xt)
        prep_y = make_preprocessor(self.preprocess).fit(Yt)
        Xp, Yp = prep_x._forward(Xt), prep_y._forward(Yt)

        dev = Xt.device
        Px, Py = P[:, 0].to(dev), P[:, 1].to(dev)
        free_x, free_y = _free_rows(Xt.shape[0], P[:, 0]).to(dev), _free_rows(Yt.shape[0], P[:, 1]).to(dev)
        gen = torch.Generator().manual_seed(int(self.random_state))
        matches = torch.full((Xt.shape[0],), -1, dtype=torch.long)
        matches[P[:, 0]] = P[:, 1]
        history: list[dict[str, Any]] = []

        def fit_map(rows_x: torch.Tensor, targets: torch.Tensor) -> tuple[Aligner, float]:
            Xa = torch.cat([Xp[Px], Xp[rows_x]])
            Ya = torch.cat([Yp[Py], targets])
            mapping = make_map(self.refine).fit(Xa, Ya)
            pred = mapping._transform(Xa).to(torch.float64)
            Ya64 = Ya.to(torch.float64)
            total = float((Ya64 - Ya64.mean(0)).pow(2).sum())
            residual = float((pred - Ya64).pow(2).sum()) / total if total > 0 else 0.0
            return mapping, residual

        mapping: Aligner | None = None
        no_free = free_x.numel() < 2 or free_y.numel() < 2
        # Rows drawn once, so that consecutive rounds couple the same rows and their matches compare.
        gw_rows = (_sample(free_x, self.gw_samples, gen, self.sample),
                   _sample(free_y, self.gw_samples, gen, self.sample))
        lin_rows = (_sample(free_x, self.max_samples, gen, self.sample),
                    _sample(free_y, self.max_samples, gen, self.sample))
        if init == "pairs":
            mapping, residual = fit_map(free_x[:0], Yp[:0])
            history.append({"round": 0, "step": "pairs", "changed": None, "residual": residual, "n_coupled": 0})
        elif init == "relative":
            if m < 2 or no_free:
                raise ValueError(
                    f"init='relative' couples the free rows by their similarities to the known pairs, so it needs "
                    f"at least 2 pairs and 2 free rows per side; got {m} pairs, {free_x.numel()} free rows of X "
                    f"and {free_y.numel()} of Y. Pass more pairs or use init='gw'."
                )
            sx, sy = lin_rows
            plan = ot_plan_tensors(
                _relative_t(Xp[sx], Xp[Px]), _relative_t(Yp[sy], Yp[Py]),
                method="emd" if self.method == "gw" else self.method, reg=float(self.reg), metric=self.metric,
                max_iter=self.max_iter, tol=self.tol,
            )
            mapping, residual = fit_map(sx, barycentric_projection_tensors(plan, Yp[sy]))
            matches[sx.cpu()] = sy[plan.argmax(1)].cpu()
            history.append(
                {"round": 0, "step": "relative", "changed": None, "residual": residual, "n_coupled": int(sx.numel())}
            )
        elif init == "gw":
            if no_free:
                raise ValueError(
                    "Every row is already paired (or fewer than 2 rows are free), so there is nothing for the "
                    "Gromov-Wasserstein start to couple; use init='auto'."
                )
            gx, gy = gw_rows
            plan = gw_plan_tensors(
                Xp[gx].double(), Yp[gy].double(), reg=float(self.reg) if self.method == "gw" else 0.0,
                metric=self.metric, max_iter=self.max_iter, tol=self.tol,
            ).to(Xp.dtype)
            best = gy[plan.argmax(1)]
            mapping, residual = fit_map(gx, barycentric_projection_tensors(plan, Yp[gy]))
            matches[gx.cpu()] = best.cpu()
            history.append(
                {"round": 0, "step": "gw", "changed": None, "residual": residual, "n_coupled": int(gx.numel())}
            )

        converged = False
        rounds = 0
        for rnd in range(1, int(self.n_iter) + 1):
            if no_free:
                converged = True
                break
            rows_x, targets, best = self._couple(Xp, Yp, gw_rows if self.method == "gw" else lin_rows, mapping)
            before = matches[rows_x.cpu()]
            seen = before >= 0  # rows matched by the previous coupling (not anchors: they are not coupled)
            changed = float((before[seen] != best.cpu()[seen]).double().mean()) if bool(seen.any()) else None
            mapping, residual = fit_map(rows_x, targets)
            matches[rows_x.cpu()] = best.cpu()
            rounds = rnd
            history.append({"round": rnd, "step": self.method, "changed": changed, "residual": residual,
                            "n_coupled": int(rows_x.numel())})
            if changed == 0.0:
                converged = True
                break
        if int(self.n_iter) == 0 or no_free:
            converged = True
        if not converged:
            last = history[-1]["changed"]
            detail = (
                f"{100 * last:.1f}% of the matches still changed in the last round"
                if last is not None
                else "a single round cannot be compared with a previous coupling"
            )
            warnings.warn(
                f"OTAligner stopped after n_iter={self.n_iter} rounds without converging ({detail}). Increase "
                "n_iter, or lower reg for sharper couplings; history_ has the per-round log.",
                ConvergenceWarning,
                stacklevel=2,
            )
        if mapping is None:
            raise ValueError(
                f"init='identity' with n_iter={self.n_iter} and {free_x.numel()} free rows of X fits no map: "
                "run at least one round (n_iter >= 1) on at least 2 free rows per side, or pass pairs."
            )
        self.preprocess_x_ = prep_x
        self.preprocess_y_ = prep_y
        self.map_ = mapping
        self.matches_ = matches
        self.history_ = history
        self.converged_ = converged
        self.n_iter_ = rounds
        self.n_features_in_ = int(Xt.shape[1])
        self.n_features_out_ = int(Yt.shape[1])
        return self

    def _couple(
        self,
        Xp: torch.Tensor,
        Yp: torch.Tensor,
        rows: tuple[torch.Tensor, torch.Tensor],
        mapping: Aligner | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One coupling of the sampled free rows: (rows of X coupled, their barycentric targets, matches)."""
        sx, sy = rows
        if self.method == "gw":
            Zx = Xp[sx] if mapping is None else mapping._transform(Xp[sx])  # None: init="identity"
            M = cost_matrix_tensors(Zx.double(), Yp[sy].double(), self.metric)
            plan = gw_plan_tensors(
                Xp[sx].double(), Yp[sy].double(), reg=float(self.reg), metric=self.metric, M=M,
                alpha=float(self.alpha), max_iter=self.max_iter, tol=self.tol,
            ).to(Xp.dtype)
            return sx, barycentric_projection_tensors(plan, Yp[sy]), sy[plan.argmax(1)]
        Zx = Xp[sx] if mapping is None else mapping._transform(Xp[sx])
        if self.batch_size is not None:
            targets, best = sinkhorn_projection_tensors(
                Zx, Yp[sy], reg=float(self.reg), metric=self.metric, batch_size=int(self.batch_size),
                max_iter=self.max_iter, tol=self.tol,
            )
            return sx, targets, sy[best]
        plan = ot_plan_tensors(
            Zx, Yp[sy], method=self.method, reg=float(self.reg), metric=self.metric,
            max_iter=self.max_iter, tol=self.tol,
        )
        return sx, barycentric_projection_tensors(plan, Yp[sy]), sy[plan.argmax(1)]

    # -- mapping ------------------------------------------------------------------------------------
    def _transform(self, X: torch.Tensor) -> torch.Tensor:
        return self.preprocess_y_._backward(self.map_._transform(self.preprocess_x_._forward(X)))

    def _inverse_transform(self, Z: torch.Tensor) -> torch.Tensor:
        return self.preprocess_x_._backward(self.map_._inverse_transform(self.preprocess_y_._forward(Z)))

    def _module(self, *, trainable: bool, inverse: bool) -> torch.nn.Module:
        from latentalign.align.modules import preprocessor_module, sandwich

        before, after = (self.preprocess_y_, self.preprocess_x_) if inverse else (self.preprocess_x_, self.preprocess_y_)
        core = self.map_.to_module(trainable=trainable, inverse=inverse, dtype=torch.float64)
        return sandwich(preprocessor_module(before), core, preprocessor_module(after, inverse=True))

