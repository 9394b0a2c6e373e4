"""Adapter for timm image models (extra ``timm``): ``forward_features`` + pooling.

timm is installed with ``pip install --no-deps timm`` and imported without torchvision (see
:mod:`latentalign.encoders._torchvision_stub`): model building and forward passes work; timm's own
data transforms, datasets and FX feature extraction (which need torchvision) do not, so images are
prepared with :class:`~latentalign.encoders.image.ImagePreprocess`, configured from the model's
``pretrained_cfg`` (input size, mean/std, interpolation, crop_pct: timm's evaluation transform).
Pretrained tags download weights (network); offline, pass a local ``checkpoint``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from latentalign.encoders._hub import load_from_hub
from latentalign.encoders._torchvision_stub import import_without_torchvision
from latentalign.encoders._weights import file_fingerprint, load_state_dict_file, module_fingerprint, seeded
from latentalign.encoders.base import BaseEncoder, resolve_device
from latentalign.encoders.image import ImagePreprocess
from latentalign.encoders.torch_module import run_with_hooks

__all__ = ["TimmEncoder"]

_POOLINGS = ("head", "avg", "max", "cls")


class TimmEncoder(BaseEncoder):
    """Image embeddings from a timm model.

    Parameters
    ----------
    model : str or torch.nn.Module
        A timm architecture name (``timm.list_models()``) or a model built with ``timm.create_model``.
    pretrained : bool
        Load timm's pretrained weights (downloads: needs network).
    checkpoint : str or pathlib.Path, optional
        Local state dict (``.safetensors`` or a torch file read with ``weights_only=True``).
    pooling : {"head", "avg", "max", "cls"}
        ``"head"``: the model's own pooling (``forward_head(pre_logits=True)``); ``"avg"``/``"max"``:
        over spatial positions (CNNs) or non-prefix tokens (ViTs); ``"cls"``: the first token (ViTs).
    preprocess : callable, optional
        Turns a batch of images into ``(n, 3, H, W)``; defaults to :class:`ImagePreprocess` from the
        model's data config.
    seed : int, optional
        Seed for random initialisation (the caller's RNG is untouched).
    device : str or torch.device, optional
    name : str, optional
    **model_kwargs
        Passed to ``timm.create_model``.

    Notes
    -----
    ``encode(layers=...)``: ``"all"`` is the model's ``feature_info`` modules (its stages or blocks, e.g.
    ``"layer1"`` ... ``"layer4"`` of a ResNet, ``"blocks.0"`` ... of a ViT); any nested module path of
    ``forward_features`` can be named. They are captured by forward hooks in one ``forward_features`` pass
    and pooled over space (``(n, C, H, W)`` maps) or over tokens (``(n, T, C)``): max for
    ``pooling="max"``, mean otherwise (``"head"`` applies only to the final embedding).
    """

    modality = "image"
    _libraries = ("numpy", "torch", "timm")

    def __init__(
        self,
        model: str | torch.nn.Module = "resnet18",
        *,
        pretrained: bool = False,
        checkpoint: str | Path | None = None,
        pooling: str = "head",
        preprocess: Callable[[Any], torch.Tensor] | None = None,
        seed: int | None = None,
        device: str | torch.device | None = None,
        name: str | None = None,
        **model_kwargs: Any,
    ) -> None:
        timm = import_without_torchvision("timm", "timm", purpose="TimmEncoder")
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}.")
        self.seed = seed
        # a timm model: forward_features, forward_head and num_features are not on nn.Module's type
        net: Any
        if isinstance(model, str):
            if not timm.list_models(model):
                raise ValueError(f"unknown timm model {model!r}; see timm.list_models() for the names.")
            self.model_name = model
            with seeded(seed):
                create = lambda: timm.create_model(model, pretrained=pretrained, num_classes=0, **model_kwargs)  # noqa: E731
                net = load_from_hub(create, f"timm:{model}") if pretrained else create()
        elif isinstance(model, torch.nn.Module):
            self.model_name = getattr(model, "default_cfg", {}).get("architecture", type(model).__name__)
            net = model
        else:
            raise TypeError(f"model must be a timm model name or an nn.Module, got {type(model).__name__}.")
        self._checkpoint: str | None = None
        self._checkpoint_sha: str | None = None
        if checkpoint is not None:
            state = load_state_dict_file(checkpoint)
            # strict=False: a classifier head in the checkpoint is ignored (the encoder has num_classes=0)
            missing, _ = net.load_state_dict(state, strict=False)
            if missing:
                raise ValueError(
                    f"checkpoint {str(checkpoint)!r} does not match timm model {self.model_name!r}: "
                    f"{len(missing)} missing keys (e.g. {missing[:3]}). Pass the architecture it was saved from."
                )
            self._checkpoint = str(Path(checkpoint).resolve())
        if pooling == "cls" and not getattr(net, "num_prefix_tokens", 0):
            raise ValueError(f"pooling='cls' needs a model with a class token; {self.model_name!r} has none.")
        self.pretrained = bool(pretrained)
        self.pooling = pooling
        self.device = resolve_device(device)
        self.model: Any = net.to(self.device).eval()
        self.dim = (
            int(getattr(net, "head_hidden_size", None) or net.num_features)
            if pooling == "head"
            else int(net.num_features)
        )
        self._timm = timm
        self.preprocess = preprocess if preprocess is not None else self._default_preprocess()
        self.name = name or self.model_name
        self._fingerprint: str | None = None

    def _default_preprocess(self) -> ImagePreprocess:
        cfg = self._timm.data.resolve_data_config({}, model=self.model)
        _, h, w = cfg["input_size"]
        if h != w:
            raise ValueError(f"non-square input size {(h, w)} is not supported by the default preprocessing.")
        interpolation = cfg.get("interpolation", "bicubic")
        return ImagePreprocess(
            int(h),
            mean=cfg["mean"],
            std=cfg["std"],
            scale=1.0 / 255.0,
            interpolation=interpolation if interpolation in ("bicubic", "bilinear", "nearest") else "bicubic",
            crop_pct=float(cfg.get("crop_pct", 1.0)),
        )

    def _modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def _metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "model_id": f"timm:{self.model_name}" + (":pretrained" if self.pretrained else ""),
            "layer": "forward_features",
            "pooling": self.pooling,
            "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
            "seed": self.seed,
        }
        cfg = getattr(self.preprocess, "config", None)
        meta["preprocessing"] = cfg() if callable(cfg) else getattr(self.preprocess, "__qualname__", None)
        if self._checkpoint is not None:
            if self._checkpoint_sha is None:
                self._checkpoint_sha = file_fingerprint(self._checkpoint)
            meta.update(checkpoint=self._checkpoint, checkpoint_sha256=self._checkpoint_sha)
        elif not self.pretrained and self.seed is None:
            if self._fingerprint is None:
                self._fingerprint = module_fingerprint(self.model)
            meta["weights_fingerprint"] = self._fingerprint
        return meta

    def _pool(self, feats: torch.Tensor) -> torch.Tensor:
        if self.pooling == "head":
            return self.model.forward_head(feats, pre_logits=True)
        if feats.ndim == 4:  # (n, C, H, W)
            return feats.mean((2, 3)) if self.pooling == "avg" else feats.amax((2, 3))
        if feats.ndim == 3:  # (n, tokens, C)
            if self.pooling == "cls":
                return feats[:, 0]
            tokens = feats[:, int(getattr(self.model, "num_prefix_tokens", 0)) :]
            return tokens.mean(1) if self.pooling == "avg" else tokens.amax(1)
        raise ValueError(f"cannot pool forward_features output of shape {tuple(feats.shape)}; use pooling='head'.")

    def layer_names(self) -> list[str]:
        """The modules of the model's ``feature_info`` (stages or blocks), else its direct children."""
        info = getattr(self.model, "feature_info", None)
        names = [str(entry["module"]) for entry in info or [] if isinstance(entry, dict) and "module" in entry]
        return names or [name for name, _ in self.model.named_children()]

    def _extra_layer_names(self) -> list[str]:
        return [name for name, _ in self.model.named_modules() if name]

    def _pixels(self, batch: Any) -> torch.Tensor:
        return self.preprocess(batch).to(self.device, dtype=next(self.model.parameters()).dtype)

    def _encode_batch_layers(self, batch: Any, names: list[str]) -> dict[str, torch.Tensor]:
        pixels = self._pixels(batch)
        spatial = "max" if self.pooling == "max" else "mean"
        return run_with_hooks(self.model, names, lambda: self.model.forward_features(pixels), spatial=spatial)

    def _encode_batch(self, batch: Any) -> torch.Tensor:
        return self._pool(self.model.forward_features(self._pixels(batch)))
