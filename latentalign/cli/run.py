"""``latentalign run``: reproduce a published result, or all of them, and write the result pages."""

from __future__ import annotations

from pathlib import Path

from latentalign.cli.application import command, typer
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
) -> None:
    """Reproduce a published result; prints our numbers beside the paper's with the verdict.

    Writes OUT/NAME.md (the results page), OUT/NAME.json (the run record) and its plots; `all` adds
    OUT/SUMMARY.md. The configs ship with the package; $LATENTALIGN_EXPERIMENTS names another directory
    of them. In a source checkout, `-o experiments/results` regenerates the published pages.

    **Examples**

    ```
    latentalign run word_translation_csls          # writes runs/experiments/
    latentalign run my_config.toml -o results/
    latentalign run all --reduced
    latentalign run all --summary-only -o experiments/results
    ```
    """
    from latentalign.experiments import run_all, run_experiment, write_summary
    from latentalign.reports import rows_to_markdown

    if summary_only and experiment != "all":
        raise typer.BadParameter(f"--summary-only goes with 'all', got experiment {experiment!r}.")
    if out is not None:
        check_output(out, "--out", directory=True)
    if experiment == "all":
        summary = write_summary(out) if summary_only else run_all(reduced=reduced, out_dir=out)
        typer.echo(summary.read_text())
        typer.echo(f"summary: {summary}")
        return
    result, page = run_experiment(experiment, reduced=reduced, out_dir=out)
    typer.echo(
        rows_to_markdown(
            [
                {"claim": c.claim, "paper": c.paper, "ours": c.ours, "verdict": "pass" if c.passed else "FAIL"}
                for c in result.checks
            ]
        )
    )
    typer.echo(f"results page: {page}")
