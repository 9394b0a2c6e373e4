"""``latentalign embed``: encode a file of texts, words or images through a resumable store into a matrix."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from latentalign._progress import progress_enabled
from latentalign.cli.application import command, typer
from latentalign.cli.inputs import EMBEDDINGS_KEY, read_items
from latentalign.cli.logs import silence_progress
from latentalign.cli.options import check_device, check_output
from latentalign.cli.records import save_run_record

__all__ = ["embed", "run_embed"]

Echo = Callable[[str], Any]
logger = logging.getLogger(__name__)


@command()
def embed(
    ctx: typer.Context,  # type: ignore[name-defined]  # typer is imported lazily, as a module value
    model: str = typer.Argument(..., help="encoder name (latentalign list models), or st:/hf:/onnx:... names"),
    input_path: Path = typer.Argument(
        ...,
        metavar="INPUT",
        exists=True,
        help="texts/words: .txt (one per line) or .csv/.parquet (--column); images: a directory or a manifest",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="output .safetensors (tensor 'embeddings') or .npy; default INPUT__MODEL.safetensors"
    ),
    column: str | None = typer.Option(None, help="column of a .csv/.parquet INPUT to embed"),
    id_column: str | None = typer.Option(None, help="column of ids (default: row numbers; image files: paths)"),
    store: Path | None = typer.Option(None, help="resumable embedding store directory (default OUT with .store)"),
    batch_size: int = typer.Option(64, min=1, help="inputs per forward pass"),
    shard_size: int = typer.Option(4096, min=1, help="rows per store shard (the unit a killed run resumes from)"),
    device: str | None = typer.Option(None, help="torch device for torch encoders, e.g. cuda:0 (default cpu)"),
    normalize: bool = typer.Option(False, "--normalize/--no-normalize", help="L2-normalise each embedding"),
    overwrite: bool = typer.Option(False, help="discard what the store holds and encode again"),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="show progress bars (also: latentalign --no-progress embed ...)"
    ),
    record_dir: Path = typer.Option(Path("runs"), "--record-dir", help="directory for the JSON run record"),
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
    started = time.perf_counter()
    if not progress:
        ctx.call_on_close(silence_progress())
    progress = progress and progress_enabled()
    check_output(record_dir, "--record-dir", directory=True)
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in model)
    out = out if out is not None else Path(f"{input_path.stem}__{slug}.safetensors")
    path = run_embed(
        model,
        input_path,
        out=out,
        store_dir=store,
        column=column,
        id_column=id_column,
        batch_size=batch_size,
        shard_size=shard_size,
        device=device,
        normalize=normalize,
        overwrite=overwrite,
        progress=progress,
        echo=typer.echo,
    )
    store_dir = store if store is not None else out.with_suffix(".store")
    save_run_record(
        "embed",
        [{"pair": input_path.stem, "method": model, "n": _rows(store_dir), "normalize": normalize}],
        record_dir,
        started=started,
        echo=typer.echo,
        settings={
            "model": model,
            "column": column,
            "id_column": id_column,
            "batch_size": batch_size,
            "shard_size": shard_size,
            "device": device,
            "normalize": normalize,
            "overwrite": overwrite,
        },
        inputs={"input": input_path, "store": store_dir},
        outputs=[path],
    )


def _rows(store_dir: Path) -> int | None:
    done = _manifest_progress(store_dir)
    return None if done is None else done[0]


def _runtime_load_error(model: str, exc: Exception) -> ValueError | None:
    """An inference runtime's own exception while loading ``model``, as a ``ValueError`` naming the file.

    onnxruntime raises classes of its own (not ``ValueError``/``OSError``) for a file that is not a model;
    only those are translated (``None`` for anything else, which keeps its traceback).
    """
    if not type(exc).__module__.startswith("onnxruntime"):
        return None
    path = model.partition(":")[2] if model.startswith("onnx:") else model
    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return ValueError(
        f"MODEL {path!r} could not be loaded as an ONNX model ({reason}). Give a .onnx file exported from "
        "the model (e.g. with torch.onnx.export or optimum), or a registered encoder (latentalign list models)."
    )


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
    check_output(out, "--out", directory=False)
    check_output(store_dir, "--store", directory=True)
    if device:
        check_device(device)
    logger.info("loading encoder %s (the first load may unpack or read its weights for a while)", model)
    try:
        encoder = load_encoder(model, **({"device": device} if device else {}))
    except TypeError as exc:
        if device and "device" in str(exc):
            raise typer.BadParameter(
                f"the encoder {model!r} takes no --device (it runs where its library runs); drop --device."
            ) from None
        raise
    except Exception as exc:
        clear = _runtime_load_error(model, exc)
        if clear is None:
            raise
        raise clear from exc
    items, ids, content_sha = read_items(input_path, encoder.modality, column=column, id_column=id_column)
    before = None if overwrite else _manifest_progress(store_dir)
    logger.info("embedding %d items with %s into store %s", len(items), model, store_dir)
    try:
        store = embed(
            encoder,
            items,
            ids,
            dataset=input_path.stem,
            store_dir=store_dir,
            shard_size=shard_size,
            batch_size=batch_size,
            normalize=normalize,
            settings={"inputs_sha256": content_sha},
            overwrite=overwrite,
            progress=progress,
        )
    except ValueError as exc:  # includes PersistenceError: say it in CLI words
        raise ValueError(_cli_wording(str(exc))) from exc
    if before is not None and before[1]:
        echo(f"store {store_dir} was already complete: read back {len(store)} rows, nothing re-encoded")
    elif before is not None and before[0] > 0:
        echo(
            f"resumed store {store_dir}: rows 0-{before[0] - 1} were already written, encoded rows "
            f"{before[0]}-{len(store) - 1}"
        )
    else:
        echo(f"encoded {len(store)} items into store {store_dir}")
    X = store.to_numpy()
    meta = {
        "format": "latentalign.embeddings",
        "encoder": encoder.name,
        "model": model,
        "model_id": str(encoder.metadata.get("model_id")),
        "modality": encoder.modality,
        "normalize": str(bool(normalize)).lower(),
        "n": str(X.shape[0]),
        "dim": str(X.shape[1]),
        "input": str(input_path),
        "store": str(store_dir),
        "store_key": str(store.key),
    }
    _atomic_save_embeddings(X, out, meta)
    echo(f"embedded {X.shape[0]} items with {model} ({X.shape[1]} dims, normalize={normalize}); ids in {store_dir}")
    echo(f"saved embeddings to {out}")
    return out
