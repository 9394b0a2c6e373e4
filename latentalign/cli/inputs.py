"""Bodies of the ``latentalign embed`` and ``stitch`` commands, and the file readers the CLI shares.

:mod:`latentalign.cli` holds the typer signatures and help texts; this module reads the user's files
(embeddings, item lists, labels, heads), calls the library and writes the outputs. It holds no maths.
User errors raise ``typer.BadParameter`` (a wrong argument) or ``ValueError`` (bad content); the CLI
turns both into a one-line message and a non-zero exit code.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from latentalign._optional import import_optional

typer = import_optional("typer", "cli", purpose="the latentalign command line")

__all__ = [
    "load_matrix",
    "load_map",
    "read_items",
    "read_labels",
    "run_embed",
    "run_stitch",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
EMBEDDINGS_KEY = "embeddings"
HEAD_FORMAT = "latentalign.linear_head"
Echo = Callable[[str], Any]


# ---------------------------------------------------------------------------------------------- readers
def _safetensors_header(path: Path) -> tuple[list[str], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return list(handle.keys()), dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise typer.BadParameter(f"{str(path)!r} is not a readable safetensors file ({exc}).") from None


def load_matrix(path: Path, what: str) -> np.ndarray:
    """Load an ``(n, d)`` embedding matrix from ``.npy``, ``.safetensors`` (tensor ``embeddings``, as
    ``latentalign embed`` writes) or an embedding store directory."""
    if path.is_dir():
        from latentalign.store import EmbeddingStore

        return EmbeddingStore(path).to_numpy()
    if not path.exists():
        raise typer.BadParameter(f"{what} {str(path)!r} does not exist.")
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False)
    if path.suffix == ".safetensors":
        keys, meta = _safetensors_header(path)
        if meta.get("format") == "latentalign" and "estimator" in meta:
            raise typer.BadParameter(
                f"{what} {str(path)!r} is a fitted map (written by `latentalign fit`), not embeddings. Pass "
                "embeddings written by `latentalign embed`, a .npy file or an embedding store directory."
            )
        if EMBEDDINGS_KEY in keys or len(keys) == 1:
            from safetensors.numpy import load_file

            return load_file(str(path))[EMBEDDINGS_KEY if EMBEDDINGS_KEY in keys else keys[0]]
        raise typer.BadParameter(
            f"{what} {str(path)!r} holds the tensors {sorted(keys)} but none is called {EMBEDDINGS_KEY!r}. "
            f"Save the matrix under the key {EMBEDDINGS_KEY!r} (or as the file's only tensor)."
        )
    raise typer.BadParameter(
        f"{what} must be a .npy or .safetensors file or an embedding store directory, got {str(path)!r}."
    )


def load_map(path: Path, what: str = "--map") -> Any:
    """``latentalign.load`` a fitted map, after checking that ``path`` is one."""
    from latentalign import load

    if not path.is_file():
        raise typer.BadParameter(f"{what} {str(path)!r} does not exist; fit a map with `latentalign fit`.")
    if path.suffix != ".safetensors":
        raise typer.BadParameter(
            f"{what} must be a .safetensors map written by `latentalign fit` (or Aligner.save), got {str(path)!r}."
        )
    _, meta = _safetensors_header(path)
    if meta.get("format") == "latentalign.embeddings":
        raise typer.BadParameter(
            f"{what} {str(path)!r} holds embeddings (written by `latentalign embed`), not a fitted map; fit "
            "one with `latentalign fit SOURCE TARGET -o MAP.safetensors`."
        )
    return load(path)


def _read_table_column(path: Path, column: str | None, what: str, option: str) -> tuple[list[Any], list[str]]:
    """One column of a .csv or .parquet file (and the list of its columns, for messages)."""
    if path.suffix == ".parquet":
        pq = import_optional("pyarrow.parquet", "data", purpose=f"reading {what} from parquet")
        columns = list(pq.read_schema(path).names)
        if column not in columns:
            raise typer.BadParameter(
                f"{what} {str(path)!r} has no column {column!r}; its columns are {columns}. Pick one with {option}."
            )
        return pq.read_table(path, columns=[column]).column(column).to_pylist(), columns
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        if column not in columns:
            raise typer.BadParameter(
                f"{what} {str(path)!r} has no column {column!r}; its columns are {columns}. Pick one with {option}."
            )
        return [row[column] for row in reader], columns


def _read_lines(path: Path, what: str) -> list[str]:
    items = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    empty = [i + 1 for i, line in enumerate(items) if not line]
    if empty:
        raise ValueError(
            f"{what} {str(path)!r} has empty lines (line {empty[0]}{' and more' if len(empty) > 1 else ''}); every "
            "line is one item, so rows would shift. Remove the empty lines."
        )
    return items


def read_items(
    path: Path, modality: str, *, column: str | None = None, id_column: str | None = None
) -> tuple[list[Any], list[Any], str]:
    """Read what to embed: ``(inputs, ids, content sha256)``.

    Texts and words: a ``.txt`` file (one item per line) or a ``.csv``/``.parquet`` column. Images: a
    directory (every image file below it, sorted) or a manifest of paths (``.txt`` one per line, or a
    column) relative to the manifest's folder. Ids are the row numbers, the ``id_column`` values, or for
    a directory the relative file paths.
    """
    if modality not in ("text", "word", "image"):
        raise typer.BadParameter(
            f"the CLI embeds texts, words and images, but this encoder takes {modality!r} inputs; "
            "use the Python API (latentalign.store.embed) for those."
        )
    if path.is_dir():
        if modality != "image":
            raise typer.BadParameter(
                f"INPUT {str(path)!r} is a directory, but a {modality} encoder needs a .txt, .csv or .parquet file."
            )
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"INPUT directory {str(path)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
        ids: list[Any] = [p.relative_to(path).as_posix() for p in files]
        items: list[Any] = files
    else:
        suffix = path.suffix.lower()
        if suffix == ".txt":
            if column is not None:
                raise typer.BadParameter("--column only applies to .csv and .parquet inputs; a .txt has one item per line.")
            values: list[Any] = _read_lines(path, "INPUT")
            ids = list(range(len(values)))
        elif suffix in (".csv", ".parquet"):
            if column is None:
                raise typer.BadParameter(f"INPUT {str(path)!r} is a table: name the column to embed with --column.")
            values, _ = _read_table_column(path, column, "INPUT", "--column")
            if any(v is None or v == "" for v in values):
                bad = next(i for i, v in enumerate(values) if v is None or v == "")
                raise ValueError(f"column {column!r} of {str(path)!r} is empty at row {bad}; fill or drop those rows.")
            values = [str(v) for v in values]
            ids = _read_table_column(path, id_column, "INPUT", "--id-column")[0] if id_column else list(range(len(values)))
        else:
            raise typer.BadParameter(
                f"INPUT must be a .txt, .csv or .parquet file{' or a directory of images' if modality == 'image' else ''}, "
                f"got {str(path)!r}."
            )
        if not values:
            raise ValueError(f"INPUT {str(path)!r} holds no items.")
        if modality == "image":
            items = [Path(v) if Path(v).is_absolute() else path.parent / v for v in values]
            missing = [str(p) for p in items if not p.is_file()]
            if missing:
                raise ValueError(
                    f"{len(missing)} of the {len(items)} image paths listed in {str(path)!r} do not exist "
                    f"(e.g. {missing[:3]}); paths are read relative to the manifest's folder."
                )
            if id_column is None:
                ids = list(values)
        else:
            items = values
    digest = hashlib.sha256(modality.encode())
    for item in items:  # texts by content; images by path and size (reading every file would cost a pass)
        digest.update((f"{item}\x00{item.stat().st_size}" if isinstance(item, Path) else item).encode("utf-8", "surrogatepass"))
        digest.update(b"\x01")
    return items, ids, digest.hexdigest()


def _coerce_labels(values: list[Any], what: str) -> list[Any]:
    if any(v is None or v == "" for v in values):
        bad = next(i for i, v in enumerate(values) if v is None or v == "")
        raise ValueError(f"{what} has a missing label at row {bad}; give one label per row.")
    if all(isinstance(v, str) for v in values) and all(re.fullmatch(r"-?\d+", v) for v in values):
        return [int(v) for v in values]
    if any(isinstance(v, float) for v in values):
        raise ValueError(f"{what} holds floating-point values; labels must be integer class indices or class names.")
    return values


def read_labels(path: Path, what: str, column: str = "label") -> list[Any]:
    """Class labels (ints or names) from ``.txt`` (one per line), ``.npy``, ``.csv`` or ``.parquet``."""
    if not path.is_file():
        raise typer.BadParameter(f"{what} {str(path)!r} does not exist or is not a file.")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        values: list[Any] = _read_lines(path, what)
    elif suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 1:
            raise ValueError(f"{what} {str(path)!r} must be a 1-D array (one label per row), got shape {arr.shape}.")
        if arr.dtype.kind == "f":
            raise ValueError(f"{what} {str(path)!r} has dtype {arr.dtype}; labels must be integers or class names.")
        values = arr.tolist()
    elif suffix in (".csv", ".parquet"):
        values, _ = _read_table_column(path, column, what, "--label-column")
    else:
        raise typer.BadParameter(f"{what} must be a .txt, .npy, .csv or .parquet file, got {str(path)!r}.")
    return _coerce_labels(values, what)


# ---------------------------------------------------------------------------------------------- embed
def _cli_wording(message: str) -> str:
    return message.replace("embed(..., overwrite=True)", "--overwrite").replace("overwrite=True", "--overwrite")


def _manifest_progress(store_dir: Path) -> tuple[int, bool] | None:
    manifest = store_dir / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        doc = json.loads(manifest.read_text())
        return sum(s["rows"] for s in doc["shards"]), bool(doc["complete"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _atomic_save_embeddings(X: np.ndarray, out: Path, metadata: dict[str, str]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    if out.suffix == ".npy":
        with open(tmp, "wb") as fh:
            np.save(fh, X, allow_pickle=False)
    else:
        from safetensors.numpy import save_file

        save_file({EMBEDDINGS_KEY: np.ascontiguousarray(X)}, str(tmp), metadata=metadata)
    os.replace(tmp, out)


def run_embed(
    model: str,
    input_path: Path,
    *,
    out: Path,
    store_dir: Path | None,
    column: str | None,
    id_column: str | None,
    batch_size: int,
    shard_size: int,
    device: str | None,
    normalize: bool,
    overwrite: bool,
    progress: bool,
    echo: Echo,
) -> Path:
    """Encode ``input_path`` with ``model`` through a resumable store, then write ``out``; return ``out``."""
    from latentalign.encoders import load_encoder
    from latentalign.store import embed

    if out.suffix not in (".safetensors", ".npy"):
        raise typer.BadParameter(f"--out must end in .safetensors or .npy, got {str(out)!r}.")
    if id_column is not None and column is None:
        raise typer.BadParameter("--id-column goes with a .csv/.parquet INPUT and its --column.")
    store_dir = store_dir or out.with_suffix(".store")
    try:
        encoder = load_encoder(model, **({"device": device} if device else {}))
    except TypeError as exc:
        if device and "device" in str(exc):
            raise typer.BadParameter(
                f"the encoder {model!r} takes no --device (it runs where its library runs); drop --device."
            ) from None
        raise
    items, ids, content_sha = read_items(input_path, encoder.modality, column=column, id_column=id_column)
    before = None if overwrite else _manifest_progress(store_dir)
    try:
        store = embed(
            encoder, items, ids, dataset=input_path.stem, store_dir=store_dir, shard_size=shard_size,
            batch_size=batch_size, normalize=normalize, settings={"inputs_sha256": content_sha},
            overwrite=overwrite, progress=progress,
        )
    except ValueError as exc:  # includes PersistenceError: say it in CLI words
        raise ValueError(_cli_wording(str(exc))) from exc
    if before is not None and before[1]:
        echo(f"store {store_dir} was already complete: read back {len(store)} rows, nothing re-encoded")
    elif before is not None and before[0] > 0:
        echo(f"resumed store {store_dir}: rows 0-{before[0] - 1} were already written, encoded rows "
             f"{before[0]}-{len(store) - 1}")
    else:
        echo(f"encoded {len(store)} items into store {store_dir}")
    X = store.to_numpy()
    meta = {
        "format": "latentalign.embeddings", "encoder": encoder.name, "model": model,
        "model_id": str(encoder.metadata.get("model_id")), "modality": encoder.modality,
        "normalize": str(bool(normalize)).lower(), "n": str(X.shape[0]), "dim": str(X.shape[1]),
        "input": str(input_path), "store": str(store_dir), "store_key": str(store.key),
    }
    _atomic_save_embeddings(X, out, meta)
    echo(f"embedded {X.shape[0]} items with {model} ({X.shape[1]} dims, normalize={normalize}); ids in {store_dir}")
    echo(f"saved embeddings to {out}")
    return out


# ---------------------------------------------------------------------------------------------- stitch
def _linear_head(weight: np.ndarray, bias: np.ndarray | None) -> Any:
    import torch

    W = torch.as_tensor(np.asarray(weight, dtype=np.float32))
    head = torch.nn.Linear(W.shape[1], W.shape[0], bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(W)
        if bias is not None:
            head.bias.copy_(torch.as_tensor(np.asarray(bias, dtype=np.float32)))
    head.requires_grad_(False)
    return head.eval()


def load_head(path: Path) -> tuple[Any, list[Any] | None]:
    """A linear head from ``.safetensors``: ``weight`` (classes, d), optional ``bias`` (classes,), optional
    ``classes`` (JSON list) in the header. Returns ``(torch.nn.Linear, classes or None)``."""
    if not path.is_file():
        raise typer.BadParameter(f"--head {str(path)!r} does not exist.")
    if path.suffix != ".safetensors":
        raise typer.BadParameter(f"--head must be a .safetensors file with 'weight' and 'bias' tensors, got {str(path)!r}.")
    keys, meta = _safetensors_header(path)
    if meta.get("format") == "latentalign":
        raise typer.BadParameter(f"--head {str(path)!r} is a fitted map (pass it as --map), not a classifier head.")
    if "weight" not in keys:
        raise typer.BadParameter(
            f"--head {str(path)!r} holds the tensors {sorted(keys)}; expected 'weight' of shape (classes, dim) and "
            "optionally 'bias' of shape (classes,), e.g. a torch nn.Linear state_dict saved with safetensors."
        )
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    W, b = tensors["weight"], tensors.get("bias")
    if W.ndim != 2 or (b is not None and b.shape != (W.shape[0],)):
        raise ValueError(
            f"--head {str(path)!r}: weight must be (classes, dim) and bias (classes,), got {W.shape} and "
            f"{None if b is None else b.shape}."
        )
    classes = json.loads(meta["classes"]) if "classes" in meta else None
    if classes is not None and len(classes) != W.shape[0]:
        raise ValueError(f"--head {str(path)!r} names {len(classes)} classes but has {W.shape[0]} weight rows.")
    return _linear_head(W, b), classes


def fit_head(Y_train: np.ndarray, labels: list[Any]) -> tuple[Any, list[Any]]:
    """Logistic regression on B's train embeddings, returned as a linear head (float32) + its classes."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels)
    if len(set(labels)) < 2:
        raise ValueError(f"--train-labels hold a single class ({labels[0]!r}); a classifier needs at least two.")
    clf = LogisticRegression(max_iter=2000).fit(np.asarray(Y_train, dtype=np.float64), y)
    W, b = clf.coef_, clf.intercept_
    if W.shape[0] == 1:  # binary: decision_function s = x w + b favours classes_[1] when s > 0
        W, b = np.vstack([-W, W]), np.concatenate([-b, b])
    return _linear_head(W, b), clf.classes_.tolist()


def save_head(head: Any, classes: list[Any], path: Path, source: str) -> Path:
    from safetensors.numpy import save_file

    if path.suffix != ".safetensors":
        raise typer.BadParameter(f"--save-head must end in .safetensors, got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"weight": head.weight.detach().numpy().copy(), "bias": head.bias.detach().numpy().copy()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata={"format": HEAD_FORMAT, "classes": json.dumps(classes),
                                            "model": "LogisticRegression", "trained_on": source})
    os.replace(tmp, path)
    return path


def _label_indices(labels: list[Any], classes: list[Any] | None, n_out: int, what: str) -> np.ndarray:
    if classes is not None:
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({v for v in labels if v not in index}, key=str)
        if unknown:
            raise ValueError(
                f"{what} has {len(unknown)} label(s) the head has no class for (e.g. {unknown[:5]}); the head's "
                f"classes are {classes[:20]}{' ...' if len(classes) > 20 else ''}."
            )
        return np.array([index[v] for v in labels], dtype=np.int64)
    bad = [v for v in labels if not isinstance(v, int) or not 0 <= v < n_out]
    if bad:
        raise ValueError(
            f"{what} must hold class indices 0..{n_out - 1} (the head names no classes), got e.g. {bad[:5]}. Give "
            "integer labels, or a head saved with --save-head (it records the class names)."
        )
    return np.asarray(labels, dtype=np.int64)


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
    echo: Echo,
) -> Path:
    """Score B's head on B's, A's raw and A's mapped test embeddings; write the run record; return its path."""
    from latentalign.evaluation.stitching import evaluate_stitching
    from latentalign.reports import make_record, rows_to_markdown, write_record

    if (head_path is None) == (train is None):
        raise typer.BadParameter(
            "give exactly one head: --head HEAD.safetensors (a saved linear head of model B), or --train "
            "B_TRAIN --train-labels LABELS to fit a logistic-regression head on B's train embeddings."
        )
    if train is not None and train_labels is None:
        raise typer.BadParameter("--train needs --train-labels (one label per row of B_TRAIN).")
    if head_path is not None and (train_labels is not None or save_head_path is not None):
        raise typer.BadParameter("--train-labels and --save-head go with --train, not with --head.")
    aligner = load_map(map_path)
    X, Y = np.asarray(load_matrix(a_test, "A_TEST")), np.asarray(load_matrix(b_test, "B_TEST"))
    labels = read_labels(labels_path, "LABELS", label_column)
    relative = hasattr(aligner, "transform_target")
    if train is not None:
        Y_train = np.asarray(load_matrix(train, "--train"))
        train_y = read_labels(train_labels, "--train-labels", label_column)  # type: ignore[arg-type]
        if len(train_y) != Y_train.shape[0]:
            raise ValueError(
                f"--train-labels has {len(train_y)} labels but --train has {Y_train.shape[0]} rows; give one per row."
            )
        features = np.asarray(aligner.transform_target(Y_train)) if relative else Y_train
        head, classes = fit_head(features, train_y)
        echo(f"fitted a logistic-regression head on {Y_train.shape[0]} rows of {train} ({len(classes)} classes"
             f"{', relative coordinates' if relative else ''})")
        if save_head_path is not None:
            echo(f"saved head to {save_head(head, classes, save_head_path, str(train))}")
    else:
        head, classes = load_head(head_path)  # type: ignore[arg-type]
    width = aligner.n_features_out_ if relative else Y.shape[1]
    if head.in_features != width:
        raise ValueError(
            f"the head reads {head.in_features}-d inputs, but B_TEST gives {width}-d ones"
            f"{' (relative coordinates of the map)' if relative else ''}; use the head trained on this model B"
            f"{' and this relative map' if relative else ''}."
        )
    y = _label_indices(labels, classes, head.out_features, "LABELS")
    scores = evaluate_stitching(head, X, Y, y, aligner, src=src, dst=dst)
    method = type(aligner).__name__
    pair = f"{a_test.stem} -> {b_test.stem}"
    rows = []
    for kind in ("native", "absolute", "stitched"):
        s = scores[kind] or {"accuracy": None, "macro_f1": None}
        rows.append({"pair": pair, "method": kind if kind != "stitched" else f"stitched ({method})",
                     "accuracy": s["accuracy"], "macro_f1": s["macro_f1"], "n": int(X.shape[0])})
    echo(rows_to_markdown(rows))
    if scores["absolute"] is None:
        echo("absolute: not defined (A's width differs from what the head reads)")
    record = make_record(
        "stitch", rows,
        settings={"head": "logistic_regression" if train is not None else "file", "map": method,
                  "n_classes": int(head.out_features), "src": src, "dst": dst},
        inputs={"a_test": str(a_test), "b_test": str(b_test), "labels": str(labels_path), "map": str(map_path),
                "head": str(head_path) if head_path else None, "train": str(train) if train else None,
                "train_labels": str(train_labels) if train_labels else None},
        extra={"classes": classes, "scores": scores},
    )
    path = write_record(record, out, name)
    echo(f"wrote run record {path}")
    return path
