"""Alignment from zero pairs: :class:`UnsupervisedAligner`.

A thin estimator over :func:`latentalign.functional.unsupervised.unsupervised_alignment`: an
unsupervised first dictionary (VecMap's sorted similarity distributions, or annealed entropic
Gromov-Wasserstein), robust self-learning (stochastic, bidirectional CSLS dictionary induction on the
most frequent rows), best of several starts by an unsupervised score, and a final orthogonal map that
works on unseen points. The starts differ from each other (frequency cut-offs, random subsets,
Gromov-Wasserstein couplings); each is screened by a self-learning run on fewer rows and only the best, by
the unsupervised score, gets the full run.

Rows of ``X`` and ``Y`` are not paired and their numbers may differ. Put the most important rows
(the most frequent words) first: the start and the dictionary induction use the first rows.
"""

from __future__ import annotations

import logging

import torch

from latentalign._array import ArrayLike
from latentalign._progress import RoundProgress
from latentalign._validation import check_choice, check_number
from latentalign.align.base import PreprocessedMapAligner, check_unpaired
from latentalign.align.procrustes import Procrustes
from latentalign.functional.unsupervised import UNSUPERVISED_INITS, unsupervised_alignment, use_identity_start
from latentalign.preprocessing import make_preprocessor

__all__ = ["UnsupervisedAligner"]

logger = logging.getLogger(__name__)


class UnsupervisedAligner(PreprocessedMapAligner):
    """Align two spaces without any known pair (VecMap-style self-learning from an unsupervised start).

    Parameters
    ----------
    init : {"neighbourhood", "vecmap", "gw", "mixed"}, default "neighbourhood"
        First dictionaries: ``"vecmap"`` compares the sorted similarity distributions of the first
        rows of each space (Artetxe et al., 2018), over different cut-offs and random subsets per start;
        ``"neighbourhood"`` describes each row by those sorted similarities next to the mean ones of
        its nearest neighbours, which matches more rows right between spaces that are only roughly
        isometric (its starts alternate with VecMap's: :func:`~latentalign.functional.unsupervised.candidate_starts`);
        ``"gw"`` runs entropic Gromov-Wasserstein on cosine distances, annealed (Alvarez-Melis and
        Jaakkola, 2018), from different starting couplings; ``"mixed"`` makes the last start a GW one.
    n_init : int, default 3
        Starts (seeds ``random_state, random_state + 1, ...``), each screened by ``screen_iter``
        self-learning rounds; the one whose map gives the best mean CSLS score over mutual nearest
        neighbours gets the full run. No known pair is ever used.
    init_size : int, optional
        Rows per side used by the start (4000 for similarity profiles, 1000 for ``"gw"`` by default).
    identity_start : bool or "auto", default "auto"
        One more start for models that share coordinates (one fine-tuned or distilled from the other):
        the CSLS matches under the identity map, screened after the ``n_init`` starts when those leave
        their best map unconfirmed, and kept only if its map scores best. ``"auto"``: when ``X`` and ``Y`` have the same dimension. On MiniLM-L6 vs MiniLM-L3
        embeddings of 1,200 words, where every sorted-similarity start failed, it is the start that works.
    vocab_cutoff : int, default 5000
        Rows per side taking part in dictionary induction (memory: a few ``cutoff x cutoff`` matrices).
    csls_k : int, default 10
        CSLS neighbourhood (capped at the rows available).
    keep_prob : float, default 0.1
        Starting share of similarities kept in the stochastic dictionary induction (grows to 1).
    patience : int, default 5
        Rounds without progress before ``keep_prob`` grows.
    max_iter : int, default 150
        Most self-learning rounds per start.
    tol : float, default 1e-6
        Convergence: relative change of the map between rounds, ``||W_t - W_(t-1)||_F / ||W_t||_F``.
    screen_iter : int, default 100
        Most self-learning rounds of each start's screening run (with ``n_init > 1``); a run stops
        earlier once its map stops changing.
    screen_size : int, default 2000
        Rows per side in the screening runs. Where the two sides are not in a shared order of importance
        (two shuffled sets rather than two frequency-sorted vocabularies), a screen on fewer rows than a
        side has compares partly different items, and fewer starts succeed (see
        :func:`~latentalign.functional.unsupervised.unsupervised_alignment`).
    max_starts : int, default 24
        When no other start confirms the best of the ``n_init`` (its screened map within ``agree_tol``
        of the best one's, or finding ``agree_share`` of its mutual matches again) and the best score
        does not stand out (1.5 times the median of the others),
        more starts are screened (the first start with new induction seeds, new random subsets), up to
        ``max_starts`` in all. Measured on MiniLM-L6 vs L3 words, where a start succeeds about one
        time in three: failed starts scored 0.25-0.26 and ended at maps far apart (relative distance
        about 1.4), the good map scored 0.55. On MiniLM-L6 vs e5-small embeddings of 1,349 WordNet
        glosses (one of five random subsets) the first eleven starts failed (0.30-0.31) and the twelfth
        succeeded (0.60, R@1 0.99 on held-out glosses): 8 starts left that fit failed. On the same subset
        embedded again, all 25 starts (with the identity start) failed (best 0.306) while every start
        had ``patience`` 5; with the extra starts at ``extra_patience`` the fit succeeds (R@1 0.991,
        161 s): the right map's basin is narrow there. Where no start
        can succeed (two sets of different items), every start is screened, within ``time_budget``.
    extra_patience : int, optional
        ``patience`` of those extra starts (default twice ``patience``): they explore longer before they
        settle, which succeeds more often where the basin is narrow, at about twice the rounds per start
        (see :func:`~latentalign.functional.unsupervised.unsupervised_alignment`).
    agree_tol : float, default 0.05
        Relative distance between two screened maps under which they agree.
    agree_share : float, default 0.5
        Share of the best screened map's mutual CSLS matches another start must find again to agree with
        it (maps between spaces of different dimensions can agree on the matches and still lie far
        apart). On MiniLM-L6 -> MPNet captions the starts that succeeded shared 83-88 % of the matches,
        the failed ones 1-27 %.
    time_budget : float or None, default 600
        Seconds after which no start beyond the ``n_init`` first is screened (None: no limit).
    preprocess : str or list of str, optional
        Steps fitted on ``X`` and ``Y`` separately before everything else (the rows are also
        normalised inside as VecMap does: unit length, centred, unit length).
    random_state : int, default 0

    Attributes
    ----------
    map_ : Procrustes
        The orthogonal map (``center=False``) fitted on the final dictionary of normalised rows (unit
        length, centred, unit length). :meth:`transform` applies it to the preprocessed rows as they are;
        for cosine retrieval pass ``preprocess=["l2", "center", "l2"]`` so that those rows are the
        normalised ones the map was fitted on.
    preprocess_x_, preprocess_y_ : Chain
    dictionary_ : torch.Tensor of shape (p, 2), int64
        Final induced pairs ``(index into X, index into Y)``.
    history_ : list of dict
        Per round of the chosen start: ``keep_prob``, ``objective``, ``map_change``, ``n_pairs``.
    restarts_ : list of dict
        One entry per start: ``seed``, ``start``, ``score`` (after screening), ``n_iter``, ``patience``, ``chosen``,
        ``gap`` (relative distance of its screened map to the chosen one's) and ``agreement`` (share of
        the chosen screened map's mutual matches it found too); with ``judge_pairs``, also
        ``pair_hits`` and ``pair_mrr`` (how its screened map ranks the known pairs).
    confirmed_ : bool
        Whether the chosen start was confirmed (found again by another start, a standout score, or the
        known pairs of ``judge_pairs``); False with a single start.
    firmly_confirmed_ : bool
        With ``judge_pairs``: whether another start found the chosen map again (or its score stands out)
        and at least 2 pairs are at rank 1 under it, or every pair is. A start the pairs alone confirm may
        be only partly right: MiniLM-L6 -> MPNet captions, 5 pairs, different captions on the two sides,
        24 starts screened: the best put 3 of the 5 pairs first, and its map reached R@1 0.095. Without
        ``judge_pairs``, ``confirmed_``.
    score_ : float
        Unsupervised score of the chosen map.
    converged_ : bool
    n_iter_ : int
    n_features_in_, n_features_out_ : int

    Examples
    --------
    A rotated, shuffled copy of a clustered cloud, no pair given:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> spectrum = np.geomspace(3, 0.1, 16)
    >>> centres = rng.normal(size=(12, 16)) * spectrum
    >>> X = centres[rng.integers(0, 12, 600)] + 0.5 * rng.normal(size=(600, 16)) * spectrum
    >>> Q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    >>> perm = rng.permutation(600)
    >>> model = UnsupervisedAligner(n_init=1).fit(X, (X @ Q)[perm])
    >>> model.converged_, bool(np.allclose(model.map_.rotation_.numpy(), Q, atol=1e-6))
    (True, True)
    """

    def __init__(
        self,
        *,
        init: str = "neighbourhood",
        n_init: int = 3,
        init_size: int | None = None,
        identity_start: bool | str = "auto",
        vocab_cutoff: int = 5000,
        csls_k: int = 10,
        keep_prob: float = 0.1,
        patience: int = 5,
        max_iter: int = 150,
        tol: float = 1e-6,
        screen_iter: int = 100,
        screen_size: int = 2000,
        max_starts: int = 24,
        extra_patience: int | None = None,
        agree_tol: float = 0.05,
        agree_share: float = 0.5,
        time_budget: float | None = 600.0,
        preprocess: str | list[str] | None = None,
        random_state: int = 0,
    ) -> None:
        self.init = init
        self.n_init = n_init
        self.init_size = init_size
        self.identity_start = identity_start
        self.vocab_cutoff = vocab_cutoff
        self.csls_k = csls_k
        self.keep_prob = keep_prob
        self.patience = patience
        self.max_iter = max_iter
        self.tol = tol
        self.screen_iter = screen_iter
        self.screen_size = screen_size
        self.max_starts = max_starts
        self.extra_patience = extra_patience
        self.agree_tol = agree_tol
        self.agree_share = agree_share
        self.time_budget = time_budget
        self.preprocess = preprocess
        self.random_state = random_state

    def _check_params(self) -> None:
        check_choice(self.init, "init", UNSUPERVISED_INITS)
        check_number(self.n_init, "n_init", integer=True, low=1)
        check_number(self.init_size, "init_size", integer=True, low=2, allow_none=True)
        check_choice(self.identity_start, "identity_start", (True, False, "auto"))
        check_number(self.vocab_cutoff, "vocab_cutoff", integer=True, low=2)
        check_number(self.csls_k, "csls_k", integer=True, low=1)
        check_number(self.keep_prob, "keep_prob", low=0.0, high=1.0, low_inclusive=False)
        check_number(self.patience, "patience", integer=True, low=1)
        check_number(self.max_iter, "max_iter", integer=True, low=1)
        check_number(self.tol, "tol", low=0.0, low_inclusive=False)
        check_number(self.screen_iter, "screen_iter", integer=True, low=1)
        check_number(self.screen_size, "screen_size", integer=True, low=2)
        check_number(self.max_starts, "max_starts", integer=True, low=1)
        check_number(self.extra_patience, "extra_patience", integer=True, low=1, allow_none=True)
        check_number(self.agree_tol, "agree_tol", low=0.0, low_inclusive=False)
        check_number(self.agree_share, "agree_share", low=0.0, high=1.0, low_inclusive=False)
        check_number(self.time_budget, "time_budget", low=0.0, allow_none=True)
        check_number(self.random_state, "random_state", integer=True)

    def fit(self, X: ArrayLike, Y: ArrayLike, *, judge_pairs: ArrayLike | None = None) -> UnsupervisedAligner:
        """Fit from unpaired rows of ``X`` (source) and ``Y`` (target).

        Parameters
        ----------
        X : array of shape (n_x, d_x)
        Y : array of shape (n_y, d_y)
            Not paired row by row; most important rows first.
        judge_pairs : array of shape (m, 2), optional
            Known pairs ``(row of X, row of Y)`` that only judge the screened starts (with ``n_init > 1``)
            and never enter a map fit: the start whose map ranks them best is chosen, and starts are
            screened until one puts half of them (at least 2) at rank 1, up to ``max_starts``. See
            :func:`~latentalign.functional.unsupervised.unsupervised_alignment`. To fit on known pairs, use
            :class:`~latentalign.align.ot.OTAligner`.

        Returns
        -------
        self
        """
        self._check_params()
        Xt, Yt = check_unpaired(X, Y)
        self._remember_feature_names(X)
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)
        prep_x = make_preprocessor(self.preprocess).fit(Xt)
        prep_y = make_preprocessor(self.preprocess).fit(Yt)
        Xp, Yp = prep_x._forward(Xt), prep_y._forward(Yt)
        with_identity = use_identity_start(self.identity_start, Xp.shape[1], Yp.shape[1])
        n_starts = self.n_init + int(with_identity)
        desc = f"UnsupervisedAligner ({self.init}, {Xt.shape[0]} x {Yt.shape[0]} rows)"
        # screening the starts is a stage of the fit: its time goes into the rounds' one INFO line
        screening = RoundProgress(
            f"{desc}: screening starts",
            logger=logger,
            # up to: more starts are screened until one confirms the best
            total=max(self.n_init, self.max_starts) + int(with_identity),
            keys=("score",),
            unit="start",
            summary=False,
            enabled=None if n_starts > 1 else False,
        )
        rounds = RoundProgress(desc, logger=logger, total=self.max_iter, keys=("keep_prob", "map_change"))
        with rounds, screening:
            result = unsupervised_alignment(
                Xp,
                Yp,
                init=self.init,
                n_init=self.n_init,
                init_size=self.init_size,
                identity_start=self.identity_start,
                vocab_cutoff=self.vocab_cutoff,
                csls_k=self.csls_k,
                keep_prob=self.keep_prob,
                patience=self.patience,
                max_iter=self.max_iter,
                tol=self.tol,
                screen_iter=self.screen_iter,
                screen_size=self.screen_size,
                max_starts=self.max_starts,
                extra_patience=self.extra_patience,
                agree_tol=self.agree_tol,
                agree_share=self.agree_share,
                time_budget=self.time_budget,
                random_state=self.random_state,
                judge_pairs=judge_pairs,
                label="UnsupervisedAligner",
                on_start=screening,
                on_round=rounds,
            )
            rounds.outcome = "converged" if result.converged else "not converged"
            if n_starts > 1:
                rounds.outcome += f" (best of {len(result.restarts)} starts)"
        unit = torch.nn.functional.normalize
        # The map is fitted on the normalised rows (as inside the loop); applied to any row, so it
        # generalises to unseen points like any Procrustes map.
        Xn = unit(unit(Xp, dim=1) - unit(Xp, dim=1).mean(0), dim=1)
        Yn = unit(unit(Yp, dim=1) - unit(Yp, dim=1).mean(0), dim=1)
        rows, cols = result.rows.to(Xn.device), result.cols.to(Yn.device)
        self.map_ = Procrustes(center=False).fit(Xn[rows], Yn[cols])
        self.preprocess_x_ = prep_x
        self.preprocess_y_ = prep_y
        self.dictionary_ = torch.stack([result.rows.cpu(), result.cols.cpu()], 1)
        self.history_ = result.history
        self.restarts_ = result.restarts
        self.confirmed_ = result.confirmed
        self.firmly_confirmed_ = result.firmly_confirmed
        self.score_ = result.score
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.n_features_in_ = int(Xt.shape[1])
        self.n_features_out_ = int(Yt.shape[1])
        return self
