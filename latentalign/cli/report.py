"""``latentalign report``: run records to a Markdown table, a CSV and a plot."""

from __future__ import annotations

from pathlib import Path

from latentalign.cli.app import command, typer

__all__ = ["report"]


@command()
def report(
    records: list[Path] = typer.Argument(..., help="run record JSON files or directories of them"),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="output directory"),
    metric: str = typer.Option("recall@1", help="metric to plot"),
) -> None:
    """Turn run records into report.md, report.csv and a PNG plot.

    **Examples**

    ```
    latentalign report runs/ -o report/
    latentalign report runs/stitch.json --metric accuracy -o report/
    ```
    """
    from latentalign.reports import read_records, write_report

    paths = write_report(read_records(records), out, metric=metric)
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")
