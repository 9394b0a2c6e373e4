"""Linear classifier heads for ``latentalign stitch``: load one, fit one on B's embeddings, save one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from latentalign.cli.application import typer
from latentalign.cli.inputs import safetensors_header

__all__ = ["HEAD_FORMAT", "linear_head", "load_head", "fit_head", "save_head", "label_indices"]

#: The ``format`` metadata of a head written by ``--save-head``.
HEAD_FORMAT = "latentalign.linear_head"


# ---------------------------------------------------------------------------------------------- stitch
def linear_head(weight: np.ndarray, bias: np.ndarray | None) -> Any:
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
        raise typer.BadParameter(
            f"--head must be a .safetensors file with 'weight' and 'bias' tensors, got {str(path)!r}."
        )
    keys, meta = safetensors_header(path)
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
    return linear_head(W, b), classes


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
    return linear_head(W, b), clf.classes_.tolist()


def save_head(head: Any, classes: list[Any], path: Path, source: str) -> Path:
    from safetensors.numpy import save_file

    if path.suffix != ".safetensors":
        raise typer.BadParameter(f"--save-head must end in .safetensors, got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"weight": head.weight.detach().numpy().copy(), "bias": head.bias.detach().numpy().copy()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(
        tensors,
        str(tmp),
        metadata={
            "format": HEAD_FORMAT,
            "classes": json.dumps(classes),
            "model": "LogisticRegression",
            "trained_on": source,
        },
    )
    os.replace(tmp, path)
    return path


def label_indices(labels: list[Any], classes: list[Any] | None, n_out: int, what: str) -> np.ndarray:
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
