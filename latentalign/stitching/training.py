"""Train a stitching layer on the task loss with both models frozen (Bansal et al., NeurIPS 2021;
Csiszarik et al., NeurIPS 2021).

Only the map of a :class:`~latentalign.stitching.LayerStitcher` learns: A's front and B's back keep their
weights and stay in eval mode (BatchNorm statistics and dropout frozen). The map starts from a zero-shot
fit (``fit_layer_stitcher(..., trainable_map=True)``) or at random
(``LayerStitcher(..., map=random_stitching_map(c_a, c_b))``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from latentalign.stitching.layers import LayerStitcher

__all__ = ["train_stitching_layer"]

logger = logging.getLogger(__name__)


def _batches(data: Any, batch_size: int, generator: torch.Generator) -> Iterable[tuple[Any, Any]]:
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        X, y = data
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X), batch_size):
            idx = order[start : start + batch_size]
            yield X[idx], y[idx]
    else:
        yield from data


def train_stitching_layer(
    stitcher: LayerStitcher,
    data: Any,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    seed: int = 0,
    batch_size: int = 64,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
) -> list[float]:
    """Train ``stitcher.map`` with Adam on the task loss; everything else stays frozen.

    Parameters
    ----------
    stitcher : LayerStitcher
        Its map must have trainable parameters.
    data : (X, y) tensors or an iterable of (inputs, targets) batches (e.g. a ``DataLoader``)
        A pair of tensors is shuffled with ``seed`` every epoch and cut into batches of ``batch_size``;
        an iterable is read once per epoch as it is.
    epochs : int, default 1
    lr : float, default 1e-3
    seed : int, default 0
        Seeds the batch order and torch's random state during training (restored afterwards).
    batch_size : int, default 64
    loss_fn : callable, optional
        ``loss_fn(output, targets)``; default cross-entropy on B's output (class logits).

    Returns
    -------
    list of float
        The mean training loss of each epoch. The stitcher is left in eval mode.

    Examples
    --------
    >>> import torch
    >>> from latentalign.stitching import LayerStitcher, random_stitching_map
    >>> torch.manual_seed(0) and None
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> X = torch.randn(256, 2)
    >>> y = (X[:, 0] > 0).long()
    >>> s = LayerStitcher(net, "1", net, "1", random_stitching_map(4, 4))
    >>> losses = train_stitching_layer(s, (X, y), epochs=5, lr=1e-2)
    >>> losses[-1] < losses[0], net[0].weight.requires_grad
    (True, True)
    """
    if not isinstance(stitcher, LayerStitcher):
        raise TypeError(f"stitcher must be a LayerStitcher, got {type(stitcher).__name__}.")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive int, got {epochs!r}.")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    params = [p for p in stitcher.map.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            "stitcher.map has no trainable parameters; build it with fit_layer_stitcher(..., trainable_map=True) "
            "or LayerStitcher(..., map=random_stitching_map(c_a, c_b))."
        )
    if loss_fn is None:
        loss_fn = nn.functional.cross_entropy
    trainable = {id(p) for p in params}
    frozen = [p for p in stitcher.parameters() if id(p) not in trainable and p.requires_grad]
    history: list[float] = []
    try:
        for p in frozen:
            p.requires_grad_(False)
        stitcher.eval()
        stitcher.map.train()
        optimizer = torch.optim.Adam(params, lr=lr)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            for epoch in range(epochs):
                total, count = 0.0, 0
                for inputs, targets in _batches(data, batch_size, generator):
                    optimizer.zero_grad()
                    loss = loss_fn(stitcher(inputs), targets)
                    loss.backward()
                    optimizer.step()
                    n = len(targets)
                    total += float(loss.detach()) * n
                    count += n
                if count == 0:
                    raise ValueError("data yielded no batches; pass (X, y) tensors or a non-empty loader.")
                history.append(total / count)
                logger.info("stitching layer epoch %d/%d: loss %.4f", epoch + 1, epochs, history[-1])
    finally:
        for p in frozen:
            p.requires_grad_(True)
        stitcher.eval()
    return history
