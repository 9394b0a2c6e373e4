"""A small family of conv + BatchNorm CNNs for 28x28 grey images, trained on Fashion-MNIST and cached.

:class:`SmallCNN` is an ``nn.Sequential`` of named blocks, ``block1`` to ``block4`` then ``head``, so the
output of each block is a natural place to cut the network (see :func:`cut_points`). ``width`` multiplies
every block's channel count (8, 16, 32, 32 at width 1); the blocks' outputs are 14x14, 7x7, 7x7 and 7x7.

:func:`train_small_cnn` trains one on the first ``n_train`` images of the Fashion-MNIST training split
(the same images for every seed; the seed sets the initial weights and the batch order) with Adam on the
CPU. A few thousand images and two epochs reach about 85 % test accuracy in well under a minute on two
cores. The trained weights are cached by ``(width, seed, n_train, epochs)`` as a checksummed safetensors
file under ``models_dir()/small_cnns`` (see :mod:`latentalign._paths`), so a second call only reads them.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "SmallCNN",
    "cut_points",
    "block_channels",
    "load_fashion_tensors",
    "train_small_cnn",
    "evaluate_accuracy",
    "cache_path",
]

logger = logging.getLogger(__name__)

_BASE_CHANNELS = (8, 16, 32, 32)
_FORMAT = "latentalign.SmallCNN"
_FORMAT_VERSION = "1"
# pixel statistics of the Fashion-MNIST training split (images scaled to [0, 1])
_MEAN, _STD = 0.2860, 0.3530


def block_channels(width: float = 1.0) -> tuple[int, ...]:
    """Output channels of ``block1`` to ``block4`` for a width multiplier.

    Examples
    --------
    >>> block_channels(1), block_channels(2), block_channels(0.5)
    ((8, 16, 32, 32), (16, 32, 64, 64), (4, 8, 16, 16))
    """
    if not (isinstance(width, (int, float)) and np.isfinite(width) and width > 0):
        raise ValueError(f"width must be a positive number (a channel multiplier), got {width!r}.")
    return tuple(max(1, round(c * width)) for c in _BASE_CHANNELS)


def _block(c_in: int, c_out: int, *, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(nn.Sequential):
    """Four conv + BatchNorm + ReLU blocks and a linear head, for ``(n, 1, 28, 28)`` images.

    Parameters
    ----------
    width : float, default 1.0
        Channel multiplier (see :func:`block_channels`).
    n_classes : int, default 10

    Examples
    --------
    >>> import torch
    >>> model = SmallCNN(width=1).eval()
    >>> [name for name, _ in model.named_children()]
    ['block1', 'block2', 'block3', 'block4', 'head']
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, width: float = 1.0, n_classes: int = 10) -> None:
        c1, c2, c3, c4 = block_channels(width)
        super().__init__(
            OrderedDict(
                block1=_block(1, c1, pool=True),
                block2=_block(c1, c2, pool=True),
                block3=_block(c2, c3, pool=False),
                block4=_block(c3, c4, pool=False),
                head=nn.Sequential(nn.Flatten(), nn.Linear(c4 * 7 * 7, n_classes)),
            )
        )
        self.width = width


def cut_points(model: nn.Module | None = None) -> list[str]:
    """The names of the blocks after which a :class:`SmallCNN` can be cut, shallow to deep.

    A cut named ``"block2"`` means: run the network up to and including ``block2``; its output is then the
    input of ``block3``. These names are the ``cut_a`` / ``cut_b`` of
    :class:`latentalign.stitching.LayerStitcher`.

    Examples
    --------
    >>> cut_points()
    ['block1', 'block2', 'block3', 'block4']
    """
    if model is None:
        model = SmallCNN()
    return [name for name, _ in model.named_children() if name != "head"]


def load_fashion_tensors(split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of a Fashion-MNIST split, standardised, as ``(n, 1, 28, 28)`` float32, and labels.

    Parameters
    ----------
    split : {"train", "test"}
    n : int, optional
        How many images (the first ``n`` of the split); all of them by default.
    """
    all_images, all_labels = _fashion_split(split)
    total = len(all_labels)
    if n is not None and not (isinstance(n, (int, np.integer)) and 0 < n <= total):
        raise ValueError(f"n must be an integer from 1 to {total} for the {split} split, got {n!r}.")
    stop = total if n is None else int(n)
    images = torch.from_numpy(all_images[:stop].astype(np.float32) / 255.0)
    X = ((images - _MEAN) / _STD).unsqueeze(1)
    y = torch.from_numpy(all_labels[:stop].astype(np.int64))
    return X, y


@functools.lru_cache(maxsize=2)
def _fashion_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split, decompressed once per process (the files are read-only here)."""
    from latentalign.datasets import load_fashion_mnist

    data = load_fashion_mnist(split)
    return data.images, data.labels


def cache_path(width: float, seed: int, n_train: int, epochs: int) -> Path:
    """Where :func:`train_small_cnn` caches the weights of one configuration.

    Examples
    --------
    >>> cache_path(1, 0, 4000, 2).name
    'smallcnn_w1_s0_n4000_e2.safetensors'
    """
    from latentalign._paths import models_dir

    return models_dir() / "small_cnns" / f"smallcnn_w{width:g}_s{seed}_n{n_train}_e{epochs}.safetensors"


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on ``(X, y)``, in eval mode and without gradients.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> evaluate_accuracy(model, torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.long)) in (0.0, 1.0)
    True
    """
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(X), batch_size):
        correct += int((model(X[start : start + batch_size]).argmax(-1) == y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(X), 1)


def train_small_cnn(
    width: float = 1.0,
    seed: int = 0,
    *,
    n_train: int = 5000,
    epochs: int = 2,
    batch_size: int = 64,
    lr: float = 3e-3,
    cache: bool = True,
) -> SmallCNN:
    """A :class:`SmallCNN` trained on the first ``n_train`` Fashion-MNIST training images (cached).

    Parameters
    ----------
    width : float, default 1.0
        Channel multiplier.
    seed : int, default 0
        Sets the initial weights and the batch order (the images are the same for every seed).
    n_train : int, default 5000
    epochs : int, default 2
    batch_size : int, default 64
    lr : float, default 3e-3
        Adam's learning rate.
    cache : bool, default True
        Read the weights from :func:`cache_path` when they are there (and sound), else train and write
        them there. ``batch_size`` and ``lr`` are not part of the cache key: change them with
        ``cache=False``.

    Returns
    -------
    SmallCNN
        In eval mode, on the CPU, float32.
    """
    path = cache_path(width, seed, n_train, epochs)
    model = SmallCNN(width)
    if cache and path.is_file():
        state = _read_cached(path)
        if state is not None:
            model.load_state_dict(state, strict=True)
            return model.eval()
    X, y = load_fashion_tensors("train", n_train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(width)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(X), generator=generator)
            total = 0.0
            for start in range(0, len(X), batch_size):
                idx = order[start : start + batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(X[idx]), y[idx])
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            logger.info("SmallCNN width=%g seed=%d epoch %d: loss %.4f", width, seed, epoch + 1, total / len(X))
    model.eval()
    if cache:
        _write_cached(model, path, width=width, seed=seed, n_train=n_train, epochs=epochs)
    return model


def _described(header: dict[str, str]) -> str:
    return json.dumps([header.get(key, "") for key in ("format", "format_version", "config")])


def _write_cached(model: SmallCNN, path: Path, **config: float) -> None:
    from safetensors.torch import save_file

    from latentalign.persistence import content_digest

    tensors = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    header = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "config": json.dumps(config, sort_keys=True)}
    header["checksum"] = content_digest(tensors, _described(header))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=header)
    os.replace(tmp, path)


def _read_cached(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached state dict, or None (with a warning in the log) when the file is not sound."""
    from latentalign.exceptions import PersistenceError
    from latentalign.persistence import content_digest, read_safetensors

    try:
        _, header, tensors = read_safetensors(path, "SmallCNN")
    except PersistenceError as exc:
        logger.warning("ignoring the cached SmallCNN weights: %s", exc)
        return None
    if header.get("format") != _FORMAT or header.get("checksum") != content_digest(tensors, _described(header)):
        logger.warning("ignoring the cached SmallCNN weights at %s: failed its integrity check; retraining", path)
        return None
    return tensors
