"""Load experiment configs, run them, and write result pages and the summary table.

Configs ship inside the package (``latentalign/experiments/configs/*.toml``, read with
:mod:`importlib.resources`, so an installed wheel has them); ``$LATENTALIGN_EXPERIMENTS`` names another
directory of configs instead. Result pages go to the directory the caller names, by default
``runs/experiments`` under the current directory, like every other output of the command line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # Python 3.10
    from importlib.abc import Traversable

from latentalign._progress import progress_bar
from latentalign.reports import make_record, rows_to_markdown, write_record

__all__ = [
    "Check",
    "verdict",
    "ExperimentResult",
    "find_config",
    "list_experiments",
    "load_config",
    "read_config_chain",
    "run_experiment",
    "run_all",
    "write_summary",
    "failed_checks",
    "config_dir",
    "CONFIG_ENV",
    "DEFAULT_RESULTS_DIR",
    "RUNNER_PACKAGE",
]

#: Environment variable naming a directory of ``*.toml`` configs to use instead of the packaged ones.
CONFIG_ENV = "LATENTALIGN_EXPERIMENTS"
#: Where results go when no directory is given: relative to the current directory, beside ``runs/demo``.
DEFAULT_RESULTS_DIR = Path("runs") / "experiments"
#: The package every runner must come from: a config is data, so it may not name arbitrary code to run.
RUNNER_PACKAGE = "latentalign.experiments"
_RUNNER_PATTERN = re.compile(r"latentalign\.experiments(\.[A-Za-z][A-Za-z0-9_]*)+:[A-Za-z][A-Za-z0-9_]*")
logger = logging.getLogger(__name__)
_RUNNER_RULE = (
    f"a runner must be 'module:function' with the module inside {RUNNER_PACKAGE} (for example "
    f"'{RUNNER_PACKAGE}.mutual_knn:run') and the function defined in that module"
)


@dataclass
class Check:
    """One claim of the paper checked on our numbers; ``passed=None``: not evaluable (the data cannot decide)."""

    claim: str
    paper: str
    ours: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        """``"pass"``, ``"FAIL"`` or ``"not evaluable"``."""
        return verdict(self.passed)


def verdict(passed: bool | None) -> str:
    """The page's word for a check's outcome: ``"pass"``, ``"FAIL"``, or ``"not evaluable"`` for None.

    Examples
    --------
    >>> [verdict(True), verdict(False), verdict(None)]
    ['pass', 'FAIL', 'not evaluable']
    """
    return "not evaluable" if passed is None else "pass" if passed else "FAIL"


@dataclass
class ExperimentResult:
    """What a runner returns: a table, the checks, notes, the plots it wrote, and details for the record.

    ``details`` (JSON-serialisable) is stored in the run record beside the table, e.g. a diagnostic's raw
    values that the page only summarises in a note.
    """

    rows: list[dict[str, Any]]
    checks: list[Check]
    notes: list[str] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)  # no check FAILed


def _toml():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: tomli, a dependency there (pyproject.toml)
        import tomli

        return tomli
    return tomllib


def config_dir() -> Traversable:
    """The directory of experiment configs: ``$LATENTALIGN_EXPERIMENTS`` if set, else the packaged one.

    Returns
    -------
    importlib.resources.abc.Traversable
        A :class:`pathlib.Path` for an installed or checked-out package (or the override); a traversable
        resource directory when the package is imported from an archive.

    Examples
    --------
    >>> (config_dir() / "word_translation_csls.toml").is_file()
    True
    """
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser()
    return importlib.resources.files("latentalign.experiments").joinpath("configs")


def list_experiments(directory: str | os.PathLike[str] | Traversable | None = None) -> list[str]:
    """Names of the experiment configs (``*.toml``) in ``directory`` (default :func:`config_dir`).

    Examples
    --------
    >>> "word_translation_csls" in list_experiments()
    True
    """
    folder = config_dir() if directory is None else directory
    folder = Path(folder) if isinstance(folder, (str, os.PathLike)) else folder
    if not folder.is_dir():
        raise FileNotFoundError(
            f"The experiment config directory {str(folder)!r} does not exist; unset ${CONFIG_ENV} or point it "
            "at a directory of *.toml configs."
        )
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml") and p.is_file())


def find_config(name_or_path: str | os.PathLike[str]) -> Traversable:
    """Resolve an experiment name (``"mutual_knn"``) or a config file path to the config file.

    A path to an existing file is used as it is; otherwise the name (a path's stem) is looked up in
    :func:`config_dir`. Unknown names raise ``FileNotFoundError`` listing the known ones.

    Examples
    --------
    >>> find_config("mutual_knn").name
    'mutual_knn.toml'
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = config_dir() / f"{path.stem}.toml"
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(
        f"No experiment config {str(name_or_path)!r}; known experiments in {config_dir()}: "
        f"{list_experiments()}. Pass one of these names or the path of a .toml config."
    )


#: The top-level keys of a config and their types ("reduced" is optional).
_CONFIG_SCHEMA: dict[str, type] = {"runner": str, "title": str, "paper": dict, "setup": dict, "reduced": dict}


def _read_toml(path: Traversable) -> dict[str, Any]:
    try:
        return dict(_toml().loads(path.read_bytes().decode("utf-8")))
    except Exception as exc:  # tomllib.TOMLDecodeError: report the file
        raise ValueError(f"{str(path)!r} is not valid TOML ({exc}).") from None


def _base_config(path: Traversable, name: Any) -> Traversable:
    """The config that ``path`` extends: a sibling file ``<name>.toml``, else :func:`find_config`'s."""
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"{str(path)!r}: 'extends' must name another experiment config (e.g. \"few_and_no_pairs\"), got "
            f"{name!r:.60}."
        )
    if isinstance(path, Path) and (path.parent / f"{name}.toml").is_file():
        return path.parent / f"{name}.toml"
    try:
        return find_config(name)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{str(path)!r}: 'extends' names no config next to it. {exc}") from None


def read_config_chain(path: Traversable) -> tuple[dict[str, Any], list[Traversable]]:
    """A config file's content with what it ``extends`` merged in, and the files read (the config first).

    ``extends = "other"`` takes every key of the config ``other`` (resolved next to the file, else as
    :func:`find_config` does); the file's own keys replace them, table by table: a table such as
    ``[setup]`` keeps the base's keys it does not set. Chains are followed; a cycle is an error.

    Examples
    --------
    >>> config, files = read_config_chain(find_config("mutual_knn"))
    >>> [f.name for f in files], "extends" in config
    (['mutual_knn.toml'], False)
    """
    files: list[Traversable] = []
    layers: list[dict[str, Any]] = []
    current = path
    while True:
        if any(str(current) == str(seen) for seen in files):
            chain = " -> ".join(f.name for f in [*files, current])
            raise ValueError(
                f"{str(path)!r}: its 'extends' chain returns to a file it has read ({chain}); break the cycle."
            )
        files.append(current)
        layer = _read_toml(current)
        base = layer.pop("extends", None)
        layers.append(layer)
        if base is None:
            break
        current = _base_config(current, base)
    merged: dict[str, Any] = {}
    for layer in reversed(layers):  # the base first, each file over it
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged, files


def load_config(name_or_path: str | os.PathLike[str], *, reduced: bool = False) -> dict[str, Any]:
    """Read a config; with ``reduced`` the ``[reduced]`` table overrides keys of ``[setup]``.

    A config may ``extends = "other"`` another config and set only what differs
    (:func:`read_config_chain`); ``config["extends"]`` then lists the files it was built from.

    Examples
    --------
    >>> config = load_config("word_translation_csls", reduced=True)
    >>> config["name"], config["setup"]["n_test"], config["reduced_run"]
    ('word_translation_csls', 500, True)
    """
    path = find_config(name_or_path)
    config, files = read_config_chain(path)
    if len(files) > 1:
        config["extends"] = [str(f) for f in files[1:]]
    for key, kind in _CONFIG_SCHEMA.items():
        if key not in config and key != "reduced":
            raise ValueError(f"{str(path)!r} lacks the required key {key!r}.")
        if key in config and not isinstance(config[key], kind):
            what = "a table ([name] section)" if kind is dict else "a string"
            raise ValueError(
                f"{str(path)!r}: {key!r} must be {what}, got {type(config[key]).__name__} {config[key]!r:.60}."
            )
    config["name"] = path.name[: -len(".toml")] if path.name.endswith(".toml") else Path(path.name).stem
    packaged = os.environ.get(CONFIG_ENV) is None and not Path(name_or_path).is_file()
    config["config_file"] = f"latentalign/experiments/configs/{path.name}" if packaged else str(path)
    config["setup"] = {**config["setup"], **(config.get("reduced", {}) if reduced else {})}
    config["reduced_run"] = reduced
    _check_runner_name(config)
    return config


def _runner_error(config: dict[str, Any], problem: str) -> ValueError:
    return ValueError(
        f"{config['config_file']!r} names the runner {config['runner']!r}, {problem}; {_RUNNER_RULE}. "
        "Move the runner into that package or fix the config's runner key."
    )


def _check_runner_name(config: dict[str, Any]) -> None:
    """Reject, before anything is imported, a runner string outside :data:`RUNNER_PACKAGE`."""
    runner = config["runner"]
    if not isinstance(runner, str) or _RUNNER_PATTERN.fullmatch(runner) is None:
        raise _runner_error(config, "which is not allowed")


def _runner(config: dict[str, Any]):
    """Import the config's runner; only functions defined in a module of :data:`RUNNER_PACKAGE` qualify."""
    _check_runner_name(config)
    module_name, _, func_name = config["runner"].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            raise _runner_error(config, f"but there is no module {module_name!r}") from None
        raise
    func = getattr(module, func_name, None)
    if not callable(func) or getattr(func, "__module__", None) != module_name:
        raise _runner_error(config, f"but {module_name!r} defines no function {func_name!r}")
    return func


def _page(config: dict[str, Any], result: ExperimentResult, elapsed: float, plots: list[Path]) -> str:
    paper = config["paper"]
    lines = [
        f"# {config['title']}",
        "",
        f"Paper: {paper.get('citation', '')}. {paper.get('table', '')}",
        "",
        f"Config: `{config.get('config_file', config['name'])}`"
        + ("".join(f", extending `{Path(f).name}`" for f in config.get("extends", [])))
        + (" (reduced run)" if config.get("reduced_run") else "")
        + f"; run time {elapsed:.0f} s.",
        "",
    ]
    if paper.get("differences"):
        lines += ["Differences from the paper's setup: " + paper["differences"], ""]
    if paper.get("verified"):
        lines += ["Published figures checked: " + paper["verified"], ""]
    lines += [
        "## Checks",
        "",
        rows_to_markdown(
            [{"claim": c.claim, "paper": c.paper, "ours": c.ours, "verdict": c.verdict} for c in result.checks]
        ),
        "",
        "## Results",
        "",
        rows_to_markdown(result.rows),
        "",
    ]
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
    """Run one experiment; write ``<out_dir>/<name>.md`` and ``.json``; return the result and the page.

    ``out_dir`` defaults to :data:`DEFAULT_RESULTS_DIR` (``runs/experiments`` under the current directory).
    """
    config = load_config(name_or_path, reduced=reduced)
    out = Path(out_dir) if out_dir is not None else DEFAULT_RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runner = _runner(config)
    logger.info(
        "running experiment %s%s (loading data and models first; this can take minutes)",
        config["name"],
        " with the reduced settings" if reduced else "",
    )
    result = runner(config, out_dir=out)
    elapsed = time.perf_counter() - start
    logger.info("experiment %s finished in %.0f s", config["name"], elapsed)
    page = out / f"{config['name']}.md"
    page.write_text(_page(config, result, elapsed, result.plots))
    record = make_record(
        f"experiment:{config['name']}",
        result.rows,
        settings=config["setup"],
        seed=config["setup"].get("seed"),
        inputs={
            "config": {
                "path": config["config_file"],
                "sha256": hashlib.sha256(find_config(name_or_path).read_bytes()).hexdigest(),
            },
            **{
                f"extends_{i}": {"path": Path(str(f)).name, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
                for i, f in enumerate(read_config_chain(find_config(name_or_path))[1][1:], start=1)
            },
        },
        started=start,
        outputs=[page, *result.plots],
        extra={
            "checks": [c.__dict__ for c in result.checks],
            "passed": result.passed,
            "elapsed_s": round(elapsed, 1),
            "paper": config["paper"],
            "reduced": reduced,
            **({"details": result.details} if result.details else {}),
        },
    )
    write_record(record, out, config["name"], unique=False)  # the page's data: replaced with the page
    return result, page


def run_all(
    *, reduced: bool = False, out_dir: str | os.PathLike[str] | None = None, names: list[str] | None = None
) -> Path:
    """Run every experiment, then write ``SUMMARY.md`` (see :func:`write_summary`); return its path."""
    out = Path(out_dir) if out_dir is not None else DEFAULT_RESULTS_DIR
    names = names or list_experiments()
    for name in progress_bar(names, desc="experiments", unit="experiment"):
        run_experiment(name, reduced=reduced, out_dir=out)
    return write_summary(out, names=names)


def failed_checks(
    out_dir: str | os.PathLike[str] | None = None, *, names: list[str] | None = None
) -> list[dict[str, Any]]:
    """The checks that FAILed in the experiments' JSON records in ``out_dir``, each with its experiment.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> _ = (out / "tiny.json").write_text(json.dumps({"checks": [
    ...     {"claim": "a", "paper": "1", "ours": "0.5", "passed": False},
    ...     {"claim": "b", "paper": "1", "ours": "1", "passed": True}]}))
    >>> [(c["experiment"], c["claim"]) for c in failed_checks(out, names=["tiny"])]
    [('tiny', 'a')]
    """
    out = Path(out_dir) if out_dir is not None else DEFAULT_RESULTS_DIR
    failed = []
    for name in names or list_experiments():
        path = out / f"{name}.json"
        if path.is_file():
            record = json.loads(path.read_text())
            failed += [{"experiment": name, **c} for c in record.get("checks", []) if c.get("passed") is False]
    return failed


def _fits_from_cache(record: dict[str, Any]) -> str:
    """``", N of M fits read from the fit cache"`` when the record's run time covers only rendering them."""
    fits = (record.get("details") or {}).get("records", [])
    reused = sum(bool(fit.get("reused")) for fit in fits)
    return f", {reused} of {len(fits)} fits read from the fit cache" if reused else ""


def write_summary(out_dir: str | os.PathLike[str] | None = None, *, names: list[str] | None = None) -> Path:
    """Write ``SUMMARY.md`` from the experiments' JSON records in ``out_dir``, without re-running anything.

    One row per check: experiment (linked to its page), paper, claim, the paper's number, ours, verdict,
    plus whether the record is from a full or a reduced run and its run time (and, when the run read its
    fits from the fit cache, how many: its time is then the rendering's, not the fits').

    With ``names=None`` (every experiment), experiments without a record in ``out_dir`` are listed in the
    summary as not run yet, and a warning is logged.

    Raises
    ------
    FileNotFoundError
        If an experiment named in ``names`` has no record in ``out_dir`` (run it first).
    """
    out = Path(out_dir) if out_dir is not None else DEFAULT_RESULTS_DIR
    rows, passed, total, not_run, undecided = [], 0, 0, [], 0
    for name in names or list_experiments():
        path = out / f"{name}.json"
        if not path.is_file():
            if names is None:
                not_run.append(name)
                continue
            raise FileNotFoundError(
                f"No result record for experiment {name!r} at {path}. Run `latentalign run {name}` first "
                f"(or leave names out to summarise the experiments that were run)."
            )
        record = json.loads(path.read_text())
        run = f"{'reduced' if record.get('reduced') else 'full'}, {record.get('elapsed_s', float('nan')):.0f} s"
        run += _fits_from_cache(record)
        for check in record["checks"]:
            total += 1
            passed += bool(check["passed"])
            undecided += check["passed"] is None
            rows.append(
                {
                    "experiment": f"[{name}]({name}.md)",
                    "paper": record["paper"].get("citation", ""),
                    "claim": check["claim"],
                    "paper number": check["paper"],
                    "ours": check["ours"],
                    "verdict": verdict(check["passed"]),
                    "run": run,
                }
            )
    if not_run:
        logger.warning("SUMMARY.md leaves out %s: no record in %s (run them first)", ", ".join(not_run), out)
    summary = out / "SUMMARY.md"
    summary.write_text(
        "# Reproductions: summary\n\n"
        f"{passed} of {total} checks pass"
        + (f" ({undecided} not evaluable: too little data to decide)" if undecided else "")
        + ". Each experiment's page has the setup, the differences from the "
        "paper's and the full results; regenerate with `latentalign run all -o DIR` (re-runs everything) or "
        "`latentalign run all --summary-only -o DIR` (rebuilds this table from the JSON records in DIR).\n\n"
        + (f"Not run yet (no record in this folder): {', '.join(not_run)}.\n\n" if not_run else "")
        + rows_to_markdown(rows)
        + "\n"
    )
    return summary
