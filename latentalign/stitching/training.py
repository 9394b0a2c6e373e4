"""Train a stitching layer on the task loss with both models frozen (Bansal et al., NeurIPS 2021;
Csiszarik et al., NeurIPS 2021).

Only the map of a :class:`~latentalign.stitching.LayerStitcher` learns: A's front and B's back keep their
weights and stay in eval mode (BatchNorm statistics and dropout frozen). The map starts from a zero-shot
fit (``fit_layer_stitcher(..., trainable_map=True)``, the papers' least-squares initialisation) or at random
(``LayerStitcher(..., map=random_stitching_map(c_a, c_b))``).

Training is Adam with a cosine learning-rate schedule. With ``validation`` (a held-out slice), the loss on
that slice is measured before training and after every epoch: training stops once it has not improved for
``patience`` epochs, and the map with the lowest held-out loss is kept, so a map initialised from a
zero-shot fit never ends worse on that slice than where it started.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from latentalign.stitching.layers import LayerStitcher

__all__ = ["train_stitching_layer"]

logger = logging.getLogger(__name__)

_SCHEDULES = ("cosine", "constant")


def _is_pair(data: Any) -> bool:
    return (
        isinstance(data, tuple)
        and len(data) == 2
        and isinstance(data[0], torch.Tensor)
        and isinstance(data[1], torch.Tensor)
    )


def _batches(data: Any, batch_size: int, generator: torch.Generator | None) -> Iterable[tuple[Any, Any]]:
    """Batches of a pair of tensors (shuffled when ``generator`` is given) or the items of an iterable."""
    if _is_pair(data):
        X, y = data
        order = torch.randperm(len(X), generator=generator) if generator is not None else torch.arange(len(X))
        for start in range(0, len(X), batch_size):
            idx = order[start : start + batch_size]
            yield X[idx], y[idx]
    else:
        yield from data


def _steps_per_epoch(data: Any, batch_size: int) -> int | None:
    if _is_pair(data):
        return math.ceil(len(data[0]) / batch_size)
    try:
        return len(data)
    except TypeError:  # an iterable without a length: the schedule advances once per epoch
        return None


def _hold_out(data: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """Split a pair of tensors into (training, held-out) at random; the held-out share is ``fraction``."""
    if not _is_pair(data):
        raise TypeError(
            "validation given as a fraction needs data as a pair of (X, y) tensors to split; pass the held-out "
            "batches themselves as validation=(X_val, y_val) or as a loader."
        )
    X, y = data
    n_val = math.ceil(fraction * len(X))
    if not 0 < n_val < len(X):
        raise ValueError(
            f"validation={fraction!r} holds out {n_val} of {len(X)} rows; pass a fraction that leaves at least "
            "one row on each side."
        )
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    val, train = order[:n_val], order[n_val:]
    return (X[train], y[train]), (X[val], y[val])


@torch.no_grad()
def _mean_loss(stitcher: LayerStitcher, data: Any, batch_size: int, loss_fn: Callable[[Any, Any], Any]) -> float:
    total, count = 0.0, 0
    for inputs, targets in _batches(data, batch_size, None):
        n = len(targets)
        total += float(loss_fn(stitcher(inputs), targets)) * n
        count += n
    if count == 0:
        raise ValueError("validation yielded no batches; pass (X, y) tensors or a non-empty loader.")
    return total / count


def _check_options(epochs: Any, batch_size: Any, validation: Any, patience: Any, lr_schedule: Any) -> float | None:
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive int, got {epochs!r}.")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if not (isinstance(patience, int) and patience >= 1):
        raise ValueError(f"patience must be a positive int (epochs without improvement), got {patience!r}.")
    if lr_schedule not in _SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {_SCHEDULES}, got {lr_schedule!r}.")
    if isinstance(validation, float):
        if not 0.0 < validation < 1.0:
            raise ValueError(
                f"validation as a fraction must lie strictly between 0 and 1, got {validation!r}; or pass "
                "held-out (X_val, y_val) tensors."
            )
        return validation
    return None


def train_stitching_layer(
    stitcher: LayerStitcher,
    data: Any,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    seed: int = 0,
    batch_size: int = 64,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    validation: Any = None,
    patience: int = 2,
    lr_schedule: str = "cosine",
) -> list[float]:
    """Train ``stitcher.map`` with Adam on the task loss; everything else stays frozen (and in eval mode).

    Parameters
    ----------
    stitcher : LayerStitcher
        Its map must have trainable parameters.
    data : (X, y) tensors or an iterable of (inputs, targets) batches (e.g. a ``DataLoader``)
        A pair of tensors is shuffled with ``seed`` every epoch and cut into batches of ``batch_size``;
        an iterable is read once per epoch as it is.
    epochs : int, default 1
        The most epochs to run (fewer when early stopping ends training).
    lr : float, default 1e-3
        Adam's peak learning rate.
    seed : int, default 0
        Seeds the batch order, the held-out split of ``validation=fraction`` and torch's random state
        during training (restored afterwards).
    batch_size : int, default 64
    loss_fn : callable, optional
        ``loss_fn(output, targets)``; default cross-entropy on B's output (class logits).
    validation : (X, y) tensors, iterable of batches, float or None, default None
        A held-out slice for early stopping: its mean loss is measured before training and after each
        epoch, training stops after ``patience`` epochs without a lower value, and the map is restored to
        the state with the lowest held-out loss (possibly its starting point). A float in (0, 1) holds out
        that share of the ``(X, y)`` tensors of ``data`` at random. ``None``: all epochs run and the last
        map is kept.
    patience : int, default 2
        Epochs without a lower held-out loss before training stops (only with ``validation``).
    lr_schedule : {"cosine", "constant"}, default "cosine"
        ``"cosine"`` anneals the learning rate from ``lr`` towards 0 over ``epochs`` (step by step; once
        per epoch for an iterable without a length); ``"constant"`` keeps ``lr``.

    Returns
    -------
    list of float
        The mean training loss of each epoch run. The stitcher is left in eval mode; its
        ``train_history_`` attribute holds ``{"train_loss": [...], "val_loss": [...], "best_epoch": k}``
        (``val_loss[0]`` is the starting point, ``best_epoch`` 0 means the start was kept; both empty / -1
        without ``validation``).

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

    With a held-out share for early stopping, the kept map is never worse on it than the start:

    >>> s = LayerStitcher(net, "1", net, "1", random_stitching_map(4, 4, seed=1))
    >>> _ = train_stitching_layer(s, (X, y), epochs=5, lr=1e-2, validation=0.2)
    >>> h = s.train_history_
    >>> min(h["val_loss"]) == h["val_loss"][h["best_epoch"]] <= h["val_loss"][0]
    True
    """
    if not isinstance(stitcher, LayerStitcher):
        raise TypeError(f"stitcher must be a LayerStitcher, got {type(stitcher).__name__}.")
    fraction = _check_options(epochs, batch_size, validation, patience, lr_schedule)
    params = [p for p in stitcher.map.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            "stitcher.map has no trainable parameters; build it with fit_layer_stitcher(..., trainable_map=True) "
            "or LayerStitcher(..., map=random_stitching_map(c_a, c_b))."
        )
    if fraction is not None:
        data, validation = _hold_out(data, fraction, seed)
    if loss_fn is None:
        loss_fn = nn.functional.cross_entropy
    trainable = {id(p) for p in params}
    frozen = [p for p in stitcher.parameters() if id(p) not in trainable and p.requires_grad]
    history: list[float] = []
    val_history: list[float] = []
    best_epoch = -1
    steps = _steps_per_epoch(data, batch_size)
    try:
        for p in frozen:
            p.requires_grad_(False)
        stitcher.eval()
        best_state = None
        if validation is not None:
            val_history.append(_mean_loss(stitcher, validation, batch_size, loss_fn))
            best_epoch, best_state = 0, copy.deepcopy(stitcher.map.state_dict())
        stitcher.map.train()
        optimizer = torch.optim.Adam(params, lr=lr)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            for epoch in range(epochs):
                total, count = 0.0, 0
                for step, (inputs, targets) in enumerate(_batches(data, batch_size, generator)):
                    if lr_schedule == "cosine":
                        done = (epoch + step / steps) if steps else epoch
                        for group in optimizer.param_groups:
                            group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * done / epochs))
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
                if validation is None:
                    logger.info("stitching layer epoch %d/%d: loss %.4f", epoch + 1, epochs, history[-1])
                    continue
                stitcher.map.eval()
                val_history.append(_mean_loss(stitcher, validation, batch_size, loss_fn))
                stitcher.map.train()
                logger.info(
                    "stitching layer epoch %d/%d: loss %.4f, held-out loss %.4f",
                    epoch + 1,
                    epochs,
                    history[-1],
                    val_history[-1],
                )
                if val_history[-1] < val_history[best_epoch]:
                    best_epoch, best_state = epoch + 1, copy.deepcopy(stitcher.map.state_dict())
                elif epoch + 1 - best_epoch >= patience:
                    logger.info("stitching layer: early stop, best held-out loss at epoch %d", best_epoch)
                    break
        if best_state is not None:
            stitcher.map.load_state_dict(best_state)
    finally:
        for p in frozen:
            p.requires_grad_(True)
        stitcher.eval()
    stitcher.train_history_ = {"train_loss": history, "val_loss": val_history, "best_epoch": best_epoch}
    return history
