"""How sure is each match? Per-query confidence scores and their reliability.

:func:`match_confidence` gives every query its best key and a confidence:

==================  =====================================================================================
``kind``            confidence of query ``i``
==================  =====================================================================================
``"margin"``        cosine of the best key minus cosine of the second best (a gap, in ``[0, 2]``)
``"csls_margin"``   the same gap on CSLS scores (Conneau et al., 2018), the best key ranked by CSLS
``"coupling"``      share of query ``i``'s mass that an entropic OT coupling between all queries and all
                    keys sends to its chosen key (the row's largest entry of the coupling times ``n_q``),
                    in ``[0, 1]``: probability-like
==================  =====================================================================================

The coupling is solved here, between the queries and keys given (uniform marginals, cosine cost scaled by
its mean, Sinkhorn with ``reg``; :func:`latentalign.functional.ot.ot_plan`), because a fitted
:class:`~latentalign.align.OTAligner` keeps its map and its training matches (``matches_``), not the
coupling, and the evaluation queries are new rows anyway. It holds an ``n_q x n_k`` matrix.

:func:`reliability_curve` asks whether the confidence is informative: queries are sorted by confidence and
cut into bins of equal size; for each bin it reports the mean confidence, the mean confidence rank (0 to 1)
and the accuracy. An informative score has accuracy rising with the rank. ``auroc`` is the probability
that a correct match has a higher confidence than a wrong one (0.5: uninformative). With
``probabilities=True`` (scores meant as the probability that the match is right, like ``"coupling"``) it
also gives the expected calibration error of Guo et al. (2017) over ``n_bins`` equal-width bins of
``[0, 1]``, ``sum_b (n_b / n) |accuracy_b - mean confidence_b|``; margins are not probabilities, so by
default the ECE is None.

:func:`calibrate_confidence` turns any of these scores into a probability that the match is right: it
fits a :class:`ConfidenceCalibrator` on matches known to be right or wrong (queries the calibrator's user
holds out for this, never the ones it is evaluated on) with scikit-learn's isotonic regression or a 1-D
logistic regression (Platt scaling), and maps new confidences to probabilities in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from latentalign._array import ArrayLike
from latentalign._validation import check_choice, check_is_fitted, check_number, check_pair
from latentalign.base import BaseEstimator
from latentalign.functional.ot import ot_plan
from latentalign.functional.retrieval import csls_knn, knn

__all__ = [
    "match_confidence",
    "MatchConfidence",
    "reliability_curve",
    "ReliabilityCurve",
    "calibrate_confidence",
    "ConfidenceCalibrator",
    "CONFIDENCE_KINDS",
    "CALIBRATION_METHODS",
]

CONFIDENCE_KINDS = ("csls_margin", "margin", "coupling")
CALIBRATION_METHODS = ("isotonic", "sigmoid")


class MatchConfidence(NamedTuple):
    """The chosen key of every query and the confidence in it (same backend as the queries)."""

    match: ArrayLike
    confidence: ArrayLike


def match_confidence(
    Q: ArrayLike,
    K: ArrayLike,
    *,
    kind: str = "csls_margin",
    csls_k: int = 10,
    reg: float = 0.05,
) -> MatchConfidence:
    """Best key of every query and a confidence in it (see the module docstring for the kinds).

    Parameters
    ----------
    Q : array of shape (n_queries, d)
        Queries, e.g. source rows mapped into the target space.
    K : array of shape (n_keys, d)
        Keys; at least 2 (a margin needs a second best).
    kind : {"csls_margin", "margin", "coupling"}
    csls_k : int, default 10
        CSLS neighbourhood (``"csls_margin"``).
    reg : float, default 0.05
        Entropic regularisation relative to the mean cost (``"coupling"``).

    Returns
    -------
    MatchConfidence
        ``match`` (int64 key indices) and ``confidence`` (floats), numpy or torch like ``Q``.

    Examples
    --------
    >>> import numpy as np
    >>> K = np.eye(3)
    >>> Q = np.array([[1.0, 0.0, 0.0], [0.6, 0.5, 0.0]])
    >>> match, conf = match_confidence(Q, K, kind="margin")
    >>> match.tolist(), bool(conf[0] > conf[1])
    ([0, 0], True)
    """
    check_choice(kind, "kind", CONFIDENCE_KINDS)
    Qt, Kt, _ = check_pair(Q, K, ("Q", "K"), paired=False, same_features=True)
    if Kt.shape[0] < 2:
        raise ValueError(
            f"K has {Kt.shape[0]} row, but a confidence compares the best key with the second best: pass at "
            "least 2 keys."
        )
    if kind == "coupling":
        check_number(reg, "reg", low=0.0, low_inclusive=False)
        P = torch.as_tensor(ot_plan(Qt, Kt, method="sinkhorn", reg=float(reg), metric="cosine"))
        best, match = P.max(dim=1)
        confidence = best * Qt.shape[0]  # uniform marginals: each row holds 1 / n_q
    else:
        if kind == "csls_margin":
            check_number(csls_k, "csls_k", integer=True, low=1)
            scores, idx = csls_knn(Qt, Kt, k=2, csls_k=min(int(csls_k), Kt.shape[0], Qt.shape[0]))
        else:
            scores, idx = knn(Qt, Kt, k=2, metric="cosine")
        scores, idx = torch.as_tensor(scores), torch.as_tensor(idx)
        match, confidence = idx[:, 0], scores[:, 0] - scores[:, 1]
    if isinstance(Q, torch.Tensor):
        return MatchConfidence(match.to(Q.device), confidence.to(Q.device))
    return MatchConfidence(match.cpu().numpy(), confidence.cpu().numpy())


@dataclass
class ReliabilityCurve:
    """What :func:`reliability_curve` returns; ``bins`` has one dict per bin (lowest confidence first).

    Each bin: ``count``, ``confidence_low`` / ``confidence_high`` (its range), ``mean_confidence``,
    ``mean_rank`` (mean confidence rank, ``(rank - 0.5) / n``, in ``(0, 1)``) and ``accuracy``.
    """

    bins: list[dict[str, float]]
    accuracy: float
    auroc: float | None
    ece: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"bins": self.bins, "accuracy": self.accuracy, "auroc": self.auroc, "ece": self.ece, "n": self.n}


def _as_numpy(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    out = np.asarray(values)
    if out.ndim != 1 or out.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array (one value per query), got shape {out.shape}.")
    return out


def _finite_scores(values: Any) -> np.ndarray:
    conf = _as_numpy(values, "confidence").astype(np.float64)
    if not np.all(np.isfinite(conf)):
        raise ValueError("confidence contains NaN or infinite values; pass finite scores.")
    return conf


def _check_scores(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """Confidences as float64 and right/wrong flags as booleans, one of each per query."""
    conf = _as_numpy(confidence, "confidence").astype(np.float64)
    hits = _as_numpy(correct, "correct")
    if hits.shape != conf.shape:
        raise ValueError(
            f"correct must have one entry per confidence value ({conf.size}), got {hits.size}. Pass both for the "
            "same queries, in the same order."
        )
    if hits.dtype != bool and not np.isin(hits, (0, 1)).all():
        raise ValueError("correct must hold booleans or 0/1, got other values. Pass match == gold.")
    return _finite_scores(conf), hits.astype(bool)


def _auroc(confidence: np.ndarray, correct: np.ndarray) -> float | None:
    """P(confidence of a correct match > that of a wrong one), ties counted half (Mann-Whitney)."""
    n_pos, n_neg = int(correct.sum()), int((~correct).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(confidence)
    return float((ranks[correct].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    which = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def reliability_curve(
    confidence: Any, correct: Any, n_bins: int = 10, *, probabilities: bool = False
) -> ReliabilityCurve:
    """Accuracy against confidence rank, in bins of equal size; AUROC; ECE for probability-like scores.

    Parameters
    ----------
    confidence : array of shape (n,)
        One score per query (higher: more confident), numpy or torch.
    correct : array of shape (n,)
        Whether each query's match is right (booleans or 0/1).
    n_bins : int, default 10
        Bins (at most ``n``); rows with the same confidence may fall in different bins, in input order.
    probabilities : bool, default False
        The scores are probabilities (in ``[0, 1]``) that the match is right: compute the ECE too.

    Returns
    -------
    ReliabilityCurve

    Examples
    --------
    >>> import numpy as np
    >>> conf = np.linspace(0.0, 1.0, 100)
    >>> curve = reliability_curve(conf, conf > 0.5, n_bins=4)
    >>> [b["accuracy"] for b in curve.bins], curve.auroc
    ([0.0, 0.0, 1.0, 1.0], 1.0)
    """
    conf, hits = _check_scores(confidence, correct)
    n_bins = check_number(n_bins, "n_bins", integer=True, low=1)
    n = conf.size
    order = np.argsort(conf, kind="stable")
    ranks = np.empty(n)
    ranks[order] = (np.arange(n) + 0.5) / n
    bins = []
    for part in np.array_split(order, min(n_bins, n)):
        bins.append(
            {
                "count": int(part.size),
                "confidence_low": float(conf[part].min()),
                "confidence_high": float(conf[part].max()),
                "mean_confidence": float(conf[part].mean()),
                "mean_rank": float(ranks[part].mean()),
                "accuracy": float(hits[part].mean()),
            }
        )
    if probabilities and not (conf.min() >= 0.0 and conf.max() <= 1.0):
        raise ValueError(
            f"probabilities=True needs confidence values in [0, 1], got [{conf.min():.4g}, {conf.max():.4g}]. "
            "Pass probabilities=False for margins and other scores."
        )
    return ReliabilityCurve(
        bins=bins,
        accuracy=float(hits.mean()),
        auroc=_auroc(conf, hits),
        ece=_ece(conf, hits, n_bins) if probabilities else None,
        n=n,
    )


class ConfidenceCalibrator(BaseEstimator):
    """Maps a match's confidence to the probability that the match is right.

    Fitted on the confidences of matches known to be right or wrong (a calibration set, kept apart from the
    queries it is then evaluated on); any score works whose larger values mean a likelier right match
    (margins, CSLS margins, OT coupling mass).

    Parameters
    ----------
    method : {"isotonic", "sigmoid"}, default "isotonic"
        ``"isotonic"``: :class:`sklearn.isotonic.IsotonicRegression` (non-decreasing, clipped to ``[0, 1]``
        and, outside the calibration range, to the value at its nearest end): no assumed shape, but a step
        function that needs a few hundred calibration matches to be smooth. ``"sigmoid"``: Platt scaling,
        :class:`sklearn.linear_model.LogisticRegression` on the standardised confidence (two parameters,
        steadier on small calibration sets; scikit-learn's default L2 penalty, ``C=1``, keeps the slope finite
        when the calibration set separates right from wrong matches perfectly).

    Attributes
    ----------
    estimator_ : IsotonicRegression or LogisticRegression
        The fitted scikit-learn model.
    center_, scale_ : float
        Mean and standard deviation of the calibration confidences (``"sigmoid"`` standardises with them;
        ``0`` and ``1`` for ``"isotonic"``).
    n_calibration_ : int
        Calibration matches.
    accuracy_ : float
        Share of them that are right.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> margin = rng.random(500) * 0.2
    >>> right = rng.random(500) < 5 * margin  # the right-match probability is 5 x the margin
    >>> calibrator = ConfidenceCalibrator(method="isotonic").fit(margin, right)
    >>> p = calibrator.predict(np.array([0.0, 0.05, 0.3]))
    >>> bool(0.0 <= p[0] < p[1] <= p[2] <= 1.0)
    True
    """

    def __init__(self, method: str = "isotonic") -> None:
        self.method = method

    def fit(self, confidence: Any, correct: Any) -> ConfidenceCalibrator:
        """Fit the map from ``confidence`` to the probability that ``correct`` is true.

        Parameters
        ----------
        confidence : array of shape (n,)
            One score per calibration match (numpy or torch).
        correct : array of shape (n,)
            Whether each match is right (booleans or 0/1); both right and wrong matches must occur.

        Returns
        -------
        ConfidenceCalibrator
            ``self``, fitted.
        """
        check_choice(self.method, "method", CALIBRATION_METHODS)
        conf, hits = _check_scores(confidence, correct)
        n_right = int(hits.sum())
        if n_right in (0, hits.size):
            which = "right" if n_right else "wrong"
            raise ValueError(
                f"correct marks every one of the {hits.size} calibration matches {which}, so the confidence "
                "cannot be calibrated: a calibrator learns how the chance of a right match changes with the "
                "confidence, which needs both right and wrong matches. Pass a calibration set holding both "
                "(more queries, or matches from a weaker fit)."
            )
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            self.center_, self.scale_ = 0.0, 1.0
            self.estimator_: Any = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(
                conf, hits.astype(np.float64)
            )
        else:
            from sklearn.linear_model import LogisticRegression

            std = float(conf.std())
            self.center_, self.scale_ = float(conf.mean()), std if std > 0 else 1.0
            self.estimator_ = LogisticRegression().fit(self._standardised(conf), hits)
        self.n_calibration_ = int(hits.size)
        self.accuracy_ = n_right / hits.size
        return self

    def _standardised(self, conf: np.ndarray) -> np.ndarray:
        return ((conf - self.center_) / self.scale_)[:, None]

    def predict(self, confidence: Any) -> ArrayLike:
        """Probability that each match is right, in ``[0, 1]``.

        Parameters
        ----------
        confidence : array of shape (n,)
            Scores of the same kind as the calibration set's (numpy or torch).

        Returns
        -------
        array of shape (n,)
            float64 probabilities, numpy or torch (on the input's device) like ``confidence``.
        """
        check_is_fitted(self, ["estimator_"])
        conf = _finite_scores(confidence)
        if self.method == "isotonic":
            proba = np.asarray(self.estimator_.predict(conf), dtype=np.float64)
        else:
            proba = self.estimator_.predict_proba(self._standardised(conf))[:, 1].astype(np.float64)
        proba = np.clip(proba, 0.0, 1.0)
        if isinstance(confidence, torch.Tensor):
            return torch.from_numpy(proba).to(confidence.device)
        return proba

    def transform(self, confidence: Any) -> ArrayLike:
        """Same as :meth:`predict` (for pipelines that call ``transform``)."""
        return self.predict(confidence)


def calibrate_confidence(confidence: Any, correct: Any, method: str = "isotonic") -> ConfidenceCalibrator:
    """Fit a map from a match confidence to the probability that the match is right.

    Parameters
    ----------
    confidence : array of shape (n,)
        Confidence of each calibration match (e.g. from :func:`match_confidence`); higher: likelier right.
    correct : array of shape (n,)
        Whether each of those matches is right (booleans or 0/1); both must occur.
    method : {"isotonic", "sigmoid"}, default "isotonic"
        Isotonic regression or Platt scaling (see :class:`ConfidenceCalibrator`); prefer ``"sigmoid"`` with
        fewer than a few hundred calibration matches.

    Returns
    -------
    ConfidenceCalibrator
        Fitted; ``predict`` (or ``transform``) maps new confidences to probabilities in ``[0, 1]``. Fit it on
        queries kept apart from those it is evaluated on: on its own calibration set it looks better than it is.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> margin = rng.normal(size=2000)
    >>> right = rng.random(2000) < 1 / (1 + np.exp(-3 * margin))  # P(right) = sigmoid(3 x margin)
    >>> calibrator = calibrate_confidence(margin[:1000], right[:1000], method="sigmoid")
    >>> p = calibrator.predict(margin[1000:])
    >>> curve = reliability_curve(p, right[1000:], probabilities=True)
    >>> bool(curve.ece < 0.05)
    True
    """
    return ConfidenceCalibrator(method=method).fit(confidence, correct)
