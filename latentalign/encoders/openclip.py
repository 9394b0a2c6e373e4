"""Adapter for open_clip models (extra ``clip``): the image tower or the text tower.

open_clip is installed with ``pip install --no-deps open_clip_torch ftfy regex`` (no torchvision, see
:mod:`latentalign.encoders._torchvision_stub`); images are prepared with the tensor-only
:class:`~latentalign.encoders.image.ImagePreprocess`, configured from the model's ``preprocess_cfg``
(shortest-side bicubic resize, center crop, CLIP mean/std: open_clip's default evaluation transform).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch

from latentalign.encoders._hub import load_from_hub
from latentalign.encoders._torchvision_stub import import_without_torchvision
from latentalign.encoders._weights import file_fingerprint, load_state_dict_file, module_fingerprint, seeded
from latentalign.encoders.base import BaseEncoder, resolve_device
from latentalign.encoders.image import ImagePreprocess

__all__ = ["OpenCLIPEncoder"]

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def _is_local_checkpoint(pretrained: Any) -> bool:
    if isinstance(pretrained, Path):
        return True
    return isinstance(pretrained, str) and (Path(pretrained).exists() or pretrained.endswith(_CHECKPOINT_SUFFIXES))


class OpenCLIPEncoder(BaseEncoder):
    """Embeddings from one tower of an open_clip model.

    Parameters
    ----------
    model_name : str
        An open_clip architecture, e.g. ``"ViT-B-32"`` or ``"RN50"`` (``open_clip.list_models()``).
    pretrained : str, pathlib.Path or None
        ``None``: random initialisation (seeded by ``seed``); a path to a local checkpoint (state dict
        as ``.safetensors`` or a torch file read with ``weights_only=True``); or an open_clip tag such
        as ``"laion2b_s34b_b79k"`` (downloads, so it needs network).
    modality : {"image", "text"}
        Which tower ``encode`` runs.
    preprocess : callable, optional
        Turns a batch of images into a tensor ``(n, 3, H, W)``; defaults to an
        :class:`ImagePreprocess` built from the model's ``preprocess_cfg``.
    seed : int, optional
        Seed for the random initialisation when ``pretrained`` is None (the caller's RNG is untouched).
    device : str or torch.device, optional
        Defaults to CPU.
    name : str, optional
        Short name; defaults to ``"<model_name>-<modality>"``.

    Notes
    -----
    Both towers of one checkpoint share an embedding space: build two encoders, one per modality, from
    the same ``pretrained`` (the weights are loaded twice; pass ``model=`` to share a loaded model).
    """

    _libraries = ("numpy", "torch", "open_clip_torch", "ftfy", "regex")

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | Path | None = None,
        *,
        modality: str = "image",
        preprocess: Callable[[Any], torch.Tensor] | None = None,
        seed: int | None = None,
        device: str | torch.device | None = None,
        name: str | None = None,
        model: torch.nn.Module | None = None,
    ) -> None:
        open_clip = import_without_torchvision("open_clip", "clip", purpose="OpenCLIPEncoder")
        if modality not in ("image", "text"):
            raise ValueError(f"modality must be 'image' or 'text' for OpenCLIPEncoder, got {modality!r}.")
        if model_name not in open_clip.list_models():
            raise ValueError(
                f"unknown open_clip model_name {model_name!r}; available: {', '.join(open_clip.list_models())}."
            )
        self.modality = modality
        self.model_name = model_name
        self.device = resolve_device(device)
        self.seed = seed
        self._checkpoint: str | None = None
        self._checkpoint_sha: str | None = None
        self.pretrained: str | None
        if model is not None:
            self.pretrained = "module"
        elif pretrained is None:
            with seeded(seed):
                model = open_clip.create_model(model_name, pretrained=None, device="cpu")
            self.pretrained = None
        elif _is_local_checkpoint(pretrained):
            with seeded(seed):
                model = open_clip.create_model(model_name, pretrained=None, device="cpu")
            state = load_state_dict_file(pretrained)
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"checkpoint {str(pretrained)!r} does not match open_clip model {model_name!r}: "
                    f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                    f"(e.g. {unexpected[:3]}). Pass the model_name the checkpoint was trained with."
                )
            self._checkpoint = str(Path(pretrained).resolve())
            self.pretrained = "checkpoint"
        else:
            tag = str(pretrained)
            model = load_from_hub(
                lambda: open_clip.create_model(model_name, pretrained=tag, device="cpu"),
                f"open_clip:{model_name}/{tag}",
            )
            self.pretrained = str(pretrained)
        # an open_clip model: encode_text, encode_image and visual are not on nn.Module's type
        self.model: Any = model.to(self.device).eval()
        self.dim = int(open_clip.get_model_config(model_name)["embed_dim"])
        if modality == "text":
            self.tokenizer = open_clip.get_tokenizer(model_name)
            self.preprocess: Callable[[Any], torch.Tensor] | None = None
        else:
            self.tokenizer = None
            self.preprocess = preprocess if preprocess is not None else self._default_preprocess()
        self.name = name or f"{model_name}-{modality}"
        self._fingerprint: str | None = None

    def _default_preprocess(self) -> ImagePreprocess:
        cfg = dict(getattr(self.model.visual, "preprocess_cfg", {}) or {})
        size = cfg.get("size", getattr(self.model.visual, "image_size", 224))
        if isinstance(size, (tuple, list)):
            if len(set(size)) != 1:
                raise ValueError(f"non-square image size {size} is not supported by the default preprocessing.")
            size = size[0]
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        resize_mode = cfg.get("resize_mode", "shortest")
        return ImagePreprocess(
            int(size),
            mean=cfg.get("mean", OPENAI_DATASET_MEAN),
            std=cfg.get("std", OPENAI_DATASET_STD),
            scale=1.0 / 255.0,
            resize_mode="squash" if resize_mode == "squash" else "shortest",
            interpolation=cfg.get("interpolation", "bicubic"),
        )

    def _modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def _weights_id(self) -> dict[str, Any]:
        if self.pretrained == "checkpoint":
            if self._checkpoint_sha is None:
                self._checkpoint_sha = file_fingerprint(self._checkpoint)  # type: ignore[arg-type]
            return {"checkpoint": self._checkpoint, "checkpoint_sha256": self._checkpoint_sha}
        if self.pretrained is None and self.seed is not None:
            return {"seed": self.seed}
        if self.pretrained in (None, "module"):
            if self._fingerprint is None:
                self._fingerprint = module_fingerprint(self.model)
            return {"weights_fingerprint": self._fingerprint}
        return {}

    def _metadata(self) -> dict[str, Any]:
        tag = self.pretrained if self.pretrained not in (None,) else "random"
        meta: dict[str, Any] = {
            "model_id": f"open_clip:{self.model_name}:{tag}",
            "layer": f"{self.modality} tower projection",
            "pooling": "model",
            "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
            "seed": self.seed,
        }
        if self.preprocess is not None:
            cfg = getattr(self.preprocess, "config", None)
            meta["preprocessing"] = (
                cfg() if callable(cfg) else getattr(self.preprocess, "__qualname__", repr(type(self.preprocess)))
            )
        meta.update(self._weights_id())
        return meta

    def _encode_batch(self, batch: Any) -> torch.Tensor:
        if self.modality == "text":
            tokens = self.tokenizer(list(batch)).to(self.device)
            return self.model.encode_text(tokens)
        preprocess = cast(Callable[[Any], torch.Tensor], self.preprocess)  # set when modality="image"
        pixels = preprocess(batch).to(self.device, dtype=next(self.model.parameters()).dtype)
        return self.model.encode_image(pixels)
