"""``latentalign run``: reproduce a published result, or all of them, and write the result pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latentalign.cli.application import EXIT_ERROR, command, typer
from latentalign.cli.options import check_output

__all__ = ["run_cmd"]


@command("run")
def run_cmd(
    experiment: str = typer.Argument(
        ..., help="experiment name (latentalign list experiments), a .toml config path, or 'all'"
    ),
    reduced: bool = typer.Option(False, help="the reduced settings used by the slow tests"),
    out: Path | None = typer.Option(None, "--out", "-o", help="results directory (default runs/experiments)"),
    summary_only: bool = typer.Option(
        False, "--summary-only", help="with 'all': rebuild SUMMARY.md from the JSON records, run nothing"
    ),
    strict: bool = typer.Option(False, "--strict", help="exit with code 1 when a check of the paper FAILs"),
) -> None:
    """Reproduce a published result; prints our numbers beside the paper's with the verdict.

    Writes OUT/NAME.md (the results page), OUT/NAME.json (its run record, replaced with the page by the
    next run) and its plots; `all` adds OUT/SUMMARY.md. Failed checks are listed at the end; with
    --strict they make the exit code 1 (for CI). The configs ship with the package; $LATENTALIGN_EXPERIMENTS names another directory
    of them. In a source checkout, `-o experiments/results` regenerates the published pages.

    **Examples**

    ```
    latentalign run word_translation_csls          # writes runs/experiments/
    latentalign run my_config.toml -o results/
    latentalign run all --reduced --strict
    latentalign run all --summary-only -o experiments/results
    ```
    """
    from latentalign.experiments import list_experiments, run_all, run_experiment, write_summary
    from latentalign.experiments.runner import DEFAULT_RESULTS_DIR, failed_checks
    from latentalign.reports import rows_to_markdown

    if summary_only and experiment != "all":
        raise typer.BadParameter(f"--summary-only goes with 'all', got experiment {experiment!r}.")
    if out is not None:
        check_output(out, "--out", directory=True)
    if experiment == "all":
        summary = write_summary(out) if summary_only else run_all(reduced=reduced, out_dir=out)
        typer.echo(summary.read_text())
        typer.echo(f"summary: {summary}")
        _report_failures(failed_checks(out or DEFAULT_RESULTS_DIR, names=list_experiments()), strict)
        return
    result, page = run_experiment(experiment, reduced=reduced, out_dir=out)
    typer.echo(
        rows_to_markdown(
            [{"claim": c.claim, "paper": c.paper, "ours": c.ours, "verdict": c.verdict} for c in result.checks]
        )
    )
    typer.echo(f"results page: {page}")
    name = page.stem
    _report_failures([{"experiment": name, **c.__dict__} for c in result.checks if c.passed is False], strict)


def _report_failures(failed: list[dict[str, Any]], strict: bool) -> None:
    if not failed:
        return
    typer.echo(f"{len(failed)} check(s) FAILED:")
    for check in failed:
        typer.echo(f"  {check['experiment']}: {check['claim']} (paper {check['paper']}, ours {check['ours']})")
    if strict:
        raise typer.Exit(EXIT_ERROR)
