"""``latentalign list``: the registered models, datasets, aligners and reproducible experiments."""

from __future__ import annotations

import enum

from latentalign.cli.application import command, typer


class Section(str, enum.Enum):
    """What ``latentalign list`` can list: another value is a usage error listing these (exit code 2)."""

    models = "models"
    datasets = "datasets"
    aligners = "aligners"
    experiments = "experiments"
    all = "all"


@command("list")
def list_cmd(
    section: Section = typer.Argument(Section.all, metavar="WHAT", help="what to list"),
) -> None:
    """List the offline models, datasets, aligners and reproducible experiments.

    **Examples**

    ```
    latentalign list              # everything
    latentalign list models       # encoders for `latentalign embed`
    latentalign list aligners     # methods for `latentalign fit -m`
    latentalign list experiments  # names for `latentalign run`
    ```
    """
    what = section.value
    if what in ("aligners", "all"):
        from latentalign.align import list_aligners

        typer.echo("aligners: " + ", ".join(list_aligners()))
    if what in ("datasets", "all"):
        from latentalign.datasets import list_datasets

        typer.echo("datasets: " + ", ".join(list_datasets()))
    if what in ("models", "all"):
        from latentalign.encoders import list_encoders

        typer.echo("models: " + ", ".join(list_encoders()))
    if what in ("experiments", "all"):
        from latentalign.experiments import list_experiments

        typer.echo("experiments: " + ", ".join(list_experiments()))
