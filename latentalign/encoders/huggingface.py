"""Adapter for Hugging Face transformers models (extra ``hf``): AutoModel + AutoTokenizer + pooling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from latentalign._optional import import_optional
from latentalign.encoders._hub import load_from_hub
from latentalign.encoders._pooling import check_pooling, pool_tokens
from latentalign.encoders.base import BaseEncoder, resolve_device

__all__ = ["HFEncoder"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _from_pretrained(transformers: Any, model: str | None, tokenizer: Any) -> tuple[Any, Any]:
    """The model (unless None) and the tokenizer (when named) from directories or, bounded, from the hub."""
    names = [str(n) for n in (model, tokenizer) if isinstance(n, (str, Path))]

    def load() -> tuple[Any, Any]:
        loaded = None if model is None else transformers.AutoModel.from_pretrained(model)
        if isinstance(tokenizer, (str, Path)):
            return loaded, transformers.AutoTokenizer.from_pretrained(str(tokenizer))
        return loaded, tokenizer

    return load() if all(Path(n).exists() for n in names) else load_from_hub(load, names[0])


class HFEncoder(BaseEncoder):
    """Text embeddings from a transformers encoder: one hidden layer, pooled with the attention mask.

    Parameters
    ----------
    model : str, pathlib.Path or transformers.PreTrainedModel
        A hub name (needs network), a local directory (``config.json`` + weights), or a loaded model.
    tokenizer : str, pathlib.Path or tokenizer, optional
        Required when ``model`` is a loaded model; defaults to the same name/directory otherwise.
    layer : int
        Which hidden state to pool: ``-1`` is the last layer, ``0`` the embedding layer; negative
        values count from the end (``hidden_states`` has ``num_hidden_layers + 1`` entries).
    pooling : {"mean", "cls", "last_token", "max"}
        Token pooling; padding tokens are excluded through the attention mask.
    max_length : int
        Truncation length in tokens.
    prefix : str
        Text prepended to every input (e.g. ``"query: "``).
    dtype : {"float32", "float16", "bfloat16"}
        Compute dtype of the model; outputs are returned as float32.
    device : str or torch.device, optional
        Defaults to CPU.
    name, model_id : str, optional
        Short name and the identifier recorded in ``metadata``.
    """

    modality = "text"
    _libraries = ("numpy", "torch", "transformers", "tokenizers")

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        layer: int = -1,
        pooling: str = "mean",
        max_length: int = 512,
        prefix: str = "",
        dtype: str = "float32",
        device: str | torch.device | None = None,
        name: str | None = None,
        model_id: str | None = None,
    ) -> None:
        transformers = import_optional("transformers", "hf", purpose="HFEncoder")
        self.pooling = check_pooling(pooling)
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got {dtype!r}.")
        self.dtype = dtype
        self.device = resolve_device(device)
        if isinstance(model, (str, Path)):
            default_id = str(model)
            if tokenizer is None:
                tokenizer = model
            model, tokenizer = _from_pretrained(transformers, str(model), tokenizer)
        elif isinstance(model, torch.nn.Module):
            default_id = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
            if tokenizer is None:
                raise ValueError(
                    "tokenizer is required when model is a loaded module; pass the tokenizer object "
                    "or its name/directory (tokenizer=...)."
                )
        else:
            raise TypeError(f"model must be a name, a local directory or a torch module, got {type(model).__name__}.")
        if isinstance(tokenizer, (str, Path)):  # a loaded model with a tokenizer given by name
            tokenizer = _from_pretrained(transformers, None, tokenizer)[1]
        if self.pooling == "last_token" and getattr(tokenizer, "pad_token", "") is None:
            if getattr(tokenizer, "eos_token", None) is None:
                raise ValueError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token first.")
            tokenizer.pad_token = tokenizer.eos_token
        self.model = model.to(device=self.device, dtype=_DTYPES[dtype]).eval()
        self.tokenizer = tokenizer
        config = model.config
        n_layers = getattr(config, "num_hidden_layers", None)
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise TypeError(f"layer must be an int, got {type(layer).__name__}.")
        if n_layers is not None and not -(n_layers + 1) <= layer <= n_layers:
            raise ValueError(
                f"layer={layer} is out of range for a model with {n_layers} layers: use -{n_layers + 1}..{n_layers} "
                "(0 is the embedding layer, -1 the last layer)."
            )
        self.layer = layer
        self.max_length = int(max_length)
        self.prefix = prefix
        self.model_id = model_id or default_id
        dim = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
        if dim is None:
            raise ValueError(f"cannot read the hidden size from the config of {self.model_id!r}.")
        self.dim = int(dim)
        self.name = name or Path(str(self.model_id).rstrip("/")).name

    def _modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def _metadata(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "layer": self.layer,
            "pooling": self.pooling,
            "dtype": self.dtype,
            "max_length": self.max_length,
            "prefix": self.prefix,
        }

    def layer_names(self) -> list[str]:
        """``"embeddings"`` then ``"layer.0"`` ... ``"layer.{L-1}"``: the entries of ``hidden_states``.

        So ``encode(layers=[i])`` pools the same state as ``HFEncoder(..., layer=i)``.
        """
        n_layers = getattr(self.model.config, "num_hidden_layers", None)
        return [] if n_layers is None else ["embeddings", *(f"layer.{i}" for i in range(int(n_layers)))]

    def _tokenize(self, batch: Any) -> Any:
        texts = [self.prefix + t for t in batch] if self.prefix else list(batch)
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(
            self.device
        )

    def _encode_batch_layers(self, batch: Any, names: list[str]) -> dict[str, torch.Tensor]:
        enc = self._tokenize(batch)
        hidden = self.model(**enc, output_hidden_states=True, return_dict=True).hidden_states
        index = {name: i for i, name in enumerate(self.layer_names())}
        if len(hidden) != len(index):
            raise ValueError(
                f"{self.model_id!r} returned {len(hidden)} hidden states, but its config declares "
                f"{len(index) - 1} layers (+ embeddings); encode this model with layers=None."
            )
        return {name: pool_tokens(hidden[index[name]], enc["attention_mask"], self.pooling) for name in names}

    def _encode_batch(self, batch: Any) -> torch.Tensor:
        enc = self._tokenize(batch)
        want_all = self.layer != -1
        out = self.model(**enc, output_hidden_states=want_all, return_dict=True)
        hidden = out.hidden_states[self.layer] if want_all else out.last_hidden_state
        return pool_tokens(hidden, enc["attention_mask"], self.pooling)
