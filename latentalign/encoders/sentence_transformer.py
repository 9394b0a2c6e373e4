"""Adapter for sentence-transformers models (extra ``st``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentalign._optional import import_optional
from latentalign.encoders._hub import load_from_hub
from latentalign.encoders._pooling import pool_tokens
from latentalign.encoders.base import BaseEncoder, resolve_device

__all__ = ["SentenceTransformerEncoder"]


class SentenceTransformerEncoder(BaseEncoder):
    """Sentence embeddings from a ``sentence_transformers.SentenceTransformer``.

    Parameters
    ----------
    model : str, pathlib.Path or SentenceTransformer
        A hub name (``"sentence-transformers/all-MiniLM-L6-v2"``, needs network), a local model
        directory, or a loaded model.
    device : str or torch.device, optional
        Defaults to CPU.
    prompt : str, optional
        Text prepended to every input (e.g. ``"passage: "`` for E5 models).
    max_seq_length : int, optional
        Override the model's truncation length.
    name : str, optional
        Short name; defaults to the last path component of ``model``.
    model_id : str, optional
        Identifier recorded in ``metadata`` (defaults to ``str(model)``).

    Notes
    -----
    The output is the model's own pipeline (transformer, pooling and, where the model has one, its
    ``Normalize`` module); ``encode(normalize=True)`` normalises again, which is harmless.

    ``encode(layers=...)`` runs the underlying transformers model once per batch with
    ``output_hidden_states=True`` (layer names ``"embeddings"``, ``"layer.0"``, ...) and pools every state
    with the model's own pooling mode (mean, cls, max or last token) and attention mask; modules after the
    pooling (``Dense``, ``Normalize``) apply only to the final embedding. The ``prompt`` is prepended.
    """

    modality = "text"
    _libraries = ("numpy", "torch", "sentence-transformers", "transformers", "tokenizers")

    def __init__(
        self,
        model: Any,
        *,
        device: str | torch.device | None = None,
        prompt: str | None = None,
        max_seq_length: int | None = None,
        name: str | None = None,
        model_id: str | None = None,
    ) -> None:
        st = import_optional("sentence_transformers", "st", purpose="SentenceTransformerEncoder")
        if isinstance(model, (str, Path)):
            target = str(resolve_device(device))
            load = lambda: st.SentenceTransformer(str(model), device=target)  # noqa: E731
            self.model = load() if Path(model).exists() else load_from_hub(load, str(model))
            default_id = str(model)
        elif isinstance(model, st.SentenceTransformer):
            self.model = model if device is None else model.to(resolve_device(device))
            default_id = type(model).__name__
        else:
            raise TypeError(
                f"model must be a model name, a local directory or a SentenceTransformer, got {type(model).__name__}."
            )
        if max_seq_length is not None:
            self.model.max_seq_length = int(max_seq_length)
        self.model.eval()
        self.model_id = model_id or default_id
        self.prompt = prompt
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            raise ValueError(f"the sentence-transformers model {self.model_id!r} does not report its output dim.")
        self.dim = int(dim)
        self.name = name or Path(str(self.model_id).rstrip("/")).name

    def _modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def _pooling(self) -> str | None:
        for module in self.model:
            getter = getattr(module, "get_pooling_mode_str", None)
            if getter is not None:
                return str(getter())
            mode = getattr(module, "pooling_mode", None)  # sentence-transformers >= 6
            if mode is not None and type(module).__name__ == "Pooling":
                return "+".join(mode) if isinstance(mode, (list, tuple)) else str(mode)
        return None

    def _metadata(self) -> dict[str, Any]:
        modules = [type(m).__name__ for m in self.model]
        dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        return {
            "model_id": self.model_id,
            "layer": -1,
            "pooling": self._pooling(),
            "dtype": dtype,
            "max_seq_length": getattr(self.model, "max_seq_length", None),
            "prompt": self.prompt,
            "modules": modules,
        }

    def _transformer(self) -> Any:
        """The transformers model inside the first module (``auto_model``, or ``model`` in newer releases)."""
        first = self.model[0]
        inner = getattr(first, "auto_model", None) or getattr(first, "model", None)
        return inner if isinstance(inner, torch.nn.Module) and hasattr(inner, "config") else None

    def layer_names(self) -> list[str]:
        """``"embeddings"`` then ``"layer.0"`` ... ``"layer.{L-1}"`` of the transformer (as :class:`HFEncoder`)."""
        inner = self._transformer()
        n_layers = getattr(getattr(inner, "config", None), "num_hidden_layers", None)
        return [] if n_layers is None else ["embeddings", *(f"layer.{i}" for i in range(int(n_layers)))]

    def _token_pooling(self) -> str:
        mode = self._pooling()
        pooling = {"mean": "mean", "cls": "cls", "max": "max", "lasttoken": "last_token"}.get(str(mode))
        if pooling is None:
            raise ValueError(
                f"layers=... pools hidden states with the model's pooling mode, but {self.model_id!r} pools "
                f"with {mode!r}; only mean, cls, max and lasttoken are supported. Use layers=None."
            )
        return pooling

    def _encode_batch_layers(self, batch: Any, names: list[str]) -> dict[str, torch.Tensor]:
        pooling = self._token_pooling()
        texts = [self.prompt + t for t in batch] if self.prompt else list(batch)
        max_length = getattr(self.model, "max_seq_length", None)
        enc = self.model.tokenizer(
            texts, padding=True, truncation=max_length is not None, max_length=max_length, return_tensors="pt"
        ).to(next(self.model.parameters()).device)
        hidden = self._transformer()(**enc, output_hidden_states=True, return_dict=True).hidden_states
        index = {name: i for i, name in enumerate(self.layer_names())}
        return {name: pool_tokens(hidden[index[name]], enc["attention_mask"], pooling) for name in names}

    def _encode_batch(self, batch: Any) -> np.ndarray:
        return self.model.encode(
            list(batch),
            batch_size=len(batch),
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
            prompt=self.prompt,
        )
