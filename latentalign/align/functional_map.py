"""Latent functional maps as an aligner: few anchors, many unpaired rows, a map for any new row.

:class:`LatentFunctionalMap` follows Fumero et al. ("Latent Functional Maps", NeurIPS 2024): the rows of
each space form a kNN graph; a functional map between the spectral bases of the two graphs is estimated
from functions of the anchors both spaces can evaluate, optionally refined by ZoomOut, and turned into a
correspondence between the rows. A Procrustes (or affine) map fitted on that correspondence is what
:meth:`~LatentFunctionalMap.transform` applies, so the aligner maps any row, seen or not. The maths lives
in :mod:`latentalign.functional.functional_map`.

Rows: ``fit(X, Y, pairs=None)``
-------------------------------
* ``pairs`` given: the rows of ``X`` and ``Y`` are **not** paired (their numbers may differ, as for
  :class:`~latentalign.align.ot.OTAligner`); ``pairs`` is an ``(m, 2)`` integer array whose row ``k``
  says that ``X[pairs[k, 0]]`` and ``Y[pairs[k, 1]]`` are the same item (the anchors).
* ``pairs=None``: row ``i`` of ``X`` pairs row ``i`` of ``Y``. With ``n_anchors`` set, only that many
  pairs (a seeded draw) are used as anchors and the other rows are treated as unpaired (their pairing is
  ignored); with ``n_anchors=None`` every row is an anchor, nothing is left to match, and the aligner is
  the ``refine`` map fitted on all pairs.
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import numpy as np
import torch

from latentalign._array import ArrayLike
from latentalign._validation import check_choice, check_number, check_pair
from latentalign.align.base import Aligner
from latentalign.anchors import distinct_rows
from latentalign.exceptions import IllConditionedWarning
from latentalign.functional.functional_map import (
    GRAPH_METRICS,
    GRAPH_WEIGHTS,
    heat_descriptors,
    knn_graph,
    laplacian_eigenbasis,
    normalized_laplacian,
    similarity_descriptors,
    solve_functional_map,
    standardize_columns,
    zoomout,
)
from latentalign.functional.ot_rounds import check_pairs

__all__ = ["LatentFunctionalMap", "DESCRIPTORS", "MIN_ANCHORS"]

#: Anchor functions :class:`LatentFunctionalMap` can use (see its ``descriptors`` parameter).
DESCRIPTORS = ("cosine", "heat")
#: Fewest distinct anchor pairs a fit accepts.
MIN_ANCHORS = 2
_REFINES = ("procrustes", "affine")
_CORRESPONDENCES = ("transfer", "pointwise")


def _tensor(values: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A fresh tensor of ``values``; empty ones built by torch (an empty tensor made from numpy can carry
    zero strides, which the byte view of the saved-file checksum refuses)."""
    values = np.asarray(values)
    return torch.zeros(values.shape, dtype=dtype) if values.size == 0 else torch.tensor(values, dtype=dtype)


def _parse_descriptors(value: Any) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, (tuple, list)) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"descriptors must be one of {list(DESCRIPTORS)} or a non-empty list of them, got {value!r}.")
    for name in names:
        check_choice(name, "descriptors entry", DESCRIPTORS)
    if len(set(names)) != len(names):
        raise ValueError(f"descriptors lists {list(names)}, with a repeat; name each kind once.")
    return tuple(names)


class LatentFunctionalMap(Aligner):
    """Align two spaces from a few anchor pairs and many unpaired rows with latent functional maps.

    Steps of :meth:`fit` (see :mod:`latentalign.functional.functional_map`):

    1. a kNN graph of each space (``n_neighbors``, ``metric``, ``weights``) and the first ``k_final``
       eigenvectors of its normalised Laplacian;
    2. descriptors: functions of the anchors computed in each space (``descriptors``), standardised per
       column and expressed in the first ``k_init`` eigenvectors;
    3. the functional map ``C`` (``k_init x k_init``) by least squares with the Laplacian commutativity
       penalty (``alpha``, ``orthogonal``);
    4. ZoomOut, when ``k_final > k_init``: the point-to-point map and ``C`` are alternated while the bases
       grow by ``zoomout_step`` up to ``k_final`` functions, the anchors keeping their known match;
    5. the ``refine`` map fitted on the anchor pairs plus one pair per row of ``Y`` (``correspondence``):
       the row of ``X`` the point-to-point map sends it to, or ``X``'s coordinates transferred by ``C``.

    Parameters
    ----------
    n_anchors : int, optional
        Use only this many anchor pairs, drawn at random (``random_state``) from ``pairs`` or, with
        ``pairs=None``, from the paired rows (the others then count as unpaired). All by default.
    n_neighbors : int, default 30
        Neighbours per row in each kNN graph.
    metric : {"cosine", "euclidean"}, default "cosine"
        Distance of the kNN graphs and similarity of the ``"cosine"`` descriptors (``"euclidean"``: negative
        distance).
    weights : {"heat", "binary"}, default "heat"
        Edge weights (:func:`~latentalign.functional.functional_map.knn_graph`).
    descriptors : str or list of str, default ("cosine", "heat")
        ``"cosine"``: similarity of every row to each anchor (its relative representation);
        ``"heat"``: each anchor's indicator diffused on the graph at 4 times. Several are stacked.
    k_init : int, default 40
        Basis size of the map solved from the descriptors (at most the rows of each side).
    k_final : int, optional
        Basis size ZoomOut grows to, capped at the rows of the smaller side (``n_eigen_`` says what was
        used). Default ``k_init``: no ZoomOut (see the Notes).
    zoomout_step : int, default 5
        Basis functions added per ZoomOut iteration.
    correspondence : {"transfer", "pointwise"}, default "transfer"
        What each row of ``Y`` is paired with for the final fit. ``"pointwise"``: the row of ``X`` that the
        point-to-point map of ``C`` sends it to (a hard match). ``"transfer"``: ``X``'s coordinate functions
        carried to ``Y`` by ``C``, row ``y`` of ``Phi_y C Phi_x^T X`` (a smooth, band-limited estimate of
        its counterpart; a wrong match then costs less than a wrong hard match).
    alpha : float, default 10.0
        Weight of the commutativity penalty, relative to the descriptors' energy.
    orthogonal : bool, default False
        Project the initial map onto orthonormal matrices (maps of isometries are orthogonal).
    refine : {"procrustes", "affine"}, default "procrustes"
        The map fitted on the correspondence (:class:`~latentalign.align.procrustes.Procrustes` or
        :class:`~latentalign.align.affine.Affine`), saved as ``map_``.
    random_state : int, default 0
        Seed of the anchor draw and of the sparse eigensolver's start vector.

    Attributes
    ----------
    map_ : Procrustes or Affine
        The fitted map from ``X``'s space to ``Y``'s.
    functional_map_ : torch.Tensor of shape ``(n_eigen_, n_eigen_)``, float64
        The final ``C`` (coefficients on ``X`` to coefficients on ``Y``); ``(0, 0)`` when every row of
        ``Y`` was an anchor (nothing to match).
    eigenvalues_x_, eigenvalues_y_ : torch.Tensor of shape ``(n_eigen_,)``, float64
        Laplacian eigenvalues of each graph, ascending.
    matches_ : torch.Tensor of shape (n_y,), int64
        For each row of ``Y``: its anchor's row of ``X``, or the row of ``X`` the final map sends it to.
    anchors_ : torch.Tensor of shape (m, 2), int64
        The anchor pairs used (after the ``n_anchors`` draw, each once).
    history_ : list of dict
        One entry per ZoomOut iteration: ``k`` and ``changed`` (fraction of rows of ``Y`` whose match
        changed; None for the first).
    n_eigen_ : int
        Final basis size (0 when no spectral step ran).
    n_features_in_, n_features_out_ : int

    Warns
    -----
    IllConditionedWarning
        When a pair is listed twice in ``pairs`` (it counts once), or when a kNN graph falls apart into
        several components (they are joined). Pairs whose rows repeat an earlier anchor's row (equal
        embeddings) fix their matches but add no descriptor.

    Notes
    -----
    Defaults. On MiniLM vs MPNet embeddings of WordNet lemmas (``benchmarks/bench_functional_map.py``), the
    two kNN graphs share about a third of their edges; even the exact functional map of the true
    correspondence then gives a poor point-to-point map, and ZoomOut drifts. There ``"transfer"`` at
    ``k_init`` functions was the best setting tried (the defaults were chosen on other seeds than those
    reported): above Procrustes and Affine fitted on the anchors alone at every budget from 5 to 100
    anchors, above :class:`~latentalign.align.relative.RelativeProjection` up to 25 anchors, level with it
    by CSLS and below it by cosine at 50 and 100. On near-isometric spaces (a rotated copy, the tests),
    ``correspondence="pointwise"`` with ZoomOut (e.g. ``k_final=60``) recovers the correspondence itself.

    The descriptors decide what the map can see: ``"cosine"`` assumes both spaces keep angles to the
    anchors roughly alike (as related encoders do); ``"heat"`` uses only each graph's shape. ZoomOut
    removes noise from a rough initial map, but cannot fix a map that confuses distant regions, so the
    result depends on the anchors covering the data.

    Examples
    --------
    A rotated copy of an anisotropic cloud, rows shuffled, 10 known pairs: the correspondence and the
    rotation are recovered.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 6)) * [3.0, 2.0, 1.5, 1.0, 0.5, 0.3]
    >>> Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    >>> perm = rng.permutation(200)
    >>> Y = (X @ Q)[perm]  # row i of Y is row perm[i] of X
    >>> known = np.arange(0, 200, 20)
    >>> pairs = np.stack([known, np.argsort(perm)[known]], 1)
    >>> lfm = LatentFunctionalMap(correspondence="pointwise", k_final=60).fit(X, Y, pairs=pairs)
    >>> float((lfm.matches_.numpy() == perm).mean()), bool(np.allclose(lfm.map_.rotation_.numpy(), Q))
    (1.0, True)
    >>> bool(np.allclose(lfm.transform(X), X @ Q))
    True
    """

    def __init__(
        self,
        *,
        n_anchors: int | None = None,
        n_neighbors: int = 30,
        metric: str = "cosine",
        weights: str = "heat",
        descriptors: str | tuple[str, ...] | list[str] = ("cosine", "heat"),
        k_init: int = 40,
        k_final: int | None = None,
        zoomout_step: int = 5,
        correspondence: str = "transfer",
        alpha: float = 10.0,
        orthogonal: bool = False,
        refine: str = "procrustes",
        random_state: int = 0,
    ) -> None:
        self.n_anchors = n_anchors
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.weights = weights
        self.descriptors = descriptors
        self.k_init = k_init
        self.k_final = k_final
        self.zoomout_step = zoomout_step
        self.correspondence = correspondence
        self.alpha = alpha
        self.orthogonal = orthogonal
        self.refine = refine
        self.random_state = random_state

    # -- parameters ---------------------------------------------------------------------------------
    def _check_params(self) -> None:
        check_number(self.n_anchors, "n_anchors", integer=True, low=MIN_ANCHORS, allow_none=True)
        check_number(self.n_neighbors, "n_neighbors", integer=True, low=1)
        check_choice(self.metric, "metric", GRAPH_METRICS)
        check_choice(self.weights, "weights", GRAPH_WEIGHTS)
        _parse_descriptors(self.descriptors)
        check_number(self.k_init, "k_init", integer=True, low=1)
        check_number(self.k_final, "k_final", integer=True, low=1, allow_none=True)
        if self.k_final is not None and self.k_final < self.k_init:
            raise ValueError(
                f"k_final={self.k_final} is smaller than k_init={self.k_init}; ZoomOut grows the basis from k_init "
                "to k_final. Pass k_final >= k_init (k_final == k_init skips ZoomOut)."
            )
        check_number(self.zoomout_step, "zoomout_step", integer=True, low=1)
        check_choice(self.correspondence, "correspondence", _CORRESPONDENCES)
        check_number(self.alpha, "alpha", low=0.0)
        check_choice(self.orthogonal, "orthogonal", [True, False])
        check_choice(self.refine, "refine", _REFINES)
        check_number(self.random_state, "random_state", integer=True)

    # -- fitting ------------------------------------------------------------------------------------
    def fit(self, X: ArrayLike, Y: ArrayLike, pairs: ArrayLike | None = None) -> LatentFunctionalMap:
        """Fit from anchor pairs and unpaired rows of ``X`` (source) and ``Y`` (target).

        Parameters
        ----------
        X : array of shape (n_x, d_x)
        Y : array of shape (n_y, d_y)
            With ``pairs``: not paired row by row (``n_x`` and ``n_y`` may differ). Without: paired row
            by row (see the module docstring).
        pairs : array of shape (m, 2), optional
            Anchor pairs ``(index into X, index into Y)``.

        Returns
        -------
        self
        """
        self._check_params()
        Xt, Yt, _ = check_pair(X, Y, paired=pairs is None, min_rows=MIN_ANCHORS)
        self._remember_feature_names(X)
        n_x, n_y = int(Xt.shape[0]), int(Yt.shape[0])
        if pairs is None:
            P = np.stack([np.arange(n_x), np.arange(n_x)], axis=1)
        else:
            P = check_pairs(pairs, n_x, n_y).numpy()
        P = self._pick_anchors(P)
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)

        device = Xt.device
        ix = torch.as_tensor(P[:, 0], device=device)
        iy = torch.as_tensor(P[:, 1], device=device)
        history: list[dict[str, Any]] = []
        if np.setdiff1d(np.arange(n_y), P[:, 1]).size == 0:  # every row of Y is an anchor: nothing to match
            matches = np.full(n_y, -1, dtype=np.int64)
            matches[P[:, 1]] = P[:, 0]
            C, vals_x, vals_y = np.zeros((0, 0)), np.zeros(0), np.zeros(0)
            source, target = Xt[ix], Yt[iy]
        else:
            spectral = self._spectral(Xt, Yt, P, self._descriptor_anchors(P, Xt, Yt))
            C, matches, history = spectral["C"], spectral["matches"], spectral["history"]
            vals_x, vals_y = spectral["vals_x"], spectral["vals_y"]
            if self.correspondence == "pointwise":
                source = Xt[torch.as_tensor(matches, device=device)]
            else:
                # Kept in float64: the transferred rows span only the functional map's k directions. Rounded
                # to float32, they would fill every other direction with rounding noise, and that noise (a
                # different one for another BLAS thread count) would decide the map there instead of the
                # completion the refining aligner documents.
                source = torch.from_numpy(spectral["transferred"]).to(device=device)
            # the anchors also enter with their own rows, so that a smooth transfer cannot blur them
            source, target = torch.cat([source, Xt[ix].to(source.dtype)]), torch.cat([Yt, Yt[iy]])
        self.map_ = self._make_map().fit(source, target)
        self.functional_map_ = _tensor(C, torch.float64)
        self.eigenvalues_x_ = _tensor(vals_x, torch.float64)
        self.eigenvalues_y_ = _tensor(vals_y, torch.float64)
        self.matches_ = _tensor(matches, torch.int64)
        self.anchors_ = _tensor(P, torch.int64)
        self.history_ = history
        self.n_eigen_ = int(C.shape[0])
        self.n_features_in_ = int(Xt.shape[1])
        self.n_features_out_ = int(Yt.shape[1])
        return self

    def _pick_anchors(self, P: np.ndarray) -> np.ndarray:
        """The known pairs to use: the ``n_anchors`` draw, each pair once."""
        if self.n_anchors is not None:
            if self.n_anchors > len(P):
                raise ValueError(
                    f"n_anchors={self.n_anchors} exceeds the {len(P)} known pairs. Pass n_anchors <= {len(P)}, "
                    "or n_anchors=None to use them all."
                )
            pick = np.random.default_rng(self.random_state).choice(len(P), size=int(self.n_anchors), replace=False)
            P = P[np.sort(pick)]
        _, first = np.unique(P, axis=0, return_index=True)
        if len(first) < len(P):
            warnings.warn(
                f"{len(P) - len(first)} of {len(P)} anchor pairs are listed more than once; each counts once. "
                "Deduplicate the pairs to silence this.",
                IllConditionedWarning,
                stacklevel=3,
            )
            P = P[np.sort(first)]
        return P

    def _descriptor_anchors(self, P: np.ndarray, Xt: torch.Tensor, Yt: torch.Tensor) -> np.ndarray:
        """The pairs whose rows repeat no earlier pair's row in X or in Y: one descriptor each.

        A repeated row would add the same function twice (and, paired with two different rows of the
        other side, contradict itself); such pairs still fix their rows' matches.
        """
        keep = distinct_rows(
            Xt[torch.as_tensor(P[:, 0], device=Xt.device)], Yt[torch.as_tensor(P[:, 1], device=Yt.device)]
        )
        if len(keep) < MIN_ANCHORS:
            raise ValueError(
                f"LatentFunctionalMap needs at least {MIN_ANCHORS} distinct anchor pairs (whose rows of X and of Y "
                f"repeat no other anchor's), got {len(keep)} of {len(P)} pairs. Pass more pairs (rows of pairs=, "
                "or n_anchors)."
            )
        return P[keep]

    def _spectral(self, Xt: torch.Tensor, Yt: torch.Tensor, P: np.ndarray, D: np.ndarray) -> dict[str, Any]:
        """Eigenbases, functional map, point-to-point map and (for "transfer") X carried onto Y's rows."""
        n_x, n_y = int(Xt.shape[0]), int(Yt.shape[0])
        n_min = min(n_x, n_y)
        if self.k_init > n_min:
            raise ValueError(
                f"k_init={self.k_init} exceeds the number of rows (X has {n_x}, Y has {n_y}): a graph of n rows "
                f"has n eigenvectors. Pass k_init <= {n_min}, or more rows."
            )
        if self.n_neighbors >= n_min:
            raise ValueError(
                f"n_neighbors={self.n_neighbors} must be smaller than the number of rows (X has {n_x}, Y has "
                f"{n_y}). Pass n_neighbors <= {n_min - 1}."
            )
        k = min(int(self.k_init if self.k_final is None else self.k_final), n_min)
        bases = []
        for Z in (Xt, Yt):
            W = knn_graph(Z, int(self.n_neighbors), metric=self.metric, weights=self.weights)
            bases.append(laplacian_eigenbasis(normalized_laplacian(W), k, random_state=int(self.random_state)))
        (vals_x, vecs_x), (vals_y, vecs_y) = bases
        F = self._descriptors(Xt, vals_x, vecs_x, D[:, 0])
        G = self._descriptors(Yt, vals_y, vecs_y, D[:, 1])
        k0 = int(self.k_init)
        C0 = solve_functional_map(
            vecs_x[:, :k0].T @ F,
            vecs_y[:, :k0].T @ G,
            vals_x[:k0],
            vals_y[:k0],
            alpha=float(self.alpha),
            orthogonal=bool(self.orthogonal),
        )
        C, matches, history = zoomout(vecs_x, vecs_y, C0, k_final=k, step=int(self.zoomout_step), fixed=P)
        out: dict[str, Any] = {"C": C, "matches": matches, "vals_x": vals_x, "vals_y": vals_y, "history": history}
        if self.correspondence == "transfer":
            k_y, k_x = C.shape
            coords = vecs_x[:, :k_x].T @ Xt.detach().to(device="cpu", dtype=torch.float64).numpy()
            out["transferred"] = vecs_y[:, :k_y] @ (C @ coords)
        return out

    def _descriptors(self, Z: torch.Tensor, vals: np.ndarray, vecs: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        blocks = []
        for kind in _parse_descriptors(self.descriptors):
            if kind == "cosine":
                F = similarity_descriptors(Z, anchors, metric=self.metric)
            else:
                F = heat_descriptors(vals, vecs, anchors)
            blocks.append(standardize_columns(F))
        return np.concatenate(blocks, axis=1)

    def _make_map(self) -> Aligner:
        if self.refine == "affine":
            from latentalign.align.affine import Affine

            return Affine()
        from latentalign.align.procrustes import Procrustes

        return Procrustes()

    # -- mapping ------------------------------------------------------------------------------------
    # the fitted map's public methods return tensors for tensors
    def _transform(self, X: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.map_.transform(X))

    def _inverse_transform(self, Z: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.map_.inverse_transform(Z))

    def _module(self, *, trainable: bool, inverse: bool) -> torch.nn.Module:
        return self.map_.to_module(trainable=trainable, inverse=inverse, dtype=torch.float64)
