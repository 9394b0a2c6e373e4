"""``latentalign evaluate``: cross-model retrieval scores, written as a run record."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from latentalign.cli.application import command, typer
from latentalign.cli.inputs import load_map, load_matrix
from latentalign.cli.maps import map_label, map_source, map_target
from latentalign.cli.options import check_output, parse_cutoffs
from latentalign.cli.records import save_run_record

__all__ = ["evaluate"]


logger = logging.getLogger(__name__)


@command()
def evaluate(
    queries: Path = typer.Argument(
        ..., help="query embeddings (.safetensors, .npy or store), row i's answer is key row i"
    ),
    keys: Path = typer.Argument(..., help="key embeddings (.safetensors, .npy or store)"),
    map_path: Path | None = typer.Option(None, "--map", help="fitted map applied to the queries first"),
    src: str | None = typer.Option(None, help="source model name, for a UniversalSpace map"),
    dst: str | None = typer.Option(None, help="destination model name, for a UniversalSpace map"),
    csls: bool = typer.Option(False, help="rank with CSLS (k=10) instead of nearest neighbour"),
    k: str = typer.Option("1,5,10", help="comma-separated cut-offs for recall@k / precision@k"),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="directory for the JSON run record"),
) -> None:
    """Cross-model retrieval: does query i find key i? Prints recall@k, MRR, mean rank.

    With --map the queries go through the map; a relative-projection map also maps the keys (both sides
    into relative coordinates), a UniversalSpace map translates the queries from --src to --dst. Writes
    the scores to a run record OUT/evaluate-<time>-<hash>.json for `latentalign report`.

    **Examples**

    ```
    latentalign evaluate a_test.npy b_test.npy --map a_to_b.safetensors \\
        --csls -o runs/
    ```
    """
    from latentalign.evaluation import retrieval_scores
    from latentalign.reports import rows_to_markdown

    started = time.perf_counter()
    cutoffs = parse_cutoffs(k, "--k")
    check_output(out, "--out", directory=True)
    Q, K = load_matrix(queries, "QUERIES"), load_matrix(keys, "KEYS")
    aligner = load_map(map_path) if map_path is not None else None
    Q, K = map_source(aligner, Q, src=src, dst=dst), map_target(aligner, K)
    logger.info("ranking %d keys for each of %d queries%s", K.shape[0], Q.shape[0], " with CSLS" if csls else "")
    scores = retrieval_scores(Q, K, k=cutoffs, csls=csls)
    row = {
        "pair": f"{queries.stem} -> {keys.stem}",
        "method": map_label(aligner) + (" + CSLS" if csls else ""),
        "queries": str(queries),
        "keys": str(keys),
        "map": str(map_path) if map_path else None,
        "csls": csls,
        **scores,
    }
    typer.echo(rows_to_markdown([row]))
    save_run_record(
        "evaluate",
        [row],
        out,
        started=started,
        echo=typer.echo,
        settings={"csls": csls, "k": list(cutoffs), "map": map_label(aligner), "src": src, "dst": dst},
        inputs={"queries": queries, "keys": keys, **({"map": map_path} if map_path else {})},
    )
