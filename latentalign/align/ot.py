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

* ``pairs=None`` -- fully unsupervised. By default (``method="auto"``, ``init="auto"``) the fit takes
  the route of :class:`~latentalign.align.unsupervised.UnsupervisedAligner` (unsupervised starts,
  robust self-learning with CSLS, best start by an unsupervised score), which is the one that works on
  real embeddings; the OT rounds from a Gromov-Wasserstein start (``init="gw"``, or an explicit OT
  ``method``) stayed near chance there. A Gromov-Wasserstein coupling compares distances inside each
  space, so it needs no pairs and works across dimensions.
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

import logging
import warnings
from typing import Any

import torch

from latentalign._array import ArrayLike
from latentalign._progress import RoundProgress
from latentalign._validation import check_choice
from latentalign.align.base import Aligner, PreprocessedMapAligner, check_unpaired
from latentalign.align.unsupervised import UnsupervisedAligner
from latentalign.exceptions import ConvergenceWarning, IllConditionedWarning
from latentalign.functional.ot_rounds import (
    MIN_MAP_ROWS,
    OT_ROUND_METHODS,
    OTRounds,
    check_ot_rounds_options,
    check_pairs,
    ot_alignment_rounds,
)
from latentalign.preprocessing import make_preprocessor

__all__ = ["OTAligner", "check_pairs", "check_unpaired", "make_map"]

logger = logging.getLogger(__name__)
#: Fields of each round shown on the progress bar (OT rounds: the first two; self-learning: the last two).
_SHOWN = ("changed", "map_change", "n_matches")

_REFINES = ("procrustes", "affine")


def make_map(refine: str, few_pairs: bool = False) -> Aligner:
    """A fresh map estimator for ``refine`` ("procrustes" or "affine").

    ``few_pairs=True``: the map of the known pairs alone, which may be fewer than the dimensions; a
    Procrustes map then chooses its shrinkage towards the identity on held-out pairs (``shrinkage="cv"``).
    """
    check_choice(refine, "refine", _REFINES)
    if refine == "procrustes":
        from latentalign.align.procrustes import Procrustes

        return Procrustes(shrinkage="cv") if few_pairs else Procrustes()
    from latentalign.align.affine import Affine

    return Affine()


def min_pairs(refine: str) -> int:
    """Fewest rows a map of kind ``refine`` can be fitted on (2: a centred fit needs two distinct rows)."""
    return MIN_MAP_ROWS


#: OTAligner parameters passed on to :func:`~latentalign.functional.ot_rounds.ot_alignment_rounds`.
_ROUND_OPTIONS = (
    "reg",
    "init",
    "metric",
    "alpha",
    "max_samples",
    "gw_samples",
    "max_iter",
    "tol",
    "batch_size",
    "sample",
    "random_state",
    "map_tol",
    "csls_k",
    "confidence",
)
#: The zero-pair route: UnsupervisedAligner's.
UNSUPERVISED = "unsupervised"
#: Most starts of the zero-pair route when it is a candidate beside self-learning from fewer pairs than
#: dimensions; the known pairs judge them and stop the screening once they confirm one (an unconfirmed
#: candidate is dropped). On GloVe-50 ->
#: fastText-fr words with 5 and 10 pairs and shuffled free rows, a start succeeded about one time in eight
#: to twenty (failed starts scored 0.14, good ones 0.20-0.24): eight unjudged starts left 4 of those 10
#: fits at R@1 0.03-0.10, judged starts up to 24 none (0.59-0.73).
CANDIDATE_STARTS = 24
#: Starts screened before the known pairs may stop the screening of the candidate.
CANDIDATE_FIRST_STARTS = 4
#: Known pairs from which the zero-pair route is no longer fitted as a candidate. It costs a zero-pair fit,
#: and from 25 pairs on, self-learning or soft matching alone reached 0.97-0.98 R@1 on shuffled free rows
#: (MiniLM-L6 -> MPNet captions, MiniLM-L6 -> L3 words); at 100 pairs the candidate, chosen on 20 set-aside
#: pairs, cost the captions 0.03 R@1 (0.947 against 0.979).
CANDIDATE_PAIRS_BELOW = 25
#: Known pairs from which method="auto" takes the self-learning route (its held-out checks need 4).
AUTO_MIN_PAIRS = 4
#: Rounds when n_iter=None: self-learning's stochastic induction needs a few to reach keep_prob = 1, and
#: its dictionary keeps growing after that (MiniLM-L6 -> L3 words, 10 pairs: converged after 32 rounds).
_DEFAULT_ROUNDS = {"self-learning": 50}
_DEFAULT_OT_ROUNDS = 5


class OTAligner(PreprocessedMapAligner):
    """Align two spaces from unpaired (or partly paired) rows with optimal transport (POT).

    Parameters
    ----------
    method : {"auto", "self-learning", "unsupervised", "sinkhorn", "emd", "gw"}, default "auto"
        Matching of each round. ``"self-learning"`` (needs known pairs): mutual CSLS nearest neighbours
        of the free rows under the current map, with stochastic dictionary induction, only matches as
        close as the known pairs are when held out entering the fit, and the route checked on set-aside
        pairs (with at least 10 pairs; a fifth of them at a time, fold after fold, until 50 or every pair
        judged) against the pairs alone (with ``refine="procrustes"``, a rotation
        shrunk towards the identity by as much as held-out pairs prefer: ``Procrustes(shrinkage="cv")``,
        which between spaces sharing coordinates generalises from few pairs; the soft matching that starts
        from that map refits it the same way) and against soft matching (a map fitted
        on the barycentres of an entropic OT coupling of the free rows, which is what works when the
        free rows of the two sides are different items;
        :func:`~latentalign.functional.self_learning.seeded_self_learning`). The route taken is in
        ``history_[0]["validation"]["route"]``. ``"sinkhorn"``: entropic OT (log domain when ``reg`` is small for
        the dtype); ``"emd"``: exact OT; ``"gw"``: Gromov-Wasserstein, fused with the cost between mapped
        source rows and target rows (weight ``1 - alpha``) once a map exists. ``"unsupervised"`` (no
        pairs): :func:`~latentalign.functional.unsupervised.unsupervised_alignment` with the defaults of
        :class:`~latentalign.align.unsupervised.UnsupervisedAligner` (``random_state``, ``csls_k`` and
        ``preprocess`` passed on; for its other options use that class), then ``refine`` fitted on its
        final dictionary. ``"auto"``: ``"unsupervised"`` with no known pair and ``init="auto"``;
        ``"self-learning"`` with at least 4 known pairs and free rows on both sides; else
        ``"sinkhorn"``. Measured with no pair: MiniLM-L6 -> MPNet on 475 captions, R@1 (CSLS) 0.97
        against 0.08 for Sinkhorn rounds from a Gromov-Wasserstein start; MiniLM-L6 -> L3 on 900 words,
        0.99 against 0.004. When ``"auto"`` takes self-learning from fewer than 25 pairs (and fewer than
        the source dimensions; ``init="auto"``), the zero-pair route is fitted too, without the pairs in
        any fit, but with the pairs judging its starts (``judge_pairs`` of
        :meth:`UnsupervisedAligner.fit <latentalign.align.unsupervised.UnsupervisedAligner.fit>`; up to 24
        starts). A map the pairs confirm is taken as it is
        (``history_[0]["validation"]["confirmed_by_pairs"]``), with a warning when only some of the pairs
        confirm it and no other start found it again (``"firmly_confirmed"`` False: it may be only partly
        right); one they do not confirm is dropped, and
        self-learning runs from the pairs; the route taken is in ``history_[0]["validation"]["route"]``.
        Measured with 5 pairs and the other items shuffled, R@1 (CSLS) over 5 seeds: MiniLM-L6 -> MPNet captions 0.93-0.98 against 0.05-0.13
        for self-learning alone; GloVe-50 -> fastText-fr words 0.69-0.73 on every seed, where unjudged
        starts failed on 2 seeds of 5 (0.03). A fit warns (``ConvergenceWarning``) when the known pairs that
        judged the route rank their targets poorly under it (mean reciprocal rank by CSLS below 0.5; with 4 to 9 pairs, under self-learning runs
        without each fold of them, whose successful maps the final map must also agree with), and when
        it keeps the pairs alone on a weak score; pairs alone kept on a sound score (0.5 or more) are
        logged, not warned about.
    reg : float, default 0.05
        Entropic regularisation relative to the mean cost (``"sinkhorn"``; ``"gw"`` when > 0, with
        ``reg=0`` running exact GW; ignored by ``"emd"``). Entropic GW needs small values (about 1e-3 to
        1e-2, float64): see :func:`latentalign.functional.ot.gw_plan`.
    refine : {"procrustes", "affine"}, default "procrustes"
        The map fitted on the barycentric targets (:class:`~latentalign.align.procrustes.Procrustes` or
        :class:`~latentalign.align.affine.Affine`), saved as ``map_``.
    n_iter : int, optional
        Most rounds after the start (default: 5 for the OT methods, 50 for self-learning). Stops early
        when the map's relative change ``||W_t - W_{t-1}||_F / ||W_t||_F`` falls below ``map_tol`` (or,
        for OT, when the row-wise matches no longer change).
    init : {"auto", "gw", "relative", "identity", "pairs"}, default "auto"
        First map. Self-learning: ``"auto"`` or ``"relative"`` matches the free rows by their relative
        representations (mutual CSLS of their cosines to the pairs), ``"pairs"`` fits on the pairs alone
        (either way, the map of the pairs alone is kept when set-aside pairs prefer it). OT methods:
        ``"auto"``: fitted on ``pairs`` when there are more pairs than source dimensions (or no free rows
        left); else ``"relative"`` when there are at least 2 pairs; else ``"gw"``.
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
        Passed to the OT solver. Unset, Sinkhorn stops at a marginal error of 1e-4 or 2,000 iterations
        inside the rounds (each coupling only feeds one map fit); the other solvers use the defaults of
        :mod:`latentalign.functional.ot`.
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
        Seed of the row sampling (and of the stochastic dictionary induction).
    map_tol : float, default 1e-3
        Convergence on the map: relative change between rounds below this.
    csls_k : int, default 10
        CSLS neighbourhood of the self-learning matches.
    confidence : float or None, default 0.1
        Self-learning: quantile of the held-out known pairs' cosines below which a match is left out
        (None keeps every mutual match).

    Attributes
    ----------
    map_ : Procrustes or Affine
        The fitted map between the preprocessed spaces.
    preprocess_x_, preprocess_y_ : Chain
    matches_ : torch.Tensor of shape (n_x,), int64
        For each row of ``X``: its paired row of ``Y`` (anchors), the row of ``Y`` carrying most of its
        mass in the last coupling (free rows that were coupled), or -1 (rows left out by sampling).
        Unsupervised route: its row in the final dictionary (the mutual match when there is one), or -1.
    history_ : list of dict
        One entry per round (``round`` 0 is the start), with its ``step``. Unsupervised route: see
        :attr:`UnsupervisedAligner.history_ <latentalign.align.unsupervised.UnsupervisedAligner>`. OT rounds: ``changed``
        (fraction of coupled rows whose match changed since the previous coupling; None when there is
        none to compare), ``map_change``, ``residual`` (``1 - R^2`` of the map fitted on that round's
        targets), ``n_coupled``. Self-learning rounds: see
        :func:`~latentalign.functional.self_learning.seeded_self_learning`.
    method_ : str
        The route taken (``"auto"`` resolved).
    restarts_ : list of dict
        Unsupervised route only: every start screened, with its unsupervised ``score`` and whether it
        was ``chosen``.
    score_ : float
        Unsupervised route only: the unsupervised score of the chosen map.
    converged_ : bool
        Whether the map (or the matches) stopped changing within ``n_iter`` rounds.
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
        method: str = "auto",
        reg: float = 0.05,
        refine: str = "procrustes",
        n_iter: int | None = None,
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
        map_tol: float = 1e-3,
        csls_k: int = 10,
        confidence: float | None = 0.1,
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
        self.map_tol = map_tol
        self.csls_k = csls_k
        self.confidence = confidence

    # -- parameters ---------------------------------------------------------------------------------
    def _check_params(self) -> None:
        check_choice(self.refine, "refine", _REFINES)
        check_choice(self.method, "method", ("auto", UNSUPERVISED, *OT_ROUND_METHODS))
        # "auto" may fall back on Sinkhorn, so its options are checked as Sinkhorn's
        rounds = "sinkhorn" if self.method in ("auto", UNSUPERVISED) else self.method
        check_ot_rounds_options(**self._round_options(rounds))

    def _resolve_method(self, n_pairs: int, n_free_x: int, n_free_y: int) -> str:
        if self.method != "auto":
            return str(self.method)
        if n_pairs == 0 and self.init == "auto":
            return UNSUPERVISED
        seeded = n_pairs >= AUTO_MIN_PAIRS and min(n_free_x, n_free_y) >= 2
        return "self-learning" if seeded else "sinkhorn"

    def _round_options(self, method: str) -> dict[str, Any]:
        """The parameters the rounds take, as keyword arguments, for the route ``method``."""
        options = {name: getattr(self, name) for name in _ROUND_OPTIONS}
        n_iter = self.n_iter
        if n_iter is None:
            n_iter = _DEFAULT_ROUNDS.get(method, _DEFAULT_OT_ROUNDS)
        return {**options, "method": method, "n_iter": n_iter}

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
        method = self._resolve_method(
            P.shape[0],
            Xt.shape[0] - int(P[:, 0].unique().numel()),
            Yt.shape[0] - int(P[:, 1].unique().numel()),
        )
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)
        if method == UNSUPERVISED:
            if P.shape[0]:
                raise ValueError(
                    f"method='unsupervised' takes no pairs, got {P.shape[0]}. Pass pairs=None, or "
                    "method='auto' to use the pairs (self-learning from them)."
                )
            return self._fit_unsupervised(Xt, Yt)
        prep_x = make_preprocessor(self.preprocess).fit(Xt)
        prep_y = make_preprocessor(self.preprocess).fit(Yt)

        def fit_map(Xa: torch.Tensor, Ya: torch.Tensor) -> tuple[Any, Aligner]:
            mapping = make_map(self.refine).fit(Xa, Ya)
            return mapping._transform, mapping

        def fit_alone(Xa: torch.Tensor, Ya: torch.Tensor) -> tuple[Any, Aligner]:
            mapping = make_map(self.refine, few_pairs=True).fit(Xa, Ya)
            return mapping._transform, mapping

        options = self._round_options(method)
        Xp, Yp = prep_x._forward(Xt), prep_y._forward(Yt)
        confirmed: OTRounds | None = None
        few = P.shape[0] < min(Xp.shape[1], CANDIDATE_PAIRS_BELOW)
        if self.method == "auto" and method == "self-learning" and self.init == "auto" and few:
            route = self._unsupervised_candidate(Xp, Yp, P)
            if route.confirmed_:
                confirmed = _confirmed_route(route, P, Xp.shape[0])
        desc = f"OTAligner ({method}, {Xt.shape[0]} x {Yt.shape[0]} rows, {P.shape[0]} pairs)"
        with (
            RoundProgress(desc, logger=logger, total=options["n_iter"], keys=_SHOWN) as progress,
            warnings.catch_warnings(record=True) as caught,
        ):
            # the rounds fit many intermediate maps on few rows; only the final map's conditioning matters
            warnings.simplefilter("always", IllConditionedWarning)
            if confirmed is not None:
                # the known pairs, which its fits never saw, confirmed the zero-pair map: taken as it is
                rounds = confirmed
            else:
                rounds = ot_alignment_rounds(
                    Xp,
                    Yp,
                    fit_map,
                    pairs=P,
                    **options,
                    label="OTAligner",
                    on_round=progress,
                    fit_alone=fit_alone if method == "self-learning" else None,
                )
            progress.outcome = "converged" if rounds.converged else "not converged"
        ill = [w for w in caught if issubclass(w.category, IllConditionedWarning)]
        for w in caught:
            if w not in ill:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        final_rank = getattr(rounds.map, "rank_", None)
        if ill and (final_rank is None or final_rank < min(Xt.shape[1], Yt.shape[1])):
            warnings.warn(ill[-1].message, IllConditionedWarning, stacklevel=2)
        if confirmed is not None and not confirmed.history[0]["validation"]["firmly_confirmed"]:
            scores = confirmed.history[0]["validation"]
            warnings.warn(
                f"OTAligner took the zero-pair map because {scores['pair_hits']} of the {P.shape[0]} known pairs, "
                "which none of its fits saw, rank their targets first under it; but no other of its "
                f"{scores['n_starts']} screened starts found it again, its score does not stand out and not every "
                "pair is first, so it may be only partly right. Check it on pairs held out of the fit, or pass "
                f"more pairs (from {CANDIDATE_PAIRS_BELOW} on, the zero-pair route is not tried).",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.method_ = method
        self.preprocess_x_ = prep_x
        self.preprocess_y_ = prep_y
        self.map_ = rounds.map
        self.matches_ = rounds.matches
        self.history_ = rounds.history
        self.converged_ = rounds.converged
        self.n_iter_ = rounds.n_iter
        self.n_features_in_ = int(Xt.shape[1])
        self.n_features_out_ = int(Yt.shape[1])
        return self

    def _unsupervised_candidate(self, Xp: torch.Tensor, Yp: torch.Tensor, P: torch.Tensor) -> UnsupervisedAligner:
        """The zero-pair route on the preprocessed rows, its starts judged by the known pairs.

        No known pair enters its fits, but they judge its starts: screening goes on until the pairs confirm
        a start's map (:func:`~latentalign.functional.unsupervised.unsupervised_alignment`,
        ``judge_pairs``), up to ``CANDIDATE_STARTS``. A map they do not confirm is dropped: after that many
        starts it has most likely failed, and the route check would judge it on the few pairs it sets
        aside, where a failed map can win by chance.
        """
        route = UnsupervisedAligner(
            csls_k=self.csls_k,
            n_init=CANDIDATE_FIRST_STARTS,
            max_starts=CANDIDATE_STARTS,
            random_state=self.random_state,
        )
        with warnings.catch_warnings():
            # an unconfirmed start is not an error here: the route from the pairs is taken instead
            warnings.simplefilter("ignore", ConvergenceWarning)
            route.fit(Xp, Yp, judge_pairs=P)
        return route

    def _fit_unsupervised(self, Xt: torch.Tensor, Yt: torch.Tensor) -> OTAligner:
        """The zero-pair route: :class:`UnsupervisedAligner`'s fit, its map refitted when ``refine="affine"``."""
        route = UnsupervisedAligner(csls_k=self.csls_k, preprocess=self.preprocess, random_state=self.random_state)
        route.fit(Xt, Yt)
        matches, mutual = _dictionary_matches(route.dictionary_, Xt.shape[0])
        self.map_ = route.map_
        if self.refine != "procrustes":
            # A least-squares map is pulled off by the few wrong matches of the union (1.3 % on a planted
            # problem moved it 20 times further from the truth); the mutual pairs had none there.
            Xp, Yp = route.preprocess_x_._forward(Xt), route.preprocess_y_._forward(Yt)
            self.map_ = make_map(self.refine).fit(Xp[mutual[:, 0].to(Xp.device)], Yp[mutual[:, 1].to(Yp.device)])
        self.method_ = UNSUPERVISED
        self.preprocess_x_ = route.preprocess_x_
        self.preprocess_y_ = route.preprocess_y_
        self.matches_ = matches
        self.history_ = route.history_
        self.restarts_ = route.restarts_
        self.score_ = route.score_
        self.converged_ = route.converged_
        self.n_iter_ = route.n_iter_
        self.n_features_in_ = int(Xt.shape[1])
        self.n_features_out_ = int(Yt.shape[1])
        return self


def _dictionary_matches(dictionary: torch.Tensor, n_x: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each source row's match in an unsupervised dictionary (-1: none), and the dictionary's mutual pairs.

    The dictionary is the union of both directions' matches; the pairs found in both are the sure ones,
    and a row's mutual match wins over its one-way match.
    """
    unique, counts = dictionary.unique(dim=0, return_counts=True)
    mutual = unique[counts > 1] if int((counts > 1).sum()) >= MIN_MAP_ROWS else unique
    matches = torch.full((n_x,), -1, dtype=torch.long)
    matches[unique[:, 0]] = unique[:, 1]
    matches[mutual[:, 0]] = mutual[:, 1]
    return matches, mutual


def _confirmed_route(route: UnsupervisedAligner, P: torch.Tensor, n_x: int) -> OTRounds:
    """The zero-pair candidate the known pairs confirmed, as the result: its map, its matches plus the pairs."""
    chosen = next(entry for entry in route.restarts_ if entry["chosen"])
    scores = {
        "route": UNSUPERVISED,
        "confirmed_by_pairs": True,
        "firmly_confirmed": bool(route.firmly_confirmed_),
        "n_starts": len(route.restarts_),
        "pair_hits": chosen["pair_hits"],
        "pair_mrr": chosen["pair_mrr"],
        "n_pairs_judging": int(P.shape[0]),
        "n_pairs_set_aside": 0,
    }
    matches, _ = _dictionary_matches(route.dictionary_, n_x)
    matches[P[:, 0].cpu()] = P[:, 1].cpu()
    history = [{"step": UNSUPERVISED, **entry} for entry in route.history_]
    history[0]["validation"] = scores
    return OTRounds(
        map=route.map_,
        transform=route.map_._transform,
        matches=matches,
        history=history,
        converged=bool(route.converged_),
        n_iter=int(route.n_iter_),
    )
