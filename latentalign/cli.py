"""The ``latentalign`` command line (typer). Commands compose library steps; they hold no maths.

Every command prints where its outputs went. Commands that compute results write one JSON run record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from latentalign._optional import import_optional

typer = import_optional("typer", "cli", purpose="the latentalign command line")

app = typer.Typer(
    name="latentalign",
    help="Align the latent spaces of pretrained models: fit maps, evaluate retrieval, stitch, report.",
    no_args_is_help=True,
    add_completion=False,
)


def _parse_params(params: list[str]) -> dict[str, Any]:
    """Turn ``["alpha=0.1", "center=false"]`` into ``{"alpha": 0.1, "center": False}`` (JSON values)."""
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


def _load_matrix(path: Path, what: str):
    """Load embeddings from a ``.npy`` file or an embedding store directory."""
    import numpy as np

    if path.is_dir():
        from latentalign.store import EmbeddingStore

        return EmbeddingStore(path).to_numpy()
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r")
    raise typer.BadParameter(f"{what} must be a .npy file or an embedding store directory, got {str(path)!r}.")


@app.command("list")
def list_cmd(
    what: str = typer.Argument("all", help="models, datasets, aligners or all"),
) -> None:
    """List the offline models, datasets and aligners.

    Example: ``latentalign list aligners``
    """
    choices = ("models", "datasets", "aligners", "all")
    if what not in choices:
        raise typer.BadParameter(f"expected one of {choices}, got {what!r}.")
    if what in ("aligners", "all"):
        from latentalign.align import list_aligners

        typer.echo("aligners: " + ", ".join(list_aligners()))
    if what in ("datasets", "all"):
        from latentalign.datasets import list_datasets

        typer.echo("datasets: " + ", ".join(list_datasets()))
    if what in ("models", "all"):
        from latentalign.encoders import list_encoders

        typer.echo("models: " + ", ".join(list_encoders()))


@app.command()
def fit(
    source: Path = typer.Argument(..., help="source embeddings (.npy or store directory), rows paired with target"),
    target: Path = typer.Argument(..., help="target embeddings (.npy or store directory)"),
    method: str = typer.Option("procrustes", "--method", "-m", help="aligner name (latentalign list aligners)"),
    param: list[str] = typer.Option([], "--param", "-p", help="aligner parameter NAME=VALUE (repeatable)"),
    out: Path = typer.Option(Path("map.safetensors"), "--out", "-o", help="where to save the fitted map"),
) -> None:
    """Fit a map from SOURCE to TARGET embeddings and save it (safetensors + JSON).

    Example: ``latentalign fit a.npy b.npy -m affine -p alpha=0.1 -o a_to_b.safetensors``
    """
    from latentalign.align import make_aligner

    X, Y = _load_matrix(source, "SOURCE"), _load_matrix(target, "TARGET")
    aligner = make_aligner(method, **_parse_params(param)).fit(X, Y)
    path = aligner.save(out)
    typer.echo(f"fitted {aligner!r} on {X.shape[0]} pairs ({X.shape[1]} -> {aligner.n_features_out_} dims)")
    typer.echo(f"score (R^2 on the fit pairs): {aligner.score(X, Y):.4f}")
    typer.echo(f"saved map to {path}")


@app.command()
def evaluate(
    queries: Path = typer.Argument(..., help="query embeddings (.npy or store), row i's answer is key row i"),
    keys: Path = typer.Argument(..., help="key embeddings (.npy or store)"),
    map_path: Optional[Path] = typer.Option(None, "--map", help="fitted map applied to the queries first"),
    csls: bool = typer.Option(False, help="rank with CSLS (k=10) instead of nearest neighbour"),
    k: str = typer.Option("1,5,10", help="comma-separated cut-offs for recall@k / precision@k"),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="directory for the JSON run record"),
) -> None:
    """Cross-model retrieval: does query i find key i? Prints recall@k, MRR, mean rank.

    Example: ``latentalign evaluate a_test.npy b_test.npy --map a_to_b.safetensors --csls``
    """
    from latentalign import load
    from latentalign.evaluation import retrieval_scores
    from latentalign.reports import make_record, rows_to_markdown, write_record

    Q, K = _load_matrix(queries, "QUERIES"), _load_matrix(keys, "KEYS")
    if map_path is not None:
        Q = load(map_path).transform(Q)
    cutoffs = tuple(int(v) for v in k.split(","))
    scores = retrieval_scores(Q, K, k=cutoffs, csls=csls)
    row = {"queries": str(queries), "keys": str(keys), "map": str(map_path) if map_path else None,
           "csls": csls, **scores}
    typer.echo(rows_to_markdown([row]))
    record = make_record("evaluate", [row], settings={"csls": csls, "k": list(cutoffs)})
    typer.echo(f"wrote run record {write_record(record, out, 'evaluate')}")


@app.command()
def report(
    records: list[Path] = typer.Argument(..., help="run record JSON files or directories of them"),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="output directory"),
    metric: str = typer.Option("recall@1", help="metric to plot"),
) -> None:
    """Turn run records into report.md, report.csv and a PNG plot.

    Example: ``latentalign report runs/ -o report/``
    """
    from latentalign.reports import read_records, write_report

    paths = write_report(read_records(records), out, metric=metric)
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="directory for the record and report"),
    quick: bool = typer.Option(False, help="smaller subsets (for tests)"),
    seed: int = typer.Option(0, help="split and anchor seed"),
) -> None:
    """The main job: real offline models on real data, every method side by side, one table.

    Example: ``latentalign demo``
    """
    from latentalign.demo import run_demo

    run_demo(out_dir=out, quick=quick, seed=seed, echo=typer.echo)


@app.command("run")
def run_cmd(
    experiment: str = typer.Argument(..., help="experiment name or config path (experiments/*.toml), or 'all'"),
    reduced: bool = typer.Option(False, help="the reduced settings used by the slow tests"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="results directory (default experiments/results)"),
) -> None:
    """Reproduce a published result; prints our numbers beside the paper's with the verdict.

    Example: ``latentalign run experiments/word_translation_csls.toml`` or ``latentalign run all``
    """
    from latentalign.experiments import run_all, run_experiment
    from latentalign.reports import rows_to_markdown

    if experiment == "all":
        summary = run_all(reduced=reduced, out_dir=out)
        typer.echo(summary.read_text())
        typer.echo(f"summary: {summary}")
        return
    result, page = run_experiment(experiment, reduced=reduced, out_dir=out)
    typer.echo(rows_to_markdown([
        {"claim": c.claim, "paper": c.paper, "ours": c.ours, "verdict": "pass" if c.passed else "FAIL"}
        for c in result.checks
    ]))
    typer.echo(f"results page: {page}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
