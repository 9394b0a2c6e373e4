"""Alignability diagnostics: are two latent spaces likely to align (and stitch) well?

:func:`alignability_report` takes paired embeddings ``X`` (model A) and ``Y`` (model B), row ``i`` of each
embedding the same item, and measures, reusing the library's own functions:

* representation similarity on all rows: linear CKA (:func:`~latentalign.functional.similarity.linear_cka`)
  and mutual k-NN (:func:`~latentalign.functional.similarity.mutual_knn`, ``k = 10``), each beside a
  reference level (CKA of a shuffled pairing; mutual-kNN chance ``k / (n - 1)``);
* the Procrustes residual: :class:`~latentalign.align.Procrustes` (centred, isotropic scale) fitted on all
  rows, ``||s (X - m_x) R + m_y - Y||_F / ||Y - m_y||_F = sqrt(1 - R^2)``, in ``[0, 1]`` (0: ``Y`` is an
  exact rotated, scaled, shifted copy of ``X``; 1: the map does no better than the mean). Different widths
  are handled as the aligner does (the thin-SVD map, equal to zero-padding the smaller space). It is an
  in-sample number: with ``d`` close to ``n`` even unrelated data fit partly, hence the shuffled-pairing
  residual beside it;
* the anchor-budget curve: for each budget ``b`` the chosen aligners are fitted on ``b`` random anchor pairs
  and scored by held-out retrieval A -> B (:func:`~latentalign.functional.retrieval.retrieval_scores`,
  cosine, recall@1 and MRR) on a fixed, seeded evaluation split that no anchor comes from;
* the numerical rank and condition number of the centred anchors of ``X`` and of ``Y``
  (:func:`~latentalign.anchors.check_anchors`) at every budget.

The verdict is a heuristic, not a guarantee. It is decided by the held-out retrieval at the largest budget
(the most direct evidence that a map learned from anchors transfers to new items); the other measures
are listed as reasons that support or qualify it. The thresholds live in :class:`VerdictThresholds`:

=========================  =======  ===================================================================
threshold                  default  meaning
=========================  =======  ===================================================================
``likely_recall``          0.5      best recall@1 at the largest budget >= this: "likely to stitch well"
``min_lift``               5.0      best recall@1 < ``min_lift`` x chance (``1 / n_eval``): "unlikely"
                                    (anything in between: "partial")
``low_cka``                0.3      linear CKA below this is reported as low
``knn_chance_factor``      3.0      mutual kNN below this multiple of its chance level is "near chance"
``min_explained_lift``     2.0      the variance of ``Y`` the Procrustes map explains (``1 - residual^2``)
                                    under this multiple of a shuffled pairing's: no shared linear structure
``max_condition``          1e4      centred anchors with a larger condition number are ill-conditioned
``rising_delta``           0.05     recall@1 gaining more than this between the two largest budgets (and
                                    still under ``1 - rising_delta``): the curve is still rising, more
                                    anchors would likely help
=========================  =======  ===================================================================

They were chosen from planted examples and a few real pairs (see the tests), not calibrated on a benchmark;
a "partial" pair may stitch well enough for a coarse task (classification with few classes) and a
"likely" pair may still lose accuracy on a fine-grained one. Rows that repeat an earlier row of ``X`` or
of ``Y`` are kept out of the anchors and the evaluation split (duplicate anchors are degenerate and
duplicate keys make retrieval ambiguous); the similarity measures use all rows.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentalign._array import ArrayLike
from latentalign._optional import import_optional
from latentalign._validation import check_choice, check_number, check_pair
from latentalign.align.base import Aligner
from latentalign.align.procrustes import Procrustes
from latentalign.align.registry import list_aligners, make_aligner
from latentalign.anchors import check_anchors
from latentalign.functional.retrieval import retrieval_scores
from latentalign.functional.similarity import linear_cka, mutual_knn

__all__ = [
    "alignability_report",
    "AlignabilityReport",
    "VerdictThresholds",
    "DEFAULT_BUDGETS",
    "DEFAULT_ALIGNERS",
    "VERDICT_LIKELY",
    "VERDICT_PARTIAL",
    "VERDICT_UNLIKELY",
]

#: Anchor budgets of the default curve (those that do not fit in the data are skipped, with a note).
DEFAULT_BUDGETS: tuple[int, ...] = (10, 30, 100, 300, 1000)
#: Aligners fitted at every budget by default (names of :func:`latentalign.align.list_aligners`).
DEFAULT_ALIGNERS: tuple[str, ...] = ("procrustes", "relative")
#: The default evaluation split is ``min(MAX_EVAL_ROWS, n // 3)`` rows.
MAX_EVAL_ROWS = 1000
#: Smallest accepted evaluation split (chance recall@1 is then 0.1).
MIN_EVAL_ROWS = 10
#: Smallest accepted anchor budget (Procrustes with centring and relative projection need two).
MIN_BUDGET = 2

VERDICT_LIKELY = "likely to stitch well"
VERDICT_PARTIAL = "partial"
VERDICT_UNLIKELY = "unlikely to stitch well"

_REPORT_FILES = {"json": "report.json", "markdown": "report.md", "plot": "anchor_budget_curve.png"}


# --------------------------------------------------------------------------------------------------------
# Thresholds and the report
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerdictThresholds:
    """Heuristic thresholds of the verdict (see the module docstring for what each one means).

    Examples
    --------
    >>> VerdictThresholds(likely_recall=0.8).likely_recall
    0.8
    """

    likely_recall: float = 0.5
    min_lift: float = 5.0
    low_cka: float = 0.3
    knn_chance_factor: float = 3.0
    min_explained_lift: float = 2.0
    max_condition: float = 1e4
    rising_delta: float = 0.05

    def __post_init__(self) -> None:
        check_number(self.likely_recall, "likely_recall", low=0.0, high=1.0)
        check_number(self.min_lift, "min_lift", low=1.0)
        check_number(self.low_cka, "low_cka", low=0.0, high=1.0)
        check_number(self.knn_chance_factor, "knn_chance_factor", low=1.0)
        check_number(self.min_explained_lift, "min_explained_lift", low=1.0)
        check_number(self.max_condition, "max_condition", low=1.0)
        check_number(self.rising_delta, "rising_delta", low=0.0, high=1.0)


@dataclass
class AlignabilityReport:
    """What :func:`alignability_report` measured, and its verdict.

    Attributes
    ----------
    n, d_x, d_y : int
        Rows and widths of ``X`` and ``Y``.
    n_duplicates : int
        Rows repeating an earlier row of ``X`` or of ``Y`` (kept out of anchors and evaluation).
    linear_cka, linear_cka_shuffled : float
        Linear CKA of the true pairing and of one seeded shuffled pairing (all rows).
    mutual_knn, mutual_knn_chance : float
        Mutual k-NN on ``n_knn`` rows and its chance level ``knn_k / (n_knn - 1)``.
    knn_k, n_knn : int
    procrustes_residual, procrustes_residual_shuffled : float
        In-sample relative Procrustes residual ``sqrt(1 - R^2)`` of the true and of a shuffled pairing.
    n_eval : int
        Held-out rows the retrieval is scored on (queries = keys = ``n_eval``).
    chance_recall_at_1, chance_mrr : float
        ``1 / n_eval`` and ``H(n_eval) / n_eval`` (a uniformly random ranking).
    aligners : list of str
    budgets, budgets_skipped : list of int
        Budgets fitted, and those skipped because fewer rows were left for anchors.
    n_repeats, seed : int
    curve : list of dict
        One row per (aligner, budget): ``recall@1``, ``recall@1_std``, ``mrr``, ``mrr_std`` over repeats.
    anchor_checks : list of dict
        One row per budget (first repeat's anchors): ``rank_x``, ``max_rank_x = min(budget - 1, d_x)``
        (centring removes one direction), ``condition_x = s_1 / s_r`` over the ``r = max_rank_x`` largest
        singular values (``inf`` when rank-deficient, ``None`` in :meth:`to_dict`), and the same for ``y``.
    verdict : str
        ``"likely to stitch well"``, ``"partial"`` or ``"unlikely to stitch well"``.
    reasons : list of str
        Plain-words evidence for (and against) the verdict.
    notes : list of str
        Skipped budgets, duplicates, warnings raised while fitting.
    thresholds : dict
        The :class:`VerdictThresholds` used.
    """

    n: int
    d_x: int
    d_y: int
    n_duplicates: int
    linear_cka: float
    linear_cka_shuffled: float
    mutual_knn: float
    mutual_knn_chance: float
    knn_k: int
    n_knn: int
    procrustes_residual: float
    procrustes_residual_shuffled: float
    n_eval: int
    chance_recall_at_1: float
    chance_mrr: float
    aligners: list[str]
    budgets: list[int]
    budgets_skipped: list[int]
    n_repeats: int
    seed: int
    curve: list[dict[str, Any]]
    anchor_checks: list[dict[str, Any]]
    verdict: str
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)

    # -- queries --------------------------------------------------------------------------------------
    def curve_for(self, aligner: str) -> list[dict[str, Any]]:
        """The curve rows of one aligner, by increasing budget."""
        check_choice(aligner, "aligner", self.aligners)
        return [row for row in self.curve if row["aligner"] == aligner]

    def best(self) -> dict[str, Any]:
        """The curve row with the highest mean recall@1 at the largest fitted budget."""
        last = [row for row in self.curve if row["budget"] == self.budgets[-1]]
        return max(last, key=lambda row: row["recall@1"])

    # -- export ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (infinite condition numbers become ``None``).

        Examples
        --------
        >>> import json, numpy as np
        >>> X = np.random.default_rng(0).standard_normal((60, 4))
        >>> report = alignability_report(X, 2 * X, budgets=(10,), n_repeats=1)
        >>> json.loads(json.dumps(report.to_dict(), allow_nan=False)) == report.to_dict()
        True
        """
        return _json_safe(asdict(self))

    def to_markdown(self) -> str:
        """The verdict, its reasons, a table of the measures and a table of the anchor-budget curve."""
        lines = [
            "# Alignability report",
            "",
            f"**Verdict: {self.verdict}** (a heuristic; see latentalign.evaluation.diagnostics)",
            "",
            *[f"- {reason}" for reason in self.reasons],
            "",
            "## Measures",
            "",
            "| measure | value | reference |",
            "|---|---|---|",
            f"| rows (n) / duplicated rows | {self.n} / {self.n_duplicates} | |",
            f"| d_x / d_y | {self.d_x} / {self.d_y} | |",
            f"| linear CKA | {self.linear_cka:.4f} | shuffled pairing {self.linear_cka_shuffled:.4f} |",
            f"| mutual kNN (k={self.knn_k}, {self.n_knn} rows) | {self.mutual_knn:.4f} | "
            f"chance {self.mutual_knn_chance:.4f} |",
            f"| Procrustes residual (in-sample) | {self.procrustes_residual:.4f} | "
            f"shuffled pairing {self.procrustes_residual_shuffled:.4f} |",
        ]
        lines += [
            "",
            "## Centred anchors (first repeat): numerical rank / largest possible, condition number",
            "",
            "| anchors | rank X | condition X | rank Y | condition Y |",
            "|---|---|---|---|---|",
        ]
        for c in self.anchor_checks:
            lines.append(
                f"| {c['budget']} | {c['rank_x']} / {c['max_rank_x']} | {_fmt_cond(c['condition_x'])} | "
                f"{c['rank_y']} / {c['max_rank_y']} | {_fmt_cond(c['condition_y'])} |"
            )
        lines += [
            "",
            f"## Anchor-budget curve (held-out retrieval A -> B, {self.n_eval} queries, "
            f"{self.n_repeats} repeat(s); chance recall@1 {self.chance_recall_at_1:.4g}, "
            f"MRR {self.chance_mrr:.4g})",
            "",
            "| aligner | anchors | recall@1 | MRR |",
            "|---|---|---|---|",
        ]
        for row in self.curve:
            lines.append(
                f"| {row['aligner']} | {row['budget']} | {row['recall@1']:.4f} ± {row['recall@1_std']:.4f} | "
                f"{row['mrr']:.4f} ± {row['mrr_std']:.4f} |"
            )
        if self.notes:
            lines += ["", "## Notes", "", *[f"- {note}" for note in self.notes]]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """Write a PNG of recall@1 against the anchor budget (one line per aligner, chance dashed).

        Uses ``matplotlib.figure.Figure`` with the Agg canvas directly: no pyplot state, no backend switch.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        figure_mod = import_optional("matplotlib.figure", "plot", purpose="plotting the anchor-budget curve")
        agg = import_optional("matplotlib.backends.backend_agg", "plot", purpose="writing PNG files")
        fig = figure_mod.Figure(figsize=(6.0, 4.0), dpi=100)
        agg.FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for name in self.aligners:
            rows = self.curve_for(name)
            ax.errorbar(
                [r["budget"] for r in rows],
                [r["recall@1"] for r in rows],
                yerr=[r["recall@1_std"] for r in rows],
                marker="o",
                capsize=3,
                label=name,
            )
        ax.axhline(self.chance_recall_at_1, color="grey", linestyle="--", label="chance")
        ax.set_xscale("log")
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("anchor pairs")
        ax.set_ylabel(f"held-out recall@1 A->B ({self.n_eval} queries)")
        ax.set_title(f"Anchor-budget curve: {self.verdict}")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, format="png")
        return path

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write ``report.json``, ``report.md`` and ``anchor_budget_curve.png`` into ``directory``.

        Returns
        -------
        dict
            ``{"json": path, "markdown": path, "plot": path}``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {key: directory / name for key, name in _REPORT_FILES.items()}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        paths["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        self.plot(paths["plot"])
        return paths


def _fmt_cond(value: float | None) -> str:
    return "inf" if value is None or not math.isfinite(value) else f"{value:.3g}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# --------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------
def _check_inputs(X: Any, Y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    Xt, Yt, _ = check_pair(X, Y)
    return Xt, Yt


def _check_budgets(budgets: Any) -> list[int]:
    if isinstance(budgets, (int, np.integer)) and not isinstance(budgets, bool):
        budgets = (budgets,)
    try:
        values = list(budgets)
    except TypeError:
        raise TypeError(
            f"budgets must be a sequence of integers (anchor counts), got {type(budgets).__name__}; "
            f"e.g. budgets={DEFAULT_BUDGETS}."
        ) from None
    if not values:
        raise ValueError(f"budgets is empty; pass at least one anchor count, e.g. budgets={DEFAULT_BUDGETS}.")
    for b in values:
        check_number(b, "budgets entry", integer=True, low=MIN_BUDGET)
    return sorted({int(b) for b in values})


def _aligner_labels(aligners: Any) -> list[tuple[str, str | Aligner]]:
    if isinstance(aligners, (str, Aligner)):
        aligners = (aligners,)
    entries = list(aligners)
    if not entries:
        raise ValueError(f"aligners is empty; pass names from {list_aligners()} or Aligner instances.")
    labelled: list[tuple[str, str | Aligner]] = []
    seen: dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, str):
            check_choice(entry, "aligners entry", list_aligners())
            base = entry
        elif isinstance(entry, Aligner):
            base = type(entry).__name__
        else:
            raise TypeError(
                f"aligners entries must be registered names ({list_aligners()}) or Aligner instances, got "
                f"{type(entry).__name__}."
            )
        seen[base] = seen.get(base, 0) + 1
        labelled.append((base if seen[base] == 1 else f"{base}#{seen[base]}", entry))
    return labelled


def _check_options(n_repeats: Any, knn_k: Any, knn_rows: Any, seed: Any, n_eval: Any) -> None:
    check_number(n_repeats, "n_repeats", integer=True, low=1)
    check_number(knn_k, "knn_k", integer=True, low=1)
    check_number(knn_rows, "knn_rows", integer=True, low=2, allow_none=True)
    check_number(seed, "seed", integer=True, low=0)
    check_number(n_eval, "n_eval", integer=True, low=MIN_EVAL_ROWS, allow_none=True)


def _split_rows(n_usable: int, n_eval: int | None, min_budget: int) -> int:
    """The size of the evaluation split; raise when the rows cannot hold it plus the smallest budget."""
    if n_eval is None:
        n_eval = min(MAX_EVAL_ROWS, n_usable // 3)
        if n_eval < MIN_EVAL_ROWS:
            raise ValueError(
                f"X and Y have {n_usable} usable (distinct) paired rows, so the default held-out split "
                f"(n // 3) would have {n_eval} rows, but at least {MIN_EVAL_ROWS} are needed. Pass at least "
                f"{3 * MIN_EVAL_ROWS} paired rows, or set n_eval explicitly."
            )
    if n_usable - n_eval < min_budget:
        raise ValueError(
            f"X and Y have {n_usable} usable (distinct) paired rows, but the report needs at least "
            f"{n_eval + min_budget}: n_eval={n_eval} held-out rows plus the smallest budget of {min_budget} "
            "anchor pairs. Pass more paired rows, a smaller n_eval, or smaller budgets."
        )
    return n_eval


# --------------------------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------------------------
def _first_occurrences(A: torch.Tensor) -> torch.Tensor:
    """Boolean mask of rows that do not repeat an earlier row of ``A``."""
    _, inverse = torch.unique(A, dim=0, return_inverse=True)
    rows = torch.arange(A.shape[0], device=A.device)
    first = torch.full((int(inverse.max()) + 1,), A.shape[0], dtype=rows.dtype, device=A.device)
    first.scatter_reduce_(0, inverse, rows, reduce="amin")
    return first[inverse] == rows


def _usable_rows(Xt: torch.Tensor, Yt: torch.Tensor) -> np.ndarray:
    mask = _first_occurrences(Xt) & _first_occurrences(Yt.to(Xt.device))
    return np.flatnonzero(mask.cpu().numpy())


def _take(A: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    return A[torch.as_tensor(idx, dtype=torch.long, device=A.device)]


def _procrustes_residual(X: torch.Tensor, Y: torch.Tensor) -> float:
    """In-sample relative residual ``sqrt(1 - R^2)`` of ``Procrustes(scale=True)`` fitted on ``X``, ``Y``."""
    r2 = Procrustes(center=True, scale=True).fit(X, Y).score(X, Y)
    return math.sqrt(min(1.0, max(0.0, 1.0 - r2)))


def _similarity(
    Xt: torch.Tensor, Yt: torch.Tensor, knn_k: int, knn_rows: int | None, rng: np.random.Generator
) -> dict[str, Any]:
    n = Xt.shape[0]
    shuffled = _take(Yt, rng.permutation(n))
    m = n if knn_rows is None else min(n, knn_rows)
    if knn_k > m - 1:
        raise ValueError(
            f"knn_k={knn_k} needs at least {knn_k + 1} rows, but mutual kNN runs on {m}; pass knn_k <= {m - 1}"
            f"{' or a larger knn_rows' if m < n else ''}."
        )
    idx = np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)
    Xk, Yk = (_take(Xt, idx), _take(Yt, idx)) if m < n else (Xt, Yt)
    return {
        "linear_cka": linear_cka(Xt, Yt),
        "linear_cka_shuffled": linear_cka(Xt, shuffled),
        "mutual_knn": mutual_knn(Xk, Yk, k=knn_k),
        "mutual_knn_chance": knn_k / (m - 1),
        "knn_k": knn_k,
        "n_knn": m,
        "procrustes_residual": _procrustes_residual(Xt, Yt),
        "procrustes_residual_shuffled": _procrustes_residual(Xt, shuffled),
    }


def _anchor_check(Ax: torch.Tensor, Ay: torch.Tensor, budget: int) -> dict[str, Any]:
    """Rank (``check_anchors``' rule) and condition number of the centred anchors of both sides.

    Centring ``k`` rows removes one direction, so at most ``min(k - 1, d)`` singular values can be non-zero;
    the condition number is ``s_1 / s_r`` over those ``r`` values (``inf`` when the rank is below ``r``).
    """
    out: dict[str, Any] = {"budget": budget}
    for side, A in (("x", Ax), ("y", Ay)):
        centred = A - A.mean(0)
        report = check_anchors(centred, name=f"centred anchors of {side.upper()}", warn=False)
        top = min(budget - 1, A.shape[1])
        s = torch.linalg.svdvals(centred.to(torch.float64))
        out[f"rank_{side}"] = report.rank
        out[f"max_rank_{side}"] = top
        out[f"condition_{side}"] = float(s[0] / s[top - 1]) if report.rank >= top else math.inf
    return out


def _eval_pair(aligner: Aligner, X_eval: torch.Tensor, Y_eval: torch.Tensor) -> tuple[Any, Any]:
    """Queries (mapped ``X``) and keys (``Y``, or its image in the shared space) of the retrieval."""
    Q, K = aligner.transform(X_eval), aligner.transform_target(Y_eval)
    if Q.shape[1] != K.shape[1]:
        raise ValueError(
            f"{type(aligner).__name__}.transform returns {Q.shape[1]} features but its transform_target(Y) has "
            f"{K.shape[1]}; the report needs an aligner that maps X into Y's space or into a space shared with Y."
        )
    return Q, K


def _new_aligner(entry: str | Aligner) -> Aligner:
    return make_aligner(entry) if isinstance(entry, str) else entry.clone()


def _fit_and_score(
    entry: str | Aligner, Ax: torch.Tensor, Ay: torch.Tensor, X_eval: torch.Tensor, Y_eval: torch.Tensor
) -> tuple[float, float]:
    aligner = _new_aligner(entry).fit(Ax, Ay)
    Q, K = _eval_pair(aligner, X_eval, Y_eval)
    scores = retrieval_scores(Q, K, k=1)
    return scores["recall@1"], scores["mrr"]


def _curve(
    Xt: torch.Tensor,
    Yt: torch.Tensor,
    labelled: list[tuple[str, str | Aligner]],
    budgets: list[int],
    eval_idx: np.ndarray,
    pool: np.ndarray,
    n_repeats: int,
    rng: np.random.Generator,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    X_eval, Y_eval = _take(Xt, eval_idx), _take(Yt, eval_idx)
    scores: dict[tuple[str, int], list[tuple[float, float]]] = {}
    checks: list[dict[str, Any]] = []
    caught_by: dict[tuple[str, str], tuple[list[int], str]] = {}
    for repeat in range(n_repeats):
        order = rng.permutation(pool)  # nested anchor sets: budget 30 contains the 10 of budget 10
        for budget in budgets:
            Ax, Ay = _take(Xt, order[:budget]), _take(Yt, order[:budget])
            if repeat == 0:
                checks.append(_anchor_check(Ax, Ay, budget))
            for label, entry in labelled:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    result = _fit_and_score(entry, Ax, Ay, X_eval, Y_eval)
                scores.setdefault((label, budget), []).append(result)
                for w in caught:
                    seen = caught_by.setdefault((label, w.category.__name__), ([], str(w.message)))
                    if budget not in seen[0]:
                        seen[0].append(budget)
    rows = [_curve_row(label, budget, scores[(label, budget)]) for label, _ in labelled for budget in budgets]
    notes = [
        f"{label}: {category} at budget(s) {sorted(where)}, e.g.: {message}"
        for (label, category), (where, message) in caught_by.items()
    ]
    return rows, checks, notes


def _curve_row(label: str, budget: int, results: list[tuple[float, float]]) -> dict[str, Any]:
    values = np.asarray(results, dtype=np.float64)
    return {
        "aligner": label,
        "budget": budget,
        "recall@1": float(values[:, 0].mean()),
        "recall@1_std": float(values[:, 0].std()),
        "mrr": float(values[:, 1].mean()),
        "mrr_std": float(values[:, 1].std()),
        "n_repeats": int(values.shape[0]),
    }


# --------------------------------------------------------------------------------------------------------
# Verdict
# --------------------------------------------------------------------------------------------------------
def _retrieval_verdict(best: dict[str, Any], chance: float, t: VerdictThresholds) -> tuple[str, str]:
    r, b, name = best["recall@1"], best["budget"], best["aligner"]
    lift = r / chance
    where = (
        f"held-out recall@1 A->B with {b} anchors ({name}, the best aligner) is {r:.3f}, "
        f"{lift:.1f}x chance ({chance:.3g})"
    )
    if r >= t.likely_recall:
        return VERDICT_LIKELY, f"{where}, at least {t.likely_recall}: new items are matched well."
    if lift < t.min_lift:
        return VERDICT_UNLIKELY, f"{where}, under {t.min_lift}x chance: the learned map barely beats guessing."
    return VERDICT_PARTIAL, (
        f"{where}: clearly above chance but under {t.likely_recall}, so stitching will lose part of the signal."
    )


def _similarity_reasons(sim: dict[str, Any], t: VerdictThresholds) -> list[str]:
    reasons = []
    cka, cka_s = sim["linear_cka"], sim["linear_cka_shuffled"]
    level = "low" if cka < t.low_cka else "not low"
    reasons.append(f"linear CKA is {level}: {cka:.3f} (threshold {t.low_cka}; a shuffled pairing gives {cka_s:.3f}).")
    m, chance = sim["mutual_knn"], sim["mutual_knn_chance"]
    if m < t.knn_chance_factor * chance:
        reasons.append(
            f"mutual kNN (k={sim['knn_k']}) is near chance: {m:.4f} vs chance {chance:.4f} (under "
            f"{t.knn_chance_factor}x): neighbourhoods are not shared."
        )
    else:
        reasons.append(f"mutual kNN (k={sim['knn_k']}) is {m:.4f}, {m / chance:.1f}x its chance level {chance:.4f}.")
    res, res_s = sim["procrustes_residual"], sim["procrustes_residual_shuffled"]
    explained, explained_s = 1.0 - res**2, 1.0 - res_s**2
    if explained < t.min_explained_lift * explained_s:
        reasons.append(
            f"the Procrustes map explains {explained:.3f} of Y's variance (residual {res:.3f}), under "
            f"{t.min_explained_lift}x a shuffled pairing's {explained_s:.3f}: no shared linear structure beyond "
            "what fitting noise gives."
        )
    else:
        reasons.append(
            f"the Procrustes map explains {explained:.3f} of Y's variance (residual {res:.3f}); a shuffled "
            f"pairing gives {explained_s:.3f}."
        )
    return reasons


def _anchor_reasons(check: dict[str, Any], t: VerdictThresholds) -> list[str]:
    reasons = []
    for side in ("x", "y"):
        name = side.upper()
        rank, top, cond = check[f"rank_{side}"], check[f"max_rank_{side}"], check[f"condition_{side}"]
        if rank < top:
            reasons.append(
                f"the {check['budget']} centred anchors of {name} are rank-deficient (numerical rank {rank} of at "
                f"most {top}): a map fitted on them is not determined along the missing directions (harmless "
                "when those directions carry no signal, e.g. near-constant features)."
            )
        elif math.isfinite(cond) and cond > t.max_condition:
            reasons.append(
                f"the {check['budget']} centred anchors of {name} are ill-conditioned (condition number "
                f"{cond:.3g} > {t.max_condition:.3g}): fitted maps are sensitive to noise in the anchors."
            )
    return reasons


def _curve_reasons(
    report_curve: list[dict[str, Any]],
    best: dict[str, Any],
    budgets: list[int],
    skipped: list[int],
    dims: int,
    t: VerdictThresholds,
) -> list[str]:
    reasons = []
    if len(budgets) >= 2:
        prev = next(r for r in report_curve if r["aligner"] == best["aligner"] and r["budget"] == budgets[-2])
        gain = best["recall@1"] - prev["recall@1"]
        if gain > t.rising_delta and best["recall@1"] < 1.0 - t.rising_delta:
            more = f" (budgets {skipped} were skipped: not enough rows)" if skipped else ""
            reasons.append(
                f"the curve is still rising ({prev['recall@1']:.3f} at {budgets[-2]} -> {best['recall@1']:.3f} at "
                f"{budgets[-1]} anchors): more anchors would likely help{more}."
            )
    if budgets[-1] < dims:
        reasons.append(
            f"the largest budget ({budgets[-1]}) is below the larger dimension ({dims}): maps such as "
            "Procrustes are under-determined; more anchors would likely help."
        )
    return reasons


# --------------------------------------------------------------------------------------------------------
# Public function
# --------------------------------------------------------------------------------------------------------
def alignability_report(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    aligners: Sequence[str | Aligner] = DEFAULT_ALIGNERS,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    n_eval: int | None = None,
    n_repeats: int = 2,
    knn_k: int = 10,
    knn_rows: int | None = 5000,
    seed: int = 0,
    thresholds: VerdictThresholds | None = None,
) -> AlignabilityReport:
    """Diagnose whether two paired latent spaces are likely to align and stitch well.

    Parameters
    ----------
    X : array of shape (n, d_x)
        Model A's embeddings (numpy array or torch tensor), finite.
    Y : array of shape (n, d_y)
        Model B's embeddings of the same ``n`` items in the same order (same kind as ``X``).
    aligners : sequence of str or Aligner, default ("procrustes", "relative")
        Registered names (:func:`latentalign.align.list_aligners`) or unfitted aligner instances (cloned
        for every fit). Aligners with ``transform_target`` (relative projection) are scored in their shared
        space, the others by mapping ``X`` into ``Y``'s space.
    budgets : sequence of int, default (10, 30, 100, 300, 1000)
        Anchor-pair counts of the curve, each ``>= 2``. Budgets larger than the rows left after the
        evaluation split are skipped (listed in ``budgets_skipped`` and in the notes).
    n_eval : int, optional
        Size of the held-out evaluation split (``>= 10``); default ``min(1000, n_distinct // 3)``.
    n_repeats : int, default 2
        Random anchor draws per budget (nested across budgets); the curve reports mean and std.
    knn_k : int, default 10
        Neighbourhood size of mutual k-NN.
    knn_rows : int or None, default 5000
        Mutual k-NN (``O(n^2 d)``) runs on at most this many seeded random rows; ``None``: all rows. Its
        chance level ``knn_k / (n_knn - 1)`` is for the rows used.
    seed : int, default 0
        Seeds the evaluation split, the anchor draws, the shuffled pairing and the k-NN subsample.
    thresholds : VerdictThresholds, optional
        Heuristic thresholds of the verdict (defaults in the module docstring).

    Returns
    -------
    AlignabilityReport

    Raises
    ------
    ValueError
        Arrays that are not 2-D, not finite or not paired; too few rows for the evaluation split and the
        smallest budget; invalid options.

    Examples
    --------
    A rotated noisy copy of a space aligns; a space with its rows shuffled does not:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((300, 8))
    >>> Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    >>> alignability_report(X, X @ Q + 0.01 * rng.standard_normal((300, 8)), budgets=(10, 50)).verdict
    'likely to stitch well'
    >>> alignability_report(X, rng.permutation(X), budgets=(10, 50)).verdict
    'unlikely to stitch well'
    """
    Xt, Yt = _check_inputs(X, Y)
    budget_list = _check_budgets(budgets)
    labelled = _aligner_labels(aligners)
    _check_options(n_repeats, knn_k, knn_rows, seed, n_eval)
    if thresholds is None:
        thresholds = VerdictThresholds()
    elif not isinstance(thresholds, VerdictThresholds):
        raise TypeError(
            f"thresholds must be a VerdictThresholds, got {type(thresholds).__name__}; e.g. "
            "thresholds=VerdictThresholds(likely_recall=0.6)."
        )
    n = Xt.shape[0]
    usable = _usable_rows(Xt, Yt)
    n_eval = _split_rows(len(usable), n_eval, budget_list[0])
    rng = np.random.default_rng(int(seed))
    perm = rng.permutation(usable)
    eval_idx, pool = perm[:n_eval], perm[n_eval:]
    fitted = [b for b in budget_list if b <= len(pool)]
    skipped = [b for b in budget_list if b > len(pool)]
    sim = _similarity(Xt, Yt, int(knn_k), knn_rows, rng)
    curve, checks, warn_notes = _curve(Xt, Yt, labelled, fitted, eval_idx, pool, int(n_repeats), rng)
    notes = _notes(n, len(usable), n_eval, len(pool), skipped) + warn_notes
    chance = 1.0 / n_eval
    best = max((r for r in curve if r["budget"] == fitted[-1]), key=lambda r: r["recall@1"])
    verdict, lead = _retrieval_verdict(best, chance, thresholds)
    reasons = [
        lead,
        *_similarity_reasons(sim, thresholds),
        *_anchor_reasons(checks[-1], thresholds),
        *_curve_reasons(curve, best, fitted, skipped, max(Xt.shape[1], Yt.shape[1]), thresholds),
    ]
    return AlignabilityReport(
        n=n,
        d_x=int(Xt.shape[1]),
        d_y=int(Yt.shape[1]),
        n_duplicates=n - len(usable),
        **sim,
        n_eval=n_eval,
        chance_recall_at_1=chance,
        chance_mrr=_chance_mrr(n_eval),
        aligners=[label for label, _ in labelled],
        budgets=fitted,
        budgets_skipped=skipped,
        n_repeats=int(n_repeats),
        seed=int(seed),
        curve=curve,
        anchor_checks=checks,
        verdict=verdict,
        reasons=reasons,
        notes=notes,
        thresholds=asdict(thresholds),
    )


def _chance_mrr(n_keys: int) -> float:
    """Expected reciprocal rank of the one gold key under a uniformly random ranking: ``H(n) / n``."""
    return float(np.sum(1.0 / np.arange(1, n_keys + 1)) / n_keys)


def _notes(n: int, n_usable: int, n_eval: int, n_pool: int, skipped: list[int]) -> list[str]:
    notes = []
    if n_usable < n:
        notes.append(
            f"{n - n_usable} rows repeat an earlier row of X or of Y; they are kept out of the anchors and the "
            "evaluation split (the similarity measures use all rows)."
        )
    if skipped:
        notes.append(
            f"budgets {skipped} were skipped: after the {n_eval} held-out rows only {n_pool} rows are left for "
            "anchors. Pass more paired rows (or a smaller n_eval) to measure them."
        )
    return notes
