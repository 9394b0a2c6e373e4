"""``latentalign stitch``: model B's classifier head on model A's embeddings mapped into B's space."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from latentalign.cli.application import command, typer
from latentalign.cli.heads import fit_head, label_indices, load_head, save_head
from latentalign.cli.inputs import load_map, load_matrix, read_labels
from latentalign.cli.maps import map_target
from latentalign.cli.options import check_output
from latentalign.cli.records import save_run_record

__all__ = ["stitch", "run_stitch"]


@command()
def stitch(
    a_test: Path = typer.Argument(..., help="model A's embeddings of the test items"),
    b_test: Path = typer.Argument(..., help="model B's embeddings of the same items, row for row (native score)"),
    labels: Path = typer.Argument(..., help="test labels: .txt (one per line), .npy, .csv/.parquet (--label-column)"),
    map_path: Path = typer.Option(..., "--map", help="fitted A -> B map (latentalign fit)"),
    head: Path | None = typer.Option(
        None, help="B's linear head: .safetensors with 'weight' (classes, dim), optional 'bias' and 'classes'"
    ),
    train: Path | None = typer.Option(None, help="B's train embeddings: fit a logistic-regression head on them"),
    train_labels: Path | None = typer.Option(None, help="labels of the --train rows"),
    save_head: Path | None = typer.Option(None, help="save the head fitted with --train (.safetensors)"),
    label_column: str = typer.Option("label", help="label column of .csv/.parquet label files"),
    src: str | None = typer.Option(None, help="source model name, for a UniversalSpace map"),
    dst: str | None = typer.Option(None, help="destination model name, for a UniversalSpace map"),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="directory for the JSON run record"),
    name: str = typer.Option("stitch", help="start of the record's file name (OUT/NAME-<time>-<hash>.json)"),
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
    run_stitch(
        a_test,
        b_test,
        labels,
        map_path=map_path,
        head_path=head,
        train=train,
        train_labels=train_labels,
        save_head_path=save_head,
        label_column=label_column,
        src=src,
        dst=dst,
        out=out,
        name=name,
        echo=typer.echo,
    )


def run_stitch(
    a_test: Path,
    b_test: Path,
    labels_path: Path,
    *,
    map_path: Path,
    head_path: Path | None,
    train: Path | None,
    train_labels: Path | None,
    save_head_path: Path | None,
    label_column: str,
    src: str | None,
    dst: str | None,
    out: Path,
    name: str,
    echo: Callable[[str], Any],
) -> Path:
    """Score B's head on B's, A's raw and A's mapped test embeddings; write the run record; return its path."""
    from latentalign.align import Aligner
    from latentalign.evaluation.stitching import evaluate_stitching
    from latentalign.reports import rows_to_markdown

    started = time.perf_counter()
    if (head_path is None) == (train is None):
        raise typer.BadParameter(
            "give exactly one head: --head HEAD.safetensors (a saved linear head of model B), or --train "
            "B_TRAIN --train-labels LABELS to fit a logistic-regression head on B's train embeddings."
        )
    if train is not None and train_labels is None:
        raise typer.BadParameter("--train needs --train-labels (one label per row of B_TRAIN).")
    if head_path is not None and (train_labels is not None or save_head_path is not None):
        raise typer.BadParameter("--train-labels and --save-head go with --train, not with --head.")
    check_output(out, "--out", directory=True)
    if save_head_path is not None:
        check_output(save_head_path, "--save-head", directory=False)
    aligner = load_map(map_path)
    X, Y = np.asarray(load_matrix(a_test, "A_TEST")), np.asarray(load_matrix(b_test, "B_TEST"))
    labels = read_labels(labels_path, "LABELS", label_column)
    method = type(aligner).__name__
    # the head reads what the map's transform_target gives for B; a UniversalSpace translates into B's own space
    space = f"{method}.transform_target of B's embeddings" if isinstance(aligner, Aligner) else "B's own embeddings"

    def to_head_space(Z: np.ndarray) -> np.ndarray:
        return map_target(aligner, Z)

    if train is not None:
        Y_train = np.asarray(load_matrix(train, "--train"))
        train_y = read_labels(train_labels, "--train-labels", label_column)  # type: ignore[arg-type]
        if len(train_y) != Y_train.shape[0]:
            raise ValueError(
                f"--train-labels has {len(train_y)} labels but --train has {Y_train.shape[0]} rows; give one per row."
            )
        head, fitted_classes = fit_head(to_head_space(Y_train), train_y)
        classes: list[Any] | None = fitted_classes
        echo(
            f"fitted a logistic-regression head on {Y_train.shape[0]} rows of {train} ({len(fitted_classes)} classes; "
            f"features: {space})"
        )
        if save_head_path is not None:
            echo(f"saved head to {save_head(head, fitted_classes, save_head_path, str(train))}")
    else:
        head, classes = load_head(head_path)  # type: ignore[arg-type]
    width = to_head_space(Y).shape[1]
    if head.in_features != width:
        raise ValueError(
            f"the head reads {head.in_features}-d inputs, but B_TEST gives {width}-d ones ({space}); use a "
            "head trained on this model B's embeddings as this map presents them (or fit one with --train)."
        )
    y = label_indices(labels, classes, head.out_features, "LABELS")
    scores = evaluate_stitching(head, X, Y, y, aligner, src=src, dst=dst)
    pair = f"{a_test.stem} -> {b_test.stem}"
    rows = []
    for kind in ("native", "absolute", "stitched"):
        s: dict[str, float | None] = {"accuracy": None, "macro_f1": None, **(scores[kind] or {})}
        rows.append(
            {
                "pair": pair,
                "method": kind if kind != "stitched" else f"stitched ({method})",
                "accuracy": s["accuracy"],
                "macro_f1": s["macro_f1"],
                "n": int(X.shape[0]),
            }
        )
    echo(rows_to_markdown(rows))
    if scores["absolute"] is None:
        echo("absolute: not defined (A's width differs from what the head reads)")
    return save_run_record(
        "stitch",
        rows,
        out,
        started=started,
        echo=echo,
        settings={
            "head": "logistic_regression" if train is not None else "file",
            "map": method,
            "n_classes": int(head.out_features),
            "src": src,
            "dst": dst,
        },
        inputs={
            "a_test": a_test,
            "b_test": b_test,
            "labels": labels_path,
            "map": map_path,
            **({"head": head_path} if head_path else {}),
            **({"train": train, "train_labels": train_labels} if train else {}),
        },
        outputs=[save_head_path] if save_head_path is not None and train is not None else [],
        extra={"classes": classes, "scores": scores},
        name=name,
    )
