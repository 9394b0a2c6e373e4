"""``latentalign diagnose``: can model A talk to model B? The alignability report."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from latentalign.cli.application import AlignerName, command, typer
from latentalign.cli.inputs import load_matrix
from latentalign.cli.options import check_output
from latentalign.cli.records import save_run_record

__all__ = ["diagnose"]

logger = logging.getLogger(__name__)


@command()
def diagnose(
    source: Path = typer.Argument(
        ..., help="model A's embeddings (.safetensors, .npy or store), rows paired with TARGET"
    ),
    target: Path = typer.Argument(..., help="model B's embeddings of the same items (.safetensors, .npy or store)"),
    method: list[AlignerName] = typer.Option(
        [AlignerName.procrustes, AlignerName.relative],
        "--method",
        "-m",
        help="aligner(s) for the anchor-budget curve (repeatable)",
    ),
    budget: list[int] = typer.Option(
        [10, 30, 100, 300, 1000], "--budget", "-b", min=2, help="anchor counts of the curve (repeatable)"
    ),
    repeats: int = typer.Option(2, min=1, help="random anchor draws per budget"),
    seed: int = typer.Option(0, min=0, help="seed of the evaluation split and anchor draws"),
    out: Path = typer.Option(Path("diagnosis"), "--out", "-o", help="directory for report.md/.json and the PNG"),
) -> None:
    """Can A talk to B? CKA, mutual kNN, Procrustes residual, anchor conditioning, anchor-budget curve.

    Prints a plain-words verdict with its reasons and writes OUT/report.md, OUT/report.json,
    OUT/anchor_budget_curve.png and the run record OUT/diagnose-<time>-<hash>.json.

    **Examples**

    ```
    latentalign diagnose words__glove-50.safetensors words__minilm.safetensors -o diagnosis/
    latentalign diagnose a.npy b.npy -m procrustes -m affine -b 50 -b 500
    ```
    """
    from latentalign.evaluation import alignability_report
    from latentalign.reports import diagnosis_rows

    started = time.perf_counter()
    check_output(out, "--out", directory=True)
    X, Y = load_matrix(source, "SOURCE"), load_matrix(target, "TARGET")
    names = tuple(m.value for m in method)
    logger.info(
        "diagnosing %d pairs: %d aligner(s) x %d budgets x %d repeats", X.shape[0], len(names), len(budget), repeats
    )
    report = alignability_report(X, Y, aligners=names, budgets=tuple(budget), n_repeats=repeats, seed=seed)
    typer.echo(report.to_markdown())
    paths = report.save(out)
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
    doc = report.to_dict()
    save_run_record(
        "diagnose",
        diagnosis_rows(doc, f"{source.stem} -> {target.stem}"),
        out,
        started=started,
        echo=typer.echo,
        settings={"aligners": list(names), "budgets": list(budget), "repeats": repeats},
        inputs={"source": source, "target": target},
        seed=seed,
        outputs=list(paths.values()),
        extra={"diagnosis": doc},
    )
