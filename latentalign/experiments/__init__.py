"""Reproductions of published alignment results: configs in ``configs/*.toml`` (package data), runners here.

A config names its runner (``runner = "latentalign.experiments.<module>:run"``), the paper it reproduces
(``[paper]``: citation, table, the published numbers) and its settings (``[setup]``, with a ``[reduced]``
override used by the slow tests). A runner composes library steps (datasets, encoders, aligners,
evaluation) and returns an :class:`ExperimentResult`: a results table, the checks of the paper's claims
(paper number, ours, pass/fail), and optional plots. :func:`run_experiment` writes
``<results>/<name>.md``, ``<name>.json`` and the plots (``<results>`` defaults to ``runs/experiments`` in the
current directory); :func:`run_all` adds ``SUMMARY.md``. :mod:`latentalign.experiments.demo` is the
``latentalign demo`` run, and :mod:`latentalign.experiments.common` holds what they share.
"""

from __future__ import annotations

from latentalign.experiments.runner import (
    Check,
    ExperimentResult,
    find_config,
    list_experiments,
    load_config,
    run_all,
    run_experiment,
    write_summary,
)

__all__ = [
    "Check",
    "ExperimentResult",
    "find_config",
    "list_experiments",
    "load_config",
    "run_all",
    "run_experiment",
    "write_summary",
]
