"""Evaluation: retrieval (recall@k, MRR, P@k, NN vs CSLS), representation similarity (CKA, mutual kNN, ...).

Each measure exists as a pure function in :mod:`latentalign.functional` and as a stateful evaluator here
(``update`` / ``compute`` / ``reset``). The stitching scores live in :mod:`latentalign.evaluation.stitching`;
:func:`alignability_report` says whether two spaces are likely to align, with an anchor-budget curve.
:func:`bootstrap` puts an interval on a held-out score by refitting on resampled pairs;
:func:`match_confidence` and :func:`reliability_curve` say how far each single match can be trusted;
:func:`calibrate_confidence` turns a confidence into a probability of being right.
:func:`similarity_matrix` scores every layer of one model against every layer of another.
"""

from __future__ import annotations

from latentalign.evaluation.bootstrap import BootstrapResult, bootstrap
from latentalign.evaluation.confidence import (
    ConfidenceCalibrator,
    ReliabilityCurve,
    calibrate_confidence,
    match_confidence,
    reliability_curve,
)
from latentalign.evaluation.diagnostics import AlignabilityReport, alignability_report
from latentalign.evaluation.layer_similarity import LayerSimilarity, similarity_matrix
from latentalign.evaluation.retrieval import RetrievalEvaluator
from latentalign.evaluation.similarity import SimilarityEvaluator
from latentalign.functional.retrieval import retrieval_scores
from latentalign.functional.similarity import similarity_scores

__all__ = [
    "AlignabilityReport",
    "BootstrapResult",
    "ConfidenceCalibrator",
    "LayerSimilarity",
    "ReliabilityCurve",
    "RetrievalEvaluator",
    "SimilarityEvaluator",
    "alignability_report",
    "bootstrap",
    "calibrate_confidence",
    "match_confidence",
    "reliability_curve",
    "retrieval_scores",
    "similarity_matrix",
    "similarity_scores",
]
