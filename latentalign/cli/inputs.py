"""Reading the user's files for the commands: embedding matrices, fitted maps, item lists and labels.

User errors raise ``typer.BadParameter`` (a wrong argument) or ``ValueError`` (bad content); the command
line turns both into a one-line message and a non-zero exit code.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from latentalign._optional import import_optional

typer = import_optional("typer", "cli", purpose="the latentalign command line")

__all__ = [
    "load_matrix",
    "load_map",
    "read_pairs",
    "read_items",
    "read_labels",
    "safetensors_header",
    "load_npy",
    "check_matrix",
    "IMAGE_SUFFIXES",
    "EMBEDDINGS_KEY",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
EMBEDDINGS_KEY = "embeddings"


def safetensors_header(path: Path) -> tuple[list[str], dict[str, str]]:
    """The tensor names and the metadata of a ``.safetensors`` file, without reading the tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return list(handle.keys()), dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise typer.BadParameter(f"{str(path)!r} is not a readable safetensors file ({exc}).") from None


NPY_MAGIC = b"\x93NUMPY"


def load_npy(path: Path, what: str, *, mmap: bool = False) -> np.ndarray:
    """Read a ``.npy`` file; a file that is not one raises ``ValueError`` naming it and what is wrong.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    what : str
        The argument or option it was given as, for messages (e.g. ``"SOURCE"``).
    mmap : bool
        Memory-map the array instead of reading it (embedding matrices).

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "x.npy"
    >>> _ = path.write_text("1,2,3")
    >>> load_npy(path, "SOURCE")
    Traceback (most recent call last):
    ...
    ValueError: SOURCE '...x.npy' is not a .npy file: it does not start with the .npy signature ...
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(NPY_MAGIC))
    except OSError as exc:
        raise ValueError(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc}).") from None
    if head != NPY_MAGIC:
        found = "it is empty" if not head else f"its first bytes are {head!r}"
        raise ValueError(
            f"{what} {str(path)!r} is not a .npy file: it does not start with the .npy signature "
            f"{NPY_MAGIC!r} ({found}). Write the array with numpy.save (or `latentalign embed -o FILE.npy`)."
        )
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        if "object" in str(exc).lower() or "pickle" in str(exc).lower():
            reason = "it holds Python objects (dtype object), which are not loaded for safety"
        else:
            reason = f"its contents do not match its header, e.g. a truncated copy: {exc}"
        raise ValueError(
            f"{what} {str(path)!r} is a damaged or unsupported .npy file ({reason}). Write it again with "
            "numpy.save from a numeric array."
        ) from None


def check_matrix(X: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Raise ``ValueError`` naming the file unless ``X`` is a 2-D real numeric matrix with rows; return ``X``."""
    if X.ndim != 2:
        raise ValueError(
            f"{what} {str(path)!r} holds an array of shape {X.shape}; an embedding matrix has 2 dimensions "
            "(n_items, dim). Save one row per item."
        )
    if X.dtype.kind not in "fiu":
        raise ValueError(
            f"{what} {str(path)!r} holds values of dtype {X.dtype}; embeddings must be real numbers (float32 "
            "or float64). Save the matrix as floats."
        )
    if X.shape[0] == 0:
        raise ValueError(f"{what} {str(path)!r} holds no rows (shape {X.shape}); embed at least one item.")
    return X


def load_matrix(path: Path, what: str) -> np.ndarray:
    """Load an ``(n, d)`` embedding matrix from ``.npy``, ``.safetensors`` (tensor ``embeddings``, as
    ``latentalign embed`` writes) or an embedding store directory."""
    if path.is_dir():
        from latentalign.store import EmbeddingStore

        return check_matrix(EmbeddingStore(path).to_numpy(), path, what)
    if not path.exists():
        raise typer.BadParameter(f"{what} {str(path)!r} does not exist.")
    if path.suffix == ".npy":
        return check_matrix(load_npy(path, what, mmap=True), path, what)
    if path.suffix == ".safetensors":
        keys, meta = safetensors_header(path)
        if meta.get("format") == "latentalign" and "estimator" in meta:
            raise typer.BadParameter(
                f"{what} {str(path)!r} is a fitted map (written by `latentalign fit`), not embeddings. Pass "
                "embeddings written by `latentalign embed`, a .npy file or an embedding store directory."
            )
        if EMBEDDINGS_KEY in keys or len(keys) == 1:
            from safetensors.numpy import load_file

            return check_matrix(load_file(str(path))[EMBEDDINGS_KEY if EMBEDDINGS_KEY in keys else keys[0]], path, what)
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
    _, meta = safetensors_header(path)
    if meta.get("format") == "latentalign.embeddings":
        raise typer.BadParameter(
            f"{what} {str(path)!r} holds embeddings (written by `latentalign embed`), not a fitted map; fit "
            "one with `latentalign fit SOURCE TARGET -o MAP.safetensors`."
        )
    return load(path)


def read_pairs(path: Path, n_source: int, n_target: int, what: str = "--pairs") -> np.ndarray:
    """Read known pairs: an ``(m, 2)`` integer array, row ``k`` = (SOURCE row, TARGET row) of one item.

    ``.npy`` (an integer array), or ``.txt``/``.csv`` (two integers per line, separated by a comma or
    whitespace; a first line that is not numbers is taken as a header).

    Parameters
    ----------
    path : pathlib.Path
        The file.
    n_source, n_target : int
        Rows of SOURCE and TARGET: every index must be below them.
    what : str
        The option's name, for messages.

    Returns
    -------
    numpy.ndarray of int64, shape (m, 2)

    Raises
    ------
    typer.BadParameter
        If the file is missing or not a .npy/.txt/.csv file.
    ValueError
        If the content is not two columns of integers in range, or holds no pair.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "pairs.csv"
    >>> _ = path.write_text("source,target\\n0,3\\n2,1\\n")
    >>> read_pairs(path, 3, 4).tolist()
    [[0, 3], [2, 1]]
    >>> read_pairs(path, 2, 4)
    Traceback (most recent call last):
    ...
    ValueError: --pairs '...pairs.csv' names SOURCE row 2 (pair 1), but SOURCE has 2 rows (0 to 1). ...
    """
    if not path.is_file():
        raise typer.BadParameter(f"{what} {str(path)!r} does not exist or is not a file.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        raw = load_npy(path, what)
        if raw.dtype.kind not in "iu" and not (raw.dtype.kind == "f" and raw.size and np.all(np.mod(raw, 1) == 0)):
            raise ValueError(
                f"{what} {str(path)!r} holds values of dtype {raw.dtype}; pairs are integer row indices. Save "
                "an (m, 2) integer array, e.g. numpy.save(path, np.stack([source_rows, target_rows], 1))."
            )
    elif suffix in (".txt", ".csv"):
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        parsed: list[list[str]] = [re.split(r"[,\s]+", ln) for ln in lines]
        header = bool(parsed) and not all(re.fullmatch(r"-?\d+", v) for v in parsed[0])
        parsed = parsed[header:]
        bad = next((i for i, row in enumerate(parsed) if not all(re.fullmatch(r"-?\d+", v) for v in row)), None)
        if bad is not None:
            raise ValueError(
                f"{what} {str(path)!r} line {bad + 1 + header} is {lines[bad + header]!r}; each line must hold "
                "two integer row indices (SOURCE row, TARGET row)."
            )
        widths = {len(row) for row in parsed}
        if widths - {2}:
            raise ValueError(
                f"{what} {str(path)!r} has lines of {sorted(widths)} values; each line must hold exactly two "
                "integers (SOURCE row, TARGET row)."
            )
        raw = np.array(parsed, dtype=np.int64).reshape(-1, 2)
    else:
        raise typer.BadParameter(f"{what} must be a .npy, .txt or .csv file of row-index pairs, got {str(path)!r}.")
    if raw.ndim != 2 or raw.shape[1] != 2:
        raise ValueError(
            f"{what} {str(path)!r} holds an array of shape {raw.shape}; expected (m, 2): one (SOURCE row, "
            "TARGET row) pair per row."
        )
    if raw.shape[0] == 0:
        raise ValueError(f"{what} {str(path)!r} holds no pairs; give at least one (SOURCE row, TARGET row) pair.")
    pairs = raw.astype(np.int64)
    for col, side, n in ((0, "SOURCE", n_source), (1, "TARGET", n_target)):
        out = np.flatnonzero((pairs[:, col] < 0) | (pairs[:, col] >= n))
        if out.size:
            raise ValueError(
                f"{what} {str(path)!r} names {side} row {pairs[out[0], col]} (pair {out[0]}), but {side} has {n} "
                f"rows (0 to {n - 1}). Row indices count from 0; fix the file or pass the matching embeddings."
            )
    return pairs


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
                raise typer.BadParameter(
                    "--column only applies to .csv and .parquet inputs; a .txt has one item per line."
                )
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
            ids = (
                _read_table_column(path, id_column, "INPUT", "--id-column")[0]
                if id_column
                else list(range(len(values)))
            )
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
        digest.update(
            (f"{item}\x00{item.stat().st_size}" if isinstance(item, Path) else item).encode("utf-8", "surrogatepass")
        )
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
        arr = load_npy(path, what)
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
