"""The ``latentalign`` command line (typer). Commands compose library steps; they hold no maths.

Every command prints where its outputs went. Commands that compute results write one JSON run record.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from latentalign._optional import import_optional
from latentalign.cli_commands import load_matrix as _load_matrix

typer = import_optional("typer", "cli", purpose="the latentalign command line")

app = typer.Typer(
    name="latentalign",
    help="Align the latent spaces of pretrained models: embed, fit maps, evaluate retrieval, stitch, report.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)

# Library errors a user can cause (bad files, wrong shapes, missing packages, a locked store): shown as one
# "Error: ..." line on stderr with exit code 1 instead of a traceback.
_USER_ERRORS = (ValueError, TypeError, KeyError, OSError, ImportError, RuntimeError)


def _command(name: Optional[str] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``app.command`` that reports user errors as clear messages with a non-zero exit code."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own (Exit is a RuntimeError)
                raise
            except _USER_ERRORS as exc:
                message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                typer.echo(f"Error: {message} ({type(exc).__name__})", err=True)
                raise typer.Exit(1) from exc

        return app.command(name)(wrapper)

    return register


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


@_command("list")
def list_cmd(
    what: str = typer.Argument("all", help="models, datasets, aligners, experiments or all"),
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
    choices = ("models", "datasets", "aligners", "experiments", "all")
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
    if what in ("experiments", "all"):
        from latentalign.experiments import list_experiments

        typer.echo("experiments: " + ", ".join(list_experiments()))


@_command()
def embed(
    model: str = typer.Argument(..., help="encoder name (latentalign list models), or st:/hf:/onnx:... names"),
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", exists=True,
        help="texts/words: .txt (one per line) or .csv/.parquet (--column); images: a directory or a manifest",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="output .safetensors (tensor 'embeddings') or .npy; default INPUT__MODEL.safetensors"
    ),
    column: Optional[str] = typer.Option(None, help="column of a .csv/.parquet INPUT to embed"),
    id_column: Optional[str] = typer.Option(None, help="column of ids (default: row numbers; image files: paths)"),
    store: Optional[Path] = typer.Option(None, help="resumable embedding store directory (default OUT with .store)"),
    batch_size: int = typer.Option(64, min=1, help="inputs per forward pass"),
    shard_size: int = typer.Option(4096, min=1, help="rows per store shard (the unit a killed run resumes from)"),
    device: Optional[str] = typer.Option(None, help="torch device for torch encoders, e.g. cuda:0 (default cpu)"),
    normalize: bool = typer.Option(False, "--normalize/--no-normalize", help="L2-normalise each embedding"),
    overwrite: bool = typer.Option(False, help="discard what the store holds and encode again"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Encode texts, words or images with a registered encoder into a matrix that fit/evaluate/stitch read.

    Rows follow INPUT's order. Shards go to a store directory first (ids, checksums, manifest), so a killed
    run started again with the same arguments resumes after the last finished shard, and a finished one is
    read back without running the model. Then the matrix is written to OUT.

    **Examples**

    ```
    latentalign embed glove-50 words.txt -o words__glove-50.safetensors
    latentalign embed minilm captions.parquet --column caption --id-column id \\
        -o captions__minilm.safetensors
    latentalign embed efficientnet-lite0 images/ --batch-size 32 --device cuda \\
        -o images__effnet.safetensors
    ```
    """
    from latentalign.cli_commands import run_embed

    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in model)
    out = out if out is not None else Path(f"{input_path.stem}__{slug}.safetensors")
    run_embed(model, input_path, out=out, store_dir=store, column=column, id_column=id_column,
              batch_size=batch_size, shard_size=shard_size, device=device, normalize=normalize,
              overwrite=overwrite, progress=progress, echo=typer.echo)


@_command()
def fit(
    source: Path = typer.Argument(..., help="source embeddings (.safetensors, .npy or store directory), rows paired with target"),
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

    X, Y = _load_matrix(source, "SOURCE"), _load_matrix(target, "TARGET")
    aligner = make_aligner(method, **_parse_params(param)).fit(X, Y)
    path = aligner.save(out)
    typer.echo(f"fitted {aligner!r} on {X.shape[0]} pairs ({X.shape[1]} -> {aligner.n_features_out_} dims)")
    typer.echo(f"score (R^2 on the fit pairs): {aligner.score(X, Y):.4f}")
    typer.echo(f"saved map to {path}")


@_command()
def evaluate(
    queries: Path = typer.Argument(..., help="query embeddings (.safetensors, .npy or store), row i's answer is key row i"),
    keys: Path = typer.Argument(..., help="key embeddings (.safetensors, .npy or store)"),
    map_path: Optional[Path] = typer.Option(None, "--map", help="fitted map applied to the queries first"),
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
    from latentalign.cli_commands import load_map
    from latentalign.evaluation import retrieval_scores
    from latentalign.reports import make_record, rows_to_markdown, write_record

    Q, K = _load_matrix(queries, "QUERIES"), _load_matrix(keys, "KEYS")
    if map_path is not None:
        Q = load_map(map_path).transform(Q)
    cutoffs = tuple(int(v) for v in k.split(","))
    scores = retrieval_scores(Q, K, k=cutoffs, csls=csls)
    row = {"queries": str(queries), "keys": str(keys), "map": str(map_path) if map_path else None,
           "csls": csls, **scores}
    typer.echo(rows_to_markdown([row]))
    record = make_record("evaluate", [row], settings={"csls": csls, "k": list(cutoffs)})
    typer.echo(f"wrote run record {write_record(record, out, 'evaluate')}")


@_command()
def diagnose(
    source: Path = typer.Argument(..., help="model A's embeddings (.safetensors, .npy or store), rows paired with TARGET"),
    target: Path = typer.Argument(..., help="model B's embeddings of the same items (.safetensors, .npy or store)"),
    method: list[str] = typer.Option(["procrustes", "relative"], "--method", "-m",
                                     help="aligner(s) for the anchor-budget curve (repeatable)"),
    budget: list[int] = typer.Option([10, 30, 100, 300, 1000], "--budget", "-b",
                                     help="anchor counts of the curve (repeatable)"),
    repeats: int = typer.Option(2, help="random anchor draws per budget"),
    seed: int = typer.Option(0, help="seed of the evaluation split and anchor draws"),
    out: Path = typer.Option(Path("diagnosis"), "--out", "-o", help="directory for report.md/.json and the PNG"),
) -> None:
    """Can A talk to B? CKA, mutual kNN, Procrustes residual, anchor conditioning, anchor-budget curve.

    Prints a plain-words verdict with its reasons and writes OUT/report.md, OUT/report.json and
    OUT/anchor_budget_curve.png.

    **Examples**

    ```
    latentalign diagnose words__glove-50.safetensors words__minilm.safetensors -o diagnosis/
    latentalign diagnose a.npy b.npy -m procrustes -m affine -b 50 -b 500
    ```
    """
    from latentalign.evaluation import alignability_report

    X, Y = _load_matrix(source, "SOURCE"), _load_matrix(target, "TARGET")
    report = alignability_report(X, Y, aligners=tuple(method), budgets=tuple(budget), n_repeats=repeats, seed=seed)
    typer.echo(report.to_markdown())
    paths = report.save(out)
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))


@_command()
def stitch(
    a_test: Path = typer.Argument(..., help="model A's embeddings of the test items"),
    b_test: Path = typer.Argument(..., help="model B's embeddings of the same items, row for row (native score)"),
    labels: Path = typer.Argument(..., help="test labels: .txt (one per line), .npy, .csv/.parquet (--label-column)"),
    map_path: Path = typer.Option(..., "--map", help="fitted A -> B map (latentalign fit)"),
    head: Optional[Path] = typer.Option(
        None, help="B's linear head: .safetensors with 'weight' (classes, dim), optional 'bias' and 'classes'"
    ),
    train: Optional[Path] = typer.Option(None, help="B's train embeddings: fit a logistic-regression head on them"),
    train_labels: Optional[Path] = typer.Option(None, help="labels of the --train rows"),
    save_head: Optional[Path] = typer.Option(None, help="save the head fitted with --train (.safetensors)"),
    label_column: str = typer.Option("label", help="label column of .csv/.parquet label files"),
    src: Optional[str] = typer.Option(None, help="source model name, for a UniversalSpace map"),
    dst: Optional[str] = typer.Option(None, help="destination model name, for a UniversalSpace map"),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="directory for the JSON run record"),
    name: str = typer.Option("stitch", help="record file name (OUT/NAME.json)"),
) -> None:
    """Zero-shot stitching: B's classifier head on A's embeddings mapped into B's space. Nothing is retrained.

    Prints accuracy and macro-F1 of the head on three inputs: native (B's own test embeddings, the
    ceiling), absolute (A's embeddings unmapped, when the widths match: the floor) and stitched (A's
    embeddings through the map). The head is either a saved linear head (--head) or a logistic regression
    fitted here on B's train embeddings (--train with --train-labels; keep it with --save-head). For a
    relative-projection map the head is fitted on B's relative coordinates. Labels may be class indices
    or names (names need a head that records its classes, as --save-head does).

    **Examples**

    ```
    latentalign fit a_anchor.npy b_anchor.npy -o a2b.safetensors
    latentalign stitch a_test.npy b_test.npy y_test.txt --map a2b.safetensors \\
        --train b_train.npy --train-labels y_train.txt \\
        --save-head b_head.safetensors
    latentalign stitch a_test.npy b_test.npy y_test.txt --map a2b.safetensors \\
        --head b_head.safetensors -o runs/ --name stitch_a_b
    ```
    """
    from latentalign.cli_commands import run_stitch

    run_stitch(a_test, b_test, labels, map_path=map_path, head_path=head, train=train, train_labels=train_labels,
               save_head_path=save_head, label_column=label_column, src=src, dst=dst, out=out, name=name,
               echo=typer.echo)


@_command()
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


@_command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="directory for the record and report"),
    quick: bool = typer.Option(False, help="smaller subsets (for tests)"),
    seed: int = typer.Option(0, help="split and anchor seed"),
) -> None:
    """The main job: real offline models on real data, every method side by side, one table.

    **Examples**

    ```
    latentalign demo                 # full run, writes runs/demo/
    latentalign demo --quick -o /tmp/demo
    ```
    """
    from latentalign.demo import run_demo

    run_demo(out_dir=out, quick=quick, seed=seed, echo=typer.echo)


@_command("run")
def run_cmd(
    experiment: str = typer.Argument(..., help="experiment name or config path (experiments/*.toml), or 'all'"),
    reduced: bool = typer.Option(False, help="the reduced settings used by the slow tests"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="results directory (default experiments/results)"),
    summary_only: bool = typer.Option(
        False, "--summary-only", help="with 'all': rebuild SUMMARY.md from the JSON records, run nothing"
    ),
) -> None:
    """Reproduce a published result; prints our numbers beside the paper's with the verdict.

    **Examples**

    ```
    latentalign run experiments/word_translation_csls.toml
    latentalign run all --reduced
    latentalign run all --summary-only
    ```
    """
    from latentalign.experiments import run_all, run_experiment, write_summary
    from latentalign.reports import rows_to_markdown

    if summary_only and experiment != "all":
        raise typer.BadParameter(f"--summary-only goes with 'all', got experiment {experiment!r}.")
    if experiment == "all":
        summary = write_summary(out) if summary_only else run_all(reduced=reduced, out_dir=out)
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
