"""``latentalign evaluate``: cross-model retrieval scores, written as a run record."""

from __future__ import annotations

from pathlib import Path

from latentalign.cli.application import command, typer
from latentalign.cli.inputs import load_map, load_matrix
from latentalign.cli.options import check_output, parse_cutoffs

__all__ = ["evaluate"]


@command()
def evaluate(
    queries: Path = typer.Argument(
        ..., help="query embeddings (.safetensors, .npy or store), row i's answer is key row i"
    ),
    keys: Path = typer.Argument(..., help="key embeddings (.safetensors, .npy or store)"),
    map_path: Path | None = typer.Option(None, "--map", help="fitted map applied to the queries first"),
    csls: bool = typer.Option(False, help="rank with CSLS (k=10) instead of nearest neighbour"),
    k: str = typer.Option("1,5,10", help="comma-separated cut-offs for recall@k / precision@k"),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="directory for the JSON run record"),
) -> None:
    """Cross-model retrieval: does query i find key i? Prints recall@k, MRR, mean rank.

    Writes the scores to OUT/evaluate.json (a run record for `latentalign report`).

    **Examples**

    ```
    latentalign evaluate a_test.npy b_test.npy --map a_to_b.safetensors \\
        --csls -o runs/
    ```
    """
    from latentalign.evaluation import retrieval_scores
    from latentalign.reports import make_record, rows_to_markdown, write_record

    cutoffs = parse_cutoffs(k, "--k")
    check_output(out, "--out", directory=True)
    Q, K = load_matrix(queries, "QUERIES"), load_matrix(keys, "KEYS")
    if map_path is not None:
        Q = load_map(map_path).transform(Q)
    scores = retrieval_scores(Q, K, k=cutoffs, csls=csls)
    row = {
        "queries": str(queries),
        "keys": str(keys),
        "map": str(map_path) if map_path else None,
        "csls": csls,
        **scores,
    }
    typer.echo(rows_to_markdown([row]))
    record = make_record("evaluate", [row], settings={"csls": csls, "k": list(cutoffs)})
    typer.echo(f"wrote run record {write_record(record, out, 'evaluate')}")
