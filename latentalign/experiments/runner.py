"""Load experiment configs, run them, and write result pages and the summary table."""

from __future__ import annotations

import importlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentalign.reports import make_record, rows_to_markdown, write_record

__all__ = [
    "Check",
    "ExperimentResult",
    "find_config",
    "list_experiments",
    "load_config",
    "run_experiment",
    "run_all",
    "write_summary",
    "EXPERIMENTS_DIR",
]

#: Where configs live in a source checkout (``<repo>/experiments``); ``$LATENTALIGN_EXPERIMENTS`` overrides.
EXPERIMENTS_DIR = Path(os.environ.get("LATENTALIGN_EXPERIMENTS", Path(__file__).resolve().parents[2] / "experiments"))


@dataclass
class Check:
    """One claim of the paper checked on our numbers."""

    claim: str
    paper: str
    ours: str
    passed: bool


@dataclass
class ExperimentResult:
    """What a runner returns: a table, the checks, notes, and the plots it wrote."""

    rows: list[dict[str, Any]]
    checks: list[Check]
    notes: list[str] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def _toml():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        from latentalign._optional import import_optional

        return import_optional("tomli", "dev", purpose="reading experiment configs on Python 3.10")
    return tomllib


def list_experiments(directory: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the configs in ``directory`` (default :data:`EXPERIMENTS_DIR`)."""
    return sorted(p.stem for p in Path(directory or EXPERIMENTS_DIR).glob("*.toml"))


def find_config(name_or_path: str | os.PathLike[str]) -> Path:
    """Resolve ``"name"`` or ``"experiments/name.toml"`` to a config file; unknown names list the known ones."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = EXPERIMENTS_DIR / f"{path.stem}.toml"
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(
        f"No experiment config {str(name_or_path)!r}; known experiments in {EXPERIMENTS_DIR}: "
        f"{list_experiments()}."
    )


def load_config(name_or_path: str | os.PathLike[str], *, reduced: bool = False) -> dict[str, Any]:
    """Read a config; with ``reduced`` the ``[reduced]`` table overrides keys of ``[setup]``."""
    path = find_config(name_or_path)
    with open(path, "rb") as handle:
        try:
            config = _toml().load(handle)
        except Exception as exc:  # tomllib.TOMLDecodeError: report the file
            raise ValueError(f"{str(path)!r} is not valid TOML ({exc}).") from None
    for key in ("runner", "title", "paper", "setup"):
        if key not in config:
            raise ValueError(f"{str(path)!r} lacks the required key {key!r}.")
    config["name"] = path.stem
    config["setup"] = {**config["setup"], **(config.get("reduced", {}) if reduced else {})}
    config["reduced_run"] = reduced
    return config


def _runner(config: dict[str, Any]):
    module_name, _, func = config["runner"].partition(":")
    return getattr(importlib.import_module(module_name), func)


def _page(config: dict[str, Any], result: ExperimentResult, elapsed: float, plots: list[Path]) -> str:
    paper = config["paper"]
    lines = [
        f"# {config['title']}",
        "",
        f"Paper: {paper.get('citation', '')}. {paper.get('table', '')}",
        "",
        f"Config: `experiments/{config['name']}.toml`"
        + (" (reduced run)" if config.get("reduced_run") else "")
        + f"; run time {elapsed:.0f} s.",
        "",
    ]
    if paper.get("differences"):
        lines += ["Differences from the paper's setup: " + paper["differences"], ""]
    if paper.get("verified"):
        lines += ["Published figures checked: " + paper["verified"], ""]
    lines += ["## Checks", "", rows_to_markdown([
        {"claim": c.claim, "paper": c.paper, "ours": c.ours, "verdict": "pass" if c.passed else "FAIL"}
        for c in result.checks
    ]), "", "## Results", "", rows_to_markdown(result.rows), ""]
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def run_experiment(
    name_or_path: str | os.PathLike[str],
    *,
    reduced: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
) -> tuple[ExperimentResult, Path]:
    """Run one experiment; write ``<out_dir>/<name>.md`` and ``.json``; return the result and the page."""
    config = load_config(name_or_path, reduced=reduced)
    out = Path(out_dir) if out_dir is not None else EXPERIMENTS_DIR / "results"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = _runner(config)(config, out_dir=out)
    elapsed = time.perf_counter() - start
    page = out / f"{config['name']}.md"
    page.write_text(_page(config, result, elapsed, result.plots))
    record = make_record(
        f"experiment:{config['name']}", result.rows, settings=config["setup"], seed=config["setup"].get("seed"),
        extra={"checks": [c.__dict__ for c in result.checks], "passed": result.passed,
               "elapsed_s": round(elapsed, 1), "paper": config["paper"], "reduced": reduced},
    )
    write_record(record, out, config["name"])
    return result, page


def run_all(
    *, reduced: bool = False, out_dir: str | os.PathLike[str] | None = None, names: list[str] | None = None
) -> Path:
    """Run every experiment, then write ``SUMMARY.md`` (see :func:`write_summary`); return its path."""
    out = Path(out_dir) if out_dir is not None else EXPERIMENTS_DIR / "results"
    names = names or list_experiments()
    for name in names:
        run_experiment(name, reduced=reduced, out_dir=out)
    return write_summary(out, names=names)


def write_summary(out_dir: str | os.PathLike[str] | None = None, *, names: list[str] | None = None) -> Path:
    """Write ``SUMMARY.md`` from the experiments' JSON records in ``out_dir``, without re-running anything.

    One row per check: experiment (linked to its page), paper, claim, the paper's number, ours, verdict,
    plus whether the record is from a full or a reduced run and its run time.

    Raises
    ------
    FileNotFoundError
        If an experiment in ``names`` has no record in ``out_dir`` (run it first).
    """
    out = Path(out_dir) if out_dir is not None else EXPERIMENTS_DIR / "results"
    rows, passed, total = [], 0, 0
    for name in names or list_experiments():
        path = out / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"No result record for experiment {name!r} at {path}. Run `latentalign run {name}` first "
                f"(or pass names= to summarise only the experiments that were run)."
            )
        record = json.loads(path.read_text())
        run = f"{'reduced' if record.get('reduced') else 'full'}, {record.get('elapsed_s', float('nan')):.0f} s"
        for check in record["checks"]:
            total += 1
            passed += bool(check["passed"])
            rows.append({"experiment": f"[{name}]({name}.md)", "paper": record["paper"].get("citation", ""),
                         "claim": check["claim"], "paper number": check["paper"], "ours": check["ours"],
                         "verdict": "pass" if check["passed"] else "FAIL", "run": run})
    summary = out / "SUMMARY.md"
    summary.write_text(
        "# Reproductions: summary\n\n"
        f"{passed} of {total} checks pass. Each experiment's page has the setup, the differences from the "
        "paper's and the full results; regenerate with `latentalign run all` (re-runs everything) or "
        "`latentalign run all --summary-only` (rebuilds this table from the JSON records).\n\n"
        + rows_to_markdown(rows) + "\n"
    )
    return summary
