"""``latentalign fit``: fit a map between two embedding matrices and save it."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from latentalign.cli.application import AlignerName, command, typer, usage_error
from latentalign.cli.inputs import load_matrix, read_pairs
from latentalign.cli.options import check_output
from latentalign.cli.records import save_run_record

__all__ = ["fit", "parse_params", "ROW_MODES", "pairing_mode"]

logger = logging.getLogger(__name__)

#: How an aligner may read the rows of SOURCE and TARGET besides row i <-> row i: with known pairs
#: (``--pairs``) and/or with no pairs at all (``--unpaired``). Aligners not listed need paired rows.
ROW_MODES: dict[str, tuple[str, ...]] = {"ot": ("pairs", "unpaired"), "lfm": ("pairs",), "unsupervised": ("unpaired",)}


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


def _rows_error(message: str) -> Exception:
    error: Exception = usage_error(message, "'--pairs' / '--unpaired'")
    return error


def pairing_mode(method: str, pairs: str | None, unpaired: bool) -> str:
    """How ``fit`` reads the rows: ``"rows"`` (row i <-> row i), ``"pairs"`` (a file) or ``"unpaired"``.

    An aligner that can work without row pairing (``ot``, ``lfm``, ``unsupervised``) must be told which:
    guessing would either ignore the pairing the user has or invent one the user does not have.

    Raises
    ------
    typer.BadParameter
        For a combination the method cannot honour (exit code 2), naming both options.

    Examples
    --------
    >>> pairing_mode("procrustes", None, False), pairing_mode("ot", None, True), pairing_mode("ot", "rows", False)
    ('rows', 'unpaired', 'rows')
    >>> pairing_mode("ot", None, False)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    typer.BadParameter: -m ot can fit with or without row pairs, so say which: ...
    """
    modes = ROW_MODES.get(method, ())
    if pairs is not None and unpaired:
        raise _rows_error("give --pairs FILE or --unpaired, not both.")
    if unpaired:
        if "unpaired" not in modes:
            can = [m for m, ways in ROW_MODES.items() if "unpaired" in ways]
            raise _rows_error(
                f"-m {method} cannot fit without pairs; drop --unpaired and give paired rows (or --pairs FILE), "
                f"or use one of {can} for unpaired rows."
            )
        return "unpaired"
    if pairs is not None:
        if method == "unsupervised":
            raise _rows_error(
                "-m unsupervised uses no pairs; drop --pairs and say --unpaired, or use -m ot / -m lfm, which "
                "use known pairs."
            )
        return "rows" if pairs == "rows" else "pairs"
    if modes:
        ways = []
        if "pairs" in modes:
            ways.append(
                "--pairs FILE (a 2-column integer .npy/.txt/.csv of (SOURCE row, TARGET row) indices; "
                "--pairs rows when row i of SOURCE and row i of TARGET are the same item)"
            )
        if "unpaired" in modes:
            ways.append("--unpaired (the rows are not paired at all; the map is learnt from the two clouds)")
        how = {
            ("pairs", "unpaired"): "with or without row pairs",
            ("pairs",): "from a few known pairs plus unpaired rows",
            ("unpaired",): "on unpaired rows",
        }[modes]
        raise _rows_error(f"-m {method} can fit {how}, so say which rows pair: " + ", or ".join(ways) + ".")
    return "rows"


@command()
def fit(
    source: Path = typer.Argument(
        ..., help="source embeddings (.safetensors, .npy or store directory), rows paired with target"
    ),
    target: Path = typer.Argument(..., help="target embeddings (.safetensors, .npy or store directory)"),
    method_name: AlignerName = typer.Option(
        AlignerName.procrustes, "--method", "-m", help="aligner (latentalign list aligners)"
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="aligner parameter NAME=VALUE (repeatable)"),
    pairs: str | None = typer.Option(
        None,
        "--pairs",
        help="known pairs: 2-column integer .npy/.txt/.csv of (SOURCE row, TARGET row); 'rows' = row i <-> row i",
    ),
    unpaired: bool = typer.Option(False, "--unpaired", help="the rows are not paired (-m ot, -m unsupervised)"),
    out: Path = typer.Option(Path("map.safetensors"), "--out", "-o", help="where to save the fitted map"),
    record_dir: Path = typer.Option(Path("runs"), "--record-dir", help="directory for the JSON run record"),
) -> None:
    """Fit a map from SOURCE to TARGET embeddings and save it (safetensors + JSON).

    By default row i of SOURCE and row i of TARGET embed the same item (e.g. both written by `latentalign
    embed` from one input file). With --pairs FILE only the listed (SOURCE row, TARGET row) pairs are
    known: -m ot and -m lfm also use the other rows, unpaired; other methods fit on the pairs. Methods
    that can fit without pairs (ot, lfm, unsupervised) need --pairs or --unpaired said explicitly.

    **Examples**

    ```
    latentalign fit words__glove-50.safetensors words__minilm.safetensors \\
        -o glove_to_minilm.safetensors
    latentalign fit a.npy b.npy -m affine -p alpha=0.1 -o a_to_b.safetensors
    latentalign fit a.npy b.npy -m ot --pairs seed_pairs.csv -o a_to_b.safetensors
    latentalign fit en.npy fr.npy -m unsupervised --unpaired -o en_to_fr.safetensors
    ```
    """
    from latentalign.align import make_aligner

    started = time.perf_counter()
    method = method_name.value
    mode = pairing_mode(method, pairs, unpaired)
    check_output(out if out.suffix else out.with_suffix(".safetensors"), "--out", directory=False)  # as save() names it
    check_output(record_dir, "--record-dir", directory=True)
    X, Y = load_matrix(source, "SOURCE"), load_matrix(target, "TARGET")
    P = read_pairs(Path(pairs), X.shape[0], Y.shape[0]) if mode == "pairs" else None  # type: ignore[arg-type]
    if mode == "rows" and X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"SOURCE has {X.shape[0]} rows and TARGET {Y.shape[0]}; row i of one pairs row i of the other, so they "
            "must match. Pass matching files, or --pairs FILE (or --unpaired with -m ot) for rows that do not pair up."
        )
    params = parse_params(param)
    aligner = make_aligner(method, **params)
    if mode == "rows" and method in ROW_MODES:  # pairs by position, said explicitly with --pairs rows
        P = np.stack([np.arange(X.shape[0])] * 2, axis=1)
        mode = "pairs"
    uses_unpaired_rows = method in ROW_MODES
    if mode == "pairs" and uses_unpaired_rows:
        what = f"{len(P)} known pairs and the other rows of {X.shape[0]} x {Y.shape[0]}"  # type: ignore[arg-type]
        logger.info("fitting %s on %s (matching rounds can take a minute)", type(aligner).__name__, what)
        aligner.fit(X, Y, pairs=P)  # type: ignore[call-arg]
    elif mode == "unpaired":
        what = f"{X.shape[0]} + {Y.shape[0]} unpaired rows (no pairs)"
        logger.info("fitting %s on %s (matching rounds can take a minute)", type(aligner).__name__, what)
        aligner.fit(X, Y)
    else:
        if P is not None:
            X, Y = X[P[:, 0]], Y[P[:, 1]]
        what = f"{X.shape[0]} pairs"
        logger.info("fitting %s on %s", type(aligner).__name__, what)
        aligner.fit(X, Y)
    path = aligner.save(out)
    typer.echo(f"fitted {aligner!r} on {what} ({X.shape[1]} -> {aligner.n_features_out_} dims)")
    score: float | None = None
    if mode == "unpaired":
        typer.echo("score: none (no pairs to score on); measure the map on held-out pairs with `latentalign evaluate`")
    else:
        Xs, Ys = (X[P[:, 0]], Y[P[:, 1]]) if uses_unpaired_rows and P is not None else (X, Y)
        score = float(aligner.score(Xs, Ys))
        typer.echo(f"score (R^2 on the {len(Xs)} fit pairs): {score:.4f}")
    typer.echo(f"saved map to {path}")
    n_pairs = 0 if mode == "unpaired" else len(P) if P is not None and uses_unpaired_rows else X.shape[0]
    save_run_record(
        "fit",
        [{"pair": f"{source.stem} -> {target.stem}", "method": method, "n_pairs": int(n_pairs), "score_r2": score}],
        record_dir,
        started=started,
        echo=typer.echo,
        settings={"method": method, "params": params, "rows": mode},
        inputs={
            "source": source,
            "target": target,
            **({"pairs": Path(pairs)} if pairs is not None and pairs != "rows" else {}),
        },
        seed=params.get("random_state") if isinstance(params.get("random_state"), int) else None,
        outputs=[path],
    )
