"""``latentalign demo``: real offline models on real data, every method side by side."""

from __future__ import annotations

from pathlib import Path

from latentalign.cli.application import command, typer
from latentalign.cli.options import check_output

__all__ = ["demo"]


@command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="directory for the record and report"),
    quick: bool = typer.Option(False, help="smaller subsets (for tests)"),
    seed: int = typer.Option(0, min=0, help="split and anchor seed"),
) -> None:
    """The main job: real offline models on real data, every method side by side, one table.

    **Examples**

    ```
    latentalign demo                 # full run, writes runs/demo/
    latentalign demo --quick -o /tmp/demo
    ```
    """
    from latentalign.experiments.demo import run_demo

    check_output(out, "--out", directory=True)

    run_demo(out_dir=out, quick=quick, seed=seed, echo=typer.echo)
