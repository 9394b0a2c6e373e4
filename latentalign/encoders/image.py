"""Tensor-only image preprocessing: to RGB, resize, center-crop, normalise (no torchvision needed).

open_clip's and timm's own transforms are torchvision pipelines; latentalign installs those libraries
without torchvision (which would replace a CPU torch with a CUDA build), so image encoders use
:class:`ImagePreprocess` instead: ``torch.nn.functional.interpolate`` (bicubic or bilinear, antialiased)
plus PIL for decoding. Grayscale inputs (e.g. 28x28 Fashion-MNIST digits) are repeated to three channels.

Accepted images
---------------
* ``PIL.Image.Image`` (any mode; converted to RGB),
* a path (``str`` or ``pathlib.Path``) to an image file,
* a numpy array ``(H, W)`` or ``(H, W, C)`` (channels last, C in 1, 3, 4),
* a torch tensor ``(H, W)`` or ``(C, H, W)`` (channels first).

Integer arrays are read on the 0..255 scale; floating arrays on the 0..1 scale. A whole batch can also be
one array: numpy ``(n, H, W)`` / ``(n, H, W, C)`` or torch ``(n, C, H, W)``; it is resized in one call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ImagePreprocess", "to_rgb_tensor"]

_RESIZE_MODES = ("shortest", "squash")
_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def _from_hwc(arr: np.ndarray, what: str) -> torch.Tensor:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{what} must have shape (H, W) or (H, W, C) with C in (1, 3, 4) (channels last), got {arr.shape}."
        )
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # e.g. np.asarray(PIL image); torch wants writable memory
        arr = arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1)


def _scale_to_255(t: torch.Tensor) -> torch.Tensor:
    if t.dtype == torch.uint8 or not t.is_floating_point():
        return t.to(torch.float32)
    return t.to(torch.float32) * 255.0


def _channels_to_rgb(t: torch.Tensor, what: str) -> torch.Tensor:
    c = t.shape[-3]
    if c == 1:
        return t.expand(*t.shape[:-3], 3, *t.shape[-2:])
    if c == 3:
        return t
    if c == 4:
        return t[..., :3, :, :]
    raise ValueError(f"{what} has {c} channels; expected 1 (grayscale), 3 (RGB) or 4 (RGBA).")


def to_rgb_tensor(image: Any) -> torch.Tensor:
    """Convert one image to a float32 tensor ``(3, H, W)`` on the 0..255 scale.

    Examples
    --------
    >>> import numpy as np
    >>> to_rgb_tensor(np.full((28, 28), 255, dtype=np.uint8)).shape
    torch.Size([3, 28, 28])
    """
    from PIL import Image

    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image path {str(path)!r} does not exist or is not a file.")
        with Image.open(path) as im:
            image = im.convert("RGB")
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
                # composite on white, as a viewer shows it (clip-art PNGs have transparent backgrounds)
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, rgba)
            image = image.convert("RGB")
        t = _from_hwc(np.asarray(image), "image")
    elif isinstance(image, np.ndarray):
        t = _from_hwc(image, "a numpy image")
    elif isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 2:
            t = t.unsqueeze(0)
        if t.ndim != 3:
            raise ValueError(f"a tensor image must have shape (H, W) or (C, H, W), got {tuple(t.shape)}.")
    else:
        raise TypeError(
            f"cannot read an image from {type(image).__name__}; pass a PIL image, a path, a numpy array "
            "(H, W[, C]) or a tensor (C, H, W)."
        )
    return _channels_to_rgb(_scale_to_255(t), "image")


def _batch_array_to_tensor(batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(batch, np.ndarray):
        if batch.ndim == 3:
            batch = batch[..., None]
        if batch.ndim != 4 or batch.shape[3] not in (1, 3, 4):
            raise ValueError(
                "a numpy batch of images must have shape (n, H, W) or (n, H, W, C) with C in (1, 3, 4), "
                f"got {batch.shape}."
            )
        arr = np.ascontiguousarray(batch)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy()).permute(0, 3, 1, 2)
    else:
        t = batch.detach().cpu()
        if t.ndim == 3:
            t = t.unsqueeze(1)
        if t.ndim != 4:
            raise ValueError(f"a tensor batch of images must have shape (n, C, H, W), got {tuple(t.shape)}.")
    return _channels_to_rgb(_scale_to_255(t), "the image batch")


class ImagePreprocess:
    """Resize, center-crop and normalise images into a model-ready batch ``(n, 3, size, size)``.

    The output is ``(x * scale - mean) / std`` per channel, where ``x`` is the resized RGB image on the
    0..255 scale. CLIP: ``scale=1/255`` with the OpenAI mean/std; EfficientNet-Lite: ``scale=1``,
    ``mean=127``, ``std=128``.

    Parameters
    ----------
    size : int
        Output side in pixels.
    mean, std : float or sequence of 3 floats
        Per-channel normalisation applied after scaling.
    scale : float
        Factor applied to the 0..255 image before normalising.
    resize_mode : {"shortest", "squash"}
        ``"shortest"`` resizes the shorter side to ``size`` then center-crops (keeps aspect ratio);
        ``"squash"`` resizes straight to ``size x size``.
    interpolation : {"bicubic", "bilinear", "nearest"}
        Resampling filter; bicubic and bilinear are antialiased when shrinking.
    crop_pct : float
        With ``resize_mode="shortest"``, the shorter side is first resized to ``floor(size / crop_pct)``
        (timm's evaluation convention; 1.0 crops nothing beyond the aspect ratio).

    Examples
    --------
    >>> import numpy as np
    >>> pre = ImagePreprocess(32, mean=127.0, std=128.0, scale=1.0)
    >>> pre(np.zeros((2, 28, 28), dtype=np.uint8)).shape
    torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        size: int,
        *,
        mean: float | Sequence[float] = (0.0, 0.0, 0.0),
        std: float | Sequence[float] = (1.0, 1.0, 1.0),
        scale: float = 1.0 / 255.0,
        resize_mode: str = "shortest",
        interpolation: str = "bicubic",
        crop_pct: float = 1.0,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"size must be a positive integer (pixels), got {size!r}.")
        if resize_mode not in _RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {_RESIZE_MODES}, got {resize_mode!r}.")
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}.")
        if not 0.0 < float(crop_pct) <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}.")
        self.size = int(size)
        self.crop_pct = float(crop_pct)
        self.mean = self._triple(mean, "mean")
        self.std = self._triple(std, "std")
        if any(s == 0 for s in self.std):
            raise ValueError(f"std must be non-zero, got {self.std}.")
        self.scale = float(scale)
        self.resize_mode = resize_mode
        self.interpolation = interpolation

    @staticmethod
    def _triple(value: float | Sequence[float], name: str) -> tuple[float, float, float]:
        if np.isscalar(value):
            vals = [float(cast(float, value))] * 3
        else:
            vals = [float(v) for v in cast(Sequence[float], value)]
        if len(vals) != 3:
            raise ValueError(f"{name} must be a float or 3 floats (one per RGB channel), got {value!r}.")
        return (vals[0], vals[1], vals[2])

    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings (recorded in encoder metadata)."""
        return {
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": self.scale,
            "resize_mode": self.resize_mode,
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"ImagePreprocess({args})"

    # -------------------------------------------------------------- geometry
    def _resize(self, t: torch.Tensor) -> torch.Tensor:
        """Resize a float batch ``(n, 3, H, W)`` on the 0..255 scale."""
        h, w = t.shape[-2:]
        s = self.size
        r = int(math.floor(s / self.crop_pct))
        if self.resize_mode == "squash":
            out_hw = (s, s)
        elif h <= w:
            out_hw = (r, max(r, int(math.floor(w * r / h + 0.5))))
        else:
            out_hw = (max(r, int(math.floor(h * r / w + 0.5))), r)
        if (h, w) != out_hw:
            kwargs: dict[str, Any] = {"mode": self.interpolation}
            if self.interpolation != "nearest":
                kwargs.update(align_corners=False, antialias=True)
            t = F.interpolate(t, size=out_hw, **kwargs).clamp_(0.0, 255.0)
        oh, ow = out_hw
        top, left = int(round((oh - s) / 2.0)), int(round((ow - s) / 2.0))
        return t[..., top : top + s, left : left + s]

    def _normalize(self, t: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=t.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=t.dtype).view(1, 3, 1, 1)
        return (t * self.scale - mean) / std

    def __call__(self, images: Any) -> torch.Tensor:
        """Return a float32 batch ``(n, 3, size, size)``."""
        if isinstance(images, (np.ndarray, torch.Tensor)):
            batch = self._resize(_batch_array_to_tensor(images).contiguous())
        else:
            items = [self._resize(to_rgb_tensor(im).unsqueeze(0)) for im in images]
            if not items:
                return torch.empty((0, 3, self.size, self.size), dtype=torch.float32)
            batch = torch.cat(items, dim=0)
        return self._normalize(batch.to(torch.float32)).contiguous()
