"""Self-learning refinement (VecMap, Artetxe et al. 2017/2018; MUSE, Conneau et al. 2018).

Start from a few known pairs or from an unsupervised aligner, then alternate:

1. *map*: fit a Procrustes (or affine) map on the current matches (plus the known pairs, kept throughout);
2. *re-match*: map every source row and keep the **mutual** nearest neighbours under CSLS (cross-domain
   similarity local scaling, which removes the hubs plain nearest neighbours suffer from).

Each round is logged in ``history_`` (number of matches, their mean CSLS score, the fraction that changed).
The loop stops as soon as the matches no longer change; when ``n_iter`` rounds end without that,
:class:`~latentalign.exceptions.ConvergenceWarning` says so.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import torch

from latentalign._array import ArrayLike
from latentalign._progress import RoundProgress
from latentalign._validation import check_choice, check_number
from latentalign.align.base import Aligner, PreprocessedMapAligner
from latentalign.align.ot import check_pairs, check_unpaired, make_map, min_pairs
from latentalign.functional.self_learning import mutual_csls_matches, self_learning_rounds
from latentalign.preprocessing import make_preprocessor

__all__ = ["SelfLearning", "mutual_csls_matches"]


class SelfLearning(PreprocessedMapAligner):
    """Self-learning alignment: alternate fitting a map and re-matching by mutual CSLS nearest neighbours.

    Parameters
    ----------
    init : Aligner, optional
        Aligner that gives the first map when no ``pairs`` are passed to :meth:`fit`, fitted on the
        (preprocessed) unpaired ``X`` and ``Y``: typically ``OTAligner(method="gw")`` (a
        Gromov-Wasserstein start). It must accept unpaired rows (``fit(X, Y)`` with different row counts).
    refine : {"procrustes", "affine"}, default "procrustes"
        The map refitted each round (saved as ``map_``).
    n_iter : int, default 10
        Most re-matching rounds.
    csls_k : int, default 10
        CSLS neighbourhood size (MUSE: 10).
    preprocess : str or list of str, optional
        Steps fitted on ``X`` and ``Y`` separately before everything else (VecMap normalises embeddings
        with ``["l2", "center", "l2"]``).

    Attributes
    ----------
    map_ : Aligner
        Final map between the preprocessed spaces (the fitted ``init`` when ``n_iter=0``).
    init_ : Aligner
        The fitted ``init`` (only set when it was used, i.e. without ``pairs``).
    preprocess_x_, preprocess_y_ : Chain
    matches_ : torch.Tensor of shape (p, 2), int64
        The final training pairs: the known pairs plus the last mutual-CSLS matches.
    history_ : list of dict
        Per round: ``n_matches`` (mutual pairs found), ``csls`` (their mean CSLS score: the matching
        score), ``changed`` (fraction of the union of this round's and the previous round's matches that
        is not in both; None in round 1 when there was no previous matching).
    converged_ : bool
    n_iter_ : int
    n_features_in_, n_features_out_ : int

    Examples
    --------
    Ten pairs are enough to recover a rotation of a skewed cloud in 8 dimensions:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.exponential(size=(300, 8))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    >>> perm = rng.permutation(300)
    >>> Y = (X @ Q)[perm]
    >>> inv = np.argsort(perm)
    >>> seeds = np.stack([np.arange(10), inv[:10]], axis=1)
    >>> model = SelfLearning(n_iter=10).fit(X, Y, pairs=seeds)
    >>> model.converged_, bool(np.allclose(model.transform(X), X @ Q, atol=1e-6))
    (True, True)
    """

    def __init__(
        self,
        *,
        init: Aligner | None = None,
        refine: str = "procrustes",
        n_iter: int = 10,
        csls_k: int = 10,
        preprocess: str | list[str] | None = None,
    ) -> None:
        self.init = init
        self.refine = refine
        self.n_iter = n_iter
        self.csls_k = csls_k
        self.preprocess = preprocess

    def _check_params(self) -> None:
        if self.init is not None and not isinstance(self.init, Aligner):
            raise TypeError(
                f"init must be an Aligner (e.g. OTAligner(method='gw')) or None, got {type(self.init).__name__}."
            )
        check_choice(self.refine, "refine", ("procrustes", "affine"))
        check_number(self.n_iter, "n_iter", integer=True, low=0)
        check_number(self.csls_k, "csls_k", integer=True, low=1)

    def fit(self, X: ArrayLike, Y: ArrayLike, pairs: ArrayLike | None = None) -> SelfLearning:
        """Fit from unpaired ``X`` and ``Y`` and known ``pairs`` (or the ``init`` aligner).

        Parameters
        ----------
        X : array of shape (n_x, d_x)
        Y : array of shape (n_y, d_y)
            Rows are not paired; ``n_x`` and ``n_y`` may differ.
        pairs : array of shape (m, 2), optional
            Known pairs ``(index into X, index into Y)``, kept in every round. Without them, ``init``
            must be set.

        Returns
        -------
        self
        """
        self._check_params()
        Xt, Yt = check_unpaired(X, Y)
        self._remember_feature_names(X)
        P = check_pairs(pairs, Xt.shape[0], Yt.shape[0])
        if P.shape[0] == 0 and self.init is None:
            raise ValueError(
                "SelfLearning needs a start: pass known pairs to fit(X, Y, pairs=...), or an unsupervised "
                "aligner as init (e.g. SelfLearning(init=OTAligner(method='gw')))."
            )
        if 0 < P.shape[0] < min_pairs(self.refine):
            raise ValueError(
                f"pairs has {P.shape[0]} row; refine={self.refine!r} needs at least {min_pairs(self.refine)} "
                "known pairs. Pass more pairs, or pairs=None with an init aligner."
            )
        for key in [k_ for k_ in vars(self) if k_.endswith("_") and not k_.startswith("_")]:
            delattr(self, key)
        prep_x = make_preprocessor(self.preprocess).fit(Xt)
        prep_y = make_preprocessor(self.preprocess).fit(Yt)

        def fit_map(Xa: torch.Tensor, Ya: torch.Tensor) -> tuple[Any, Aligner]:
            mapping = make_map(self.refine).fit(Xa, Ya)
            return mapping._transform, mapping

        started: list[Aligner] = []  # the fitted init, when the rounds start from it (no pairs)

        def start(Xp: torch.Tensor, Yp: torch.Tensor) -> tuple[Any, Aligner]:
            started.append(cast(Aligner, self.init).clone().fit(Xp, Yp))  # set: no pairs means init
            return started[0]._transform, started[0]

        desc = f"SelfLearning ({Xt.shape[0]} x {Yt.shape[0]} rows, {P.shape[0]} pairs)"
        with RoundProgress(desc, logger=logging.getLogger(__name__), total=self.n_iter) as progress:
            rounds = self_learning_rounds(
                prep_x._forward(Xt),
                prep_y._forward(Yt),
                fit_map,
                pairs=P,
                start=start,
                n_iter=self.n_iter,
                csls_k=self.csls_k,
                label="SelfLearning",
                on_round=progress,
            )
            progress.outcome = "converged" if rounds.converged else "not converged"
        self.preprocess_x_ = prep_x
        self.preprocess_y_ = prep_y
        if started:
            self.init_ = started[0]
        self.map_ = rounds.map
        self.matches_ = rounds.matches
        self.history_ = rounds.history
        self.converged_ = rounds.converged
        self.n_iter_ = rounds.n_iter
        self.n_features_in_ = int(Xt.shape[1])
        self.n_features_out_ = int(Yt.shape[1])
        return self
