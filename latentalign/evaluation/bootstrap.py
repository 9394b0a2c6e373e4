"""Bootstrap intervals for a score of a fitted map: resample the training pairs, refit, score held-out rows.

:func:`bootstrap` answers "how much would this score move if the map had been fitted on another draw of
pairs?". Each replicate draws ``n_pairs`` pairs with replacement from ``(X, Y)``, fits a fresh
:func:`~sklearn.base.clone` of the aligner on them and scores the metric on held-out rows:

* ``test=(X_test, Y_test)`` given: every replicate is scored on the same test rows. The point estimate is
  the aligner fitted on all pairs, scored on them. The interval then covers the uncertainty that comes
  from the choice of training pairs only; the test rows are held fixed, so their own sampling noise (a
  few hundred retrieval queries can move recall@1 by several points) is not in it.
  A resample holds only about 63 % distinct pairs. When the score depends strongly on the number of
  distinct pairs (a map with about as many parameters per output as there are pairs, e.g. Procrustes
  with pairs barely above the source dimension), every refit is worse than the map fitted on all pairs:
  the replicates are biased low and the interval may even miss the point estimate. :attr:`BootstrapResult.bias`
  reports the shift, and :func:`bootstrap` warns when the estimate lies outside the interval.
* ``test=None``: every replicate is scored on its out-of-bag pairs (those its draw left out, about 37 %).
  The point estimate is the mean over replicates. Each map saw about 63 % distinct pairs, so the values
  estimate the score of a map fitted on fewer pairs than ``n_pairs`` (pessimistic when the score still
  rises with the number of pairs); the interval mixes training and test-sample noise.

Intervals: the percentile interval of the replicate values, always; and with ``bca=True`` the bias-corrected
and accelerated (BCa) interval of Efron (1987), whose acceleration comes from a jackknife over the training
pairs (``n_pairs`` more fits; test rows given only). BCa corrects for a replicate distribution that is
shifted from the point estimate (a refit on a resample sees fewer distinct pairs, so a score that rises
with the number of pairs is biased low in the replicates) and for skew; :func:`bca_interval` follows
scipy's ``stats.bootstrap(method="BCa")`` exactly (a test checks it against scipy).

Metrics: a name or a callable ``metric(aligner, X_test, Y_test) -> float`` (e.g. a stitching accuracy).
Names are those of :func:`~latentalign.functional.retrieval.retrieval_scores` (``"recall@1"``,
``"precision@5"``, ``"mrr"``, ``"mean_rank"``, ``"median_rank"``; cosine, exact ranks, queries
``aligner.transform(X_test)`` against keys ``aligner.transform_target(Y_test)``, query ``i`` <-> key
``i``) and of :data:`~latentalign.functional.similarity.SIMILARITY_METRICS` (``"linear_cka"``, ...,
between the same two arrays). Linear CKA does not change under a rotation or an isotropic scaling of
either side, so it cannot tell one Procrustes map from another: its interval there is a single value.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from latentalign._progress import progress_bar
from latentalign._validation import check_number, check_pair
from latentalign.functional.retrieval import retrieval_scores
from latentalign.functional.similarity import SIMILARITY_METRICS, similarity_scores

__all__ = ["bootstrap", "BootstrapResult", "bca_interval", "resolve_metric", "RETRIEVAL_METRIC_NAMES"]

logger = logging.getLogger(__name__)

#: Retrieval names accepted by :func:`bootstrap` (``k`` any positive integer).
RETRIEVAL_METRIC_NAMES = ("recall@k", "precision@k", "mrr", "mean_rank", "median_rank")
_AT_K = re.compile(r"(recall|precision)@([1-9][0-9]*)")
# Fewest held-out rows a replicate is scored on (a CKA needs 2; a draw leaving fewer out is drawn again).
_MIN_HELD_OUT = 2

Metric = Callable[[Any, Any, Any], float]


@dataclass
class BootstrapResult:
    """What :func:`bootstrap` returns.

    Attributes
    ----------
    metric : str
        The metric's name (a callable's ``__name__``).
    estimate : float
        The point estimate (test rows given: the map fitted on all pairs; out-of-bag: the replicates' mean).
    low, high : float
        The percentile interval at ``confidence``.
    confidence : float
    replicates : numpy.ndarray of shape (n,)
        One value per resample, in draw order.
    n_pairs : int
        Training pairs (rows of ``X``) resampled.
    held_out : {"test", "out-of-bag"}
    random_state : int or None
    bca_low, bca_high : float or None
        The BCa interval (``bca=True``), else None.
    acceleration : float or None
        BCa's jackknife acceleration ``a``.
    """

    metric: str
    estimate: float
    low: float
    high: float
    confidence: float
    replicates: np.ndarray = field(repr=False)
    n_pairs: int
    held_out: str
    random_state: int | None = None
    bca_low: float | None = None
    bca_high: float | None = None
    acceleration: float | None = None

    @property
    def n(self) -> int:
        """Number of bootstrap replicates."""
        return int(self.replicates.shape[0])

    @property
    def bias(self) -> float:
        """Mean of the replicates minus the point estimate (0 for out-of-bag scoring, whose estimate is that mean)."""
        return float(self.replicates.mean() - self.estimate)

    @property
    def std(self) -> float:
        """Standard deviation of the replicates (the bootstrap standard error)."""
        return float(np.std(self.replicates, ddof=1)) if self.n > 1 else float("nan")

    def describe(self) -> str:
        """What the interval is, for a legend or a caption: ``"95 % bootstrap interval over pairs, n=200"``."""
        kind = "BCa bootstrap" if self.bca_low is not None else "bootstrap"
        return f"{100 * self.confidence:g} % {kind} interval over pairs, n={self.n}"

    def as_row(self) -> dict[str, Any]:
        """Columns for a run record's row: ``{metric, metric_low, metric_high, metric_interval}``.

        The BCa interval, when computed, is the one given (it is the better-founded of the two).
        :func:`latentalign.reports.plot_metric` draws ``*_low`` / ``*_high`` as error bars and puts
        ``*_interval`` in its legend.
        """
        low, high = (self.bca_low, self.bca_high) if self.bca_low is not None else (self.low, self.high)
        return {
            self.metric: self.estimate,
            f"{self.metric}_low": low,
            f"{self.metric}_high": high,
            f"{self.metric}_interval": self.describe(),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (replicates as a list)."""
        out = {k: v for k, v in self.__dict__.items() if k != "replicates"}
        return {**out, "n": self.n, "replicates": self.replicates.tolist()}


def resolve_metric(metric: str | Metric) -> tuple[str, Metric]:
    """The name and the scoring function ``f(aligner, X_test, Y_test) -> float`` of ``metric``.

    Examples
    --------
    >>> import numpy as np
    >>> from latentalign.align import Procrustes
    >>> X = np.random.default_rng(0).standard_normal((30, 4))
    >>> name, score = resolve_metric("recall@1")
    >>> name, score(Procrustes().fit(X, X), X, X)
    ('recall@1', 1.0)
    """
    if callable(metric):
        return getattr(metric, "__name__", type(metric).__name__), metric
    if not isinstance(metric, str):
        raise TypeError(
            f"metric must be a metric name or a callable(aligner, X_test, Y_test) -> float, got "
            f"{type(metric).__name__}. Pass e.g. 'recall@1' or a function."
        )
    at_k = _AT_K.fullmatch(metric)
    if at_k is not None or metric in ("mrr", "mean_rank", "median_rank"):
        k = int(at_k.group(2)) if at_k is not None else 1
        return metric, lambda aligner, Xq, Yk: _retrieval(aligner, Xq, Yk, metric, k)
    if metric in SIMILARITY_METRICS:
        return metric, lambda aligner, Xq, Yk: _similarity(aligner, Xq, Yk, metric)
    raise ValueError(
        f"metric must be one of {RETRIEVAL_METRIC_NAMES + tuple(SIMILARITY_METRICS)} (k a positive integer) or a "
        f"callable(aligner, X_test, Y_test) -> float, got {metric!r}. Pass a known name or a function."
    )


def _mapped(aligner: Any, X_test: Any, Y_test: Any) -> tuple[Any, Any]:
    Q = aligner.transform(X_test)
    K = aligner.transform_target(Y_test) if hasattr(aligner, "transform_target") else Y_test
    return Q, K


def _retrieval(aligner: Any, X_test: Any, Y_test: Any, name: str, k: int) -> float:
    Q, K = _mapped(aligner, X_test, Y_test)
    if k > K.shape[0]:
        raise ValueError(
            f"metric {name!r} needs at least {k} held-out keys, but only {K.shape[0]} were given. Pass more test "
            "rows or a smaller k."
        )
    return float(retrieval_scores(Q, K, k=k)[name])


def _similarity(aligner: Any, X_test: Any, Y_test: Any, name: str) -> float:
    Q, K = _mapped(aligner, X_test, Y_test)
    return float(similarity_scores(Q, K, metrics=(name,))[name])


def _take(A: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of ``A`` in its own backend (what the aligner and the metric were given)."""
    if isinstance(A, torch.Tensor):
        return A[torch.from_numpy(idx).to(A.device)]
    return np.asarray(A)[idx]


def _check_aligner(aligner: Any) -> Any:
    from sklearn.base import clone

    if isinstance(aligner, type) or not hasattr(aligner, "fit") or not hasattr(aligner, "get_params"):
        raise TypeError(
            f"aligner must be a scikit-learn style estimator with fit and get_params (e.g. Procrustes()), got "
            f"{type(aligner).__name__}. Pass an aligner instance, not a class or a fitted map's output."
        )
    return clone(aligner)


def _check_test(test: Any) -> tuple[Any, Any] | None:
    if test is None:
        return None
    if not isinstance(test, (tuple, list)) or len(test) != 2:
        raise TypeError(
            f"test must be a pair (X_test, Y_test) of held-out rows, or None for out-of-bag scoring, got "
            f"{type(test).__name__}. Pass test=(X_test, Y_test)."
        )
    check_pair(test[0], test[1], ("X_test", "Y_test"), min_rows=_MIN_HELD_OUT, purpose="a held-out score")
    return test[0], test[1]


def _draws(n_pairs: int, n: int, oob: bool, rng: np.random.Generator) -> list[np.ndarray]:
    draws = []
    for _ in range(n):
        while True:
            idx = rng.integers(0, n_pairs, size=n_pairs)
            if not oob or n_pairs - np.unique(idx).size >= _MIN_HELD_OUT:
                break
        draws.append(idx)
    return draws


def _replicate(template: Any, X: Any, Y: Any, idx: np.ndarray, score: Metric, test: tuple[Any, Any] | None) -> float:
    from sklearn.base import clone

    fitted = clone(template).fit(_take(X, idx), _take(Y, idx))
    if test is None:
        out = np.setdiff1d(np.arange(X.shape[0]), idx)
        return float(score(fitted, _take(X, out), _take(Y, out)))
    return float(score(fitted, *test))


def bca_interval(
    replicates: np.ndarray, estimate: float, jackknife: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """The BCa interval from bootstrap replicates, the point estimate and leave-one-out (jackknife) values.

    Bias correction ``z0 = Phi^-1(share of replicates below the estimate, ties counted half)``, acceleration
    ``a = sum(U^3) / (6 sum(U^2)^1.5)`` with ``U_i = mean(jackknife) - jackknife_i``; the interval is the
    replicates' quantiles at ``Phi(z0 + (z0 + z) / (1 - a (z0 + z)))`` for ``z = Phi^-1(alpha/2)`` and
    ``Phi^-1(1 - alpha/2)`` (Efron and Tibshirani, 1993, 14.3; scipy's ``stats.bootstrap(method="BCa")``).

    Returns
    -------
    low, high, acceleration : float

    Examples
    --------
    Symmetric replicates centred on the estimate and a symmetric jackknife give the percentile interval:

    >>> import numpy as np
    >>> reps = np.linspace(-1.0, 1.0, 201)
    >>> low, high, a = bca_interval(reps, 0.0, np.linspace(-0.1, 0.1, 11), 0.9)
    >>> round(low, 6), round(high, 6), round(a, 6)
    (-0.9, 0.9, 0.0)
    """
    from scipy.special import ndtr, ndtri

    reps = np.asarray(replicates, dtype=np.float64)
    jack = np.asarray(jackknife, dtype=np.float64)
    share = (np.count_nonzero(reps < estimate) + np.count_nonzero(reps <= estimate)) / (2 * reps.size)
    z0 = float(ndtri(share))
    u = jack.mean() - jack
    denominator = 6.0 * float(np.sum(u**2)) ** 1.5
    a = float(np.sum(u**3)) / denominator if denominator > 0 else 0.0
    alpha = (1.0 - confidence) / 2
    levels = []
    for z in (float(ndtri(alpha)), float(ndtri(1 - alpha))):
        levels.append(float(ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))))
    if not all(math.isfinite(q) for q in levels):
        raise ValueError(
            f"The BCa interval is undefined here: every replicate lies on one side of the estimate {estimate!r} "
            "(a degenerate bootstrap distribution). Use the percentile interval (bca=False)."
        )
    low, high = np.quantile(reps, levels)
    return float(low), float(high), a


def _jackknife(template: Any, X: Any, Y: Any, score: Metric, test: tuple[Any, Any]) -> np.ndarray:
    n_pairs = X.shape[0]
    values = []
    for i in progress_bar(range(n_pairs), desc="jackknife", total=n_pairs, unit="fit"):
        keep = np.delete(np.arange(n_pairs), i)
        values.append(_replicate(template, X, Y, keep, score, test))
    return np.asarray(values)


def bootstrap(
    aligner: Any,
    X: Any,
    Y: Any,
    metric: str | Metric,
    *,
    n: int = 200,
    test: tuple[Any, Any] | None = None,
    confidence: float = 0.95,
    random_state: int | None = None,
    bca: bool = False,
    n_jobs: int | None = None,
) -> BootstrapResult:
    """Bootstrap interval of a held-out score: resample the pairs, refit a clone of the aligner, score.

    Parameters
    ----------
    aligner : estimator
        An aligner (fitted or not); each replicate fits a fresh :func:`sklearn.base.clone` of it. Aligners
        with a ``random_state`` parameter give identical results for one ``random_state`` here only when
        their own is set.
    X, Y : array of shape (n_pairs, d_x) and (n_pairs, d_y)
        The training pairs (row ``i`` of each is the same item), numpy or torch.
    metric : str or callable
        A name (see the module docstring) or ``metric(aligner, X_test, Y_test) -> float``.
    n : int, default 200
        Bootstrap replicates (refits).
    test : (X_test, Y_test), optional
        Held-out pairs every replicate is scored on; ``None`` scores each on its out-of-bag pairs.
    confidence : float, default 0.95
        Coverage of the interval, in (0, 1).
    random_state : int, optional
        Seeds the resampling.
    bca : bool, default False
        Also compute the BCa interval (``n_pairs`` more fits for the jackknife; needs ``test``).
    n_jobs : int, optional
        Parallel refits with joblib threads (``None`` or 1: one at a time, with a progress bar). Threads,
        not processes: no copy of the data, and the large products and SVDs of a fit release the GIL;
        small fits are bound by Python and gain little. The result does not depend on ``n_jobs``.

    Returns
    -------
    BootstrapResult

    Examples
    --------
    >>> import numpy as np
    >>> from latentalign.align import Procrustes
    >>> rng = np.random.default_rng(0)
    >>> Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    >>> X = rng.standard_normal((80, 4))
    >>> Y = X @ Q + 0.05 * rng.standard_normal((80, 4))
    >>> res = bootstrap(Procrustes(), X[:60], Y[:60], "mrr", n=50, test=(X[60:], Y[60:]), random_state=0)
    >>> res.n, res.low <= res.estimate <= res.high, res.describe()
    (50, True, '95 % bootstrap interval over pairs, n=50')
    """
    template = _check_aligner(aligner)
    name, score = resolve_metric(metric)
    n = check_number(n, "n", integer=True, low=2)
    confidence = check_number(confidence, "confidence", low=0.0, low_inclusive=False, high=1.0)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}. Pass e.g. 0.95.")
    n_jobs = check_number(n_jobs, "n_jobs", integer=True, allow_none=True)
    held_out = _check_test(test)
    min_rows = 2 * _MIN_HELD_OUT if held_out is None else 2
    check_pair(X, Y, min_rows=min_rows, purpose="a bootstrap over pairs")
    if bca and held_out is None:
        raise ValueError(
            "bca=True needs test=(X_test, Y_test): the jackknife that gives BCa's acceleration scores every "
            "leave-one-out fit on the same held-out rows. Pass test, or bca=False for out-of-bag scoring."
        )
    n_pairs = int(X.shape[0])
    rng = np.random.default_rng(random_state)
    draws = _draws(n_pairs, n, held_out is None, rng)
    logger.info("bootstrap of %s: %d refits on %d pairs", name, n, n_pairs)
    if n_jobs is None or n_jobs == 1:
        values = [
            _replicate(template, X, Y, idx, score, held_out)
            for idx in progress_bar(draws, desc=f"bootstrap {name}", total=n, unit="fit")
        ]
    else:
        from joblib import Parallel, delayed

        values = Parallel(n_jobs=n_jobs, prefer="threads")(
            delayed(_replicate)(template, X, Y, idx, score, held_out) for idx in draws
        )
    replicates = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(replicates)):
        bad = int(np.count_nonzero(~np.isfinite(replicates)))
        raise ValueError(
            f"metric {name!r} returned a non-finite value on {bad} of {n} replicates; the interval would be "
            "meaningless. Check the metric on small held-out sets, or pass more pairs."
        )
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    if held_out is None:
        estimate = float(replicates.mean())
    else:
        estimate = float(score(_check_aligner(aligner).fit(X, Y), *held_out))
    result = BootstrapResult(
        metric=name,
        estimate=estimate,
        low=float(low),
        high=float(high),
        confidence=float(confidence),
        replicates=replicates,
        n_pairs=n_pairs,
        held_out="out-of-bag" if held_out is None else "test",
        random_state=random_state,
    )
    if not low <= estimate <= high:
        warnings.warn(
            f"The estimate {estimate:.4g} of {name} lies outside its {100 * confidence:g} % percentile interval "
            f"[{low:.4g}, {high:.4g}]: the refits on resampled pairs (about 63 % of them distinct) score "
            f"{abs(result.bias):.4g} {'lower' if result.bias < 0 else 'higher'} on average than the map fitted on "
            f"all {n_pairs}. The interval describes maps fitted on fewer distinct pairs; use more pairs, a map with "
            "fewer parameters, or report the bias beside the interval.",
            UserWarning,
            stacklevel=2,
        )
    if bca and held_out is not None:
        jack = _jackknife(template, X, Y, score, held_out)
        result.bca_low, result.bca_high, result.acceleration = bca_interval(replicates, estimate, jack, confidence)
    return result
