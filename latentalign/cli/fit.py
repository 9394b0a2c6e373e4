"""``latentalign fit``: fit a map between two embedding matrices and save it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from latentalign.cli.app import command, typer
from latentalign.cli.inputs import load_matrix
from latentalign.cli.options import check_output

__all__ = ["fit", "parse_params"]


def parse_params(params: list[str]) -> dict[str, Any]:
    """Turn ``--param NAME=VALUE`` strings into keyword arguments; values are read as JSON when they parse.

    Parameters
    ----------
    params : list of str
        ``NAME=VALUE`` items, as given on the command line.

    Returns
    -------
    dict
        ``{NAME: value}``: numbers, booleans, null and lists as JSON reads them, anything else as a string.

    Raises
    ------
    typer.BadParameter
        If an item has no ``=``.

    Examples
    --------
    >>> parse_params(["alpha=0.1", "center=false", "metric=cosine"])
    {'alpha': 0.1, 'center': False, 'metric': 'cosine'}
    """
    parsed: dict[str, Any] = {}
    for item in params:
        if "=" not in item:
            raise typer.BadParameter(f"--param expects NAME=VALUE, got {item!r}.")
        key, raw = item.split("=", 1)
        try:
            parsed[key] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key] = raw
    return parsed


@command()
def fit(
    source: Path = typer.Argument(
        ..., help="source embeddings (.safetensors, .npy or store directory), rows paired with target"
    ),
    target: Path = typer.Argument(..., help="target embeddings (.safetensors, .npy or store directory)"),
    method: str = typer.Option("procrustes", "--method", "-m", help="aligner name (latentalign list aligners)"),
    param: list[str] = typer.Option([], "--param", "-p", help="aligner parameter NAME=VALUE (repeatable)"),
    out: Path = typer.Option(Path("map.safetensors"), "--out", "-o", help="where to save the fitted map"),
) -> None:
    """Fit a map from SOURCE to TARGET embeddings and save it (safetensors + JSON).

    Row i of SOURCE and row i of TARGET embed the same item (e.g. both written by `latentalign embed` from
    one input file).

    **Examples**

    ```
    latentalign fit words__glove-50.safetensors words__minilm.safetensors \\
        -o glove_to_minilm.safetensors
    latentalign fit a.npy b.npy -m affine -p alpha=0.1 -o a_to_b.safetensors
    ```
    """
    from latentalign.align import make_aligner

    check_output(out if out.suffix else out.with_suffix(".safetensors"), "--out", directory=False)  # as save() names it
    X, Y = load_matrix(source, "SOURCE"), load_matrix(target, "TARGET")
    aligner = make_aligner(method, **parse_params(param)).fit(X, Y)
    path = aligner.save(out)
    typer.echo(f"fitted {aligner!r} on {X.shape[0]} pairs ({X.shape[1]} -> {aligner.n_features_out_} dims)")
    typer.echo(f"score (R^2 on the fit pairs): {aligner.score(X, Y):.4f}")
    typer.echo(f"saved map to {path}")
