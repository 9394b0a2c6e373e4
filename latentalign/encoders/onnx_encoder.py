"""Adapter for ONNX models run with onnxruntime (extra ``onnx``); text models tokenise with ``tokenizers``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from latentalign._optional import import_optional
from latentalign.encoders._pooling import TOKEN_POOLINGS, check_pooling, pool_tokens_numpy
from latentalign.encoders._weights import file_fingerprint
from latentalign.encoders.base import BaseEncoder, check_dim, check_modality

__all__ = ["ONNXEncoder"]

_ORT_TO_NUMPY = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}
_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _load_tokenizer(tokenizer: Any, max_length: int) -> Any:
    tokenizers = import_optional("tokenizers", "onnx", purpose="tokenising text for ONNXEncoder")
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {str(path)!r} not found; pass a tokenizer.json path.")
        tok = tokenizers.Tokenizer.from_file(str(path))
    elif isinstance(tokenizer, tokenizers.Tokenizer):
        tok = tokenizers.Tokenizer.from_str(tokenizer.to_str())  # a copy: padding settings change below
    else:
        raise TypeError(
            f"tokenizer must be a tokenizers.Tokenizer or a path to tokenizer.json, got {type(tokenizer).__name__}."
        )
    pad = tok.padding
    if pad is None:
        pad_token = next((t for t in ("[PAD]", "<pad>", "<|pad|>") if tok.token_to_id(t) is not None), None)
        pad_id = tok.token_to_id(pad_token) if pad_token is not None else 0
        tok.enable_padding(pad_id=pad_id, pad_token=pad_token or "[PAD]")
    else:
        tok.enable_padding(pad_id=pad["pad_id"], pad_token=pad["pad_token"], direction=pad["direction"])
    tok.enable_truncation(max_length=int(max_length))
    return tok


class ONNXEncoder(BaseEncoder):
    """Embeddings from an ONNX graph.

    Parameters
    ----------
    model_path : str or pathlib.Path
        The ``.onnx`` file.
    tokenizer : str, pathlib.Path or tokenizers.Tokenizer, optional
        For text models: a ``tokenizer.json`` (or a directory holding one). The graph's inputs named
        ``input_ids``, ``attention_mask`` and ``token_type_ids`` are fed from it.
    modality : {"text", "image", "array"}, optional
        Defaults to ``"text"`` with a tokenizer, else ``"array"``. Image and array models take one input,
        fed with ``preprocess(batch)`` (or the stacked batch).
    output : str, optional
        Name of the graph output to use; defaults to the first.
    pooling : {"mean", "cls", "last_token", "max"}, optional
        Pool a ``(batch, tokens, dim)`` output with the attention mask; ``None`` expects ``(batch, dim)``.
    dim : int, optional
        Output width; read from the graph when the output's last axis is static.
    max_length : int
        Truncation length in tokens.
    preprocess : callable, optional
        Turns a batch of images/arrays into an array for the graph's single input.
    intra_op_num_threads : int, optional
        onnxruntime threads (default: onnxruntime's choice).
    name, model_id : str, optional
    """

    _libraries = ("numpy", "onnxruntime", "tokenizers")

    def __init__(
        self,
        model_path: str | Path,
        *,
        tokenizer: Any = None,
        modality: str | None = None,
        output: str | None = None,
        pooling: str | None = None,
        dim: int | None = None,
        max_length: int = 256,
        preprocess: Callable[[Any], Any] | None = None,
        intra_op_num_threads: int | None = None,
        name: str | None = None,
        model_id: str | None = None,
    ) -> None:
        ort = import_optional("onnxruntime", "onnx", purpose="ONNXEncoder")
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {str(path)!r} does not exist or is not a file.")
        self.model_path = str(path.resolve())
        self.modality = check_modality(modality or ("text" if tokenizer is not None else "array"))
        if self.modality == "word":
            raise ValueError("ONNXEncoder encodes 'text', 'image' or 'array' inputs, not 'word'.")
        if self.modality == "text" and tokenizer is None:
            raise ValueError("modality='text' needs a tokenizer (a tokenizer.json path or a tokenizers.Tokenizer).")
        self.pooling = None if pooling is None else check_pooling(pooling, TOKEN_POOLINGS)
        options = ort.SessionOptions()
        if intra_op_num_threads is not None:
            options.intra_op_num_threads = int(intra_op_num_threads)
        self.session = ort.InferenceSession(self.model_path, sess_options=options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = self.session.get_outputs()
        names = [o.name for o in outputs]
        if output is None:
            output = names[0]
        if output not in names:
            raise ValueError(f"output {output!r} is not an output of {path.name}; the graph's outputs are {names}.")
        self.output = output
        out_shape = next(o.shape for o in outputs if o.name == output)
        self.max_length = int(max_length)
        if self.modality == "text":
            unknown = [n for n in self._inputs if n not in _TEXT_INPUTS]
            if unknown:
                raise ValueError(
                    f"the graph has inputs {list(self._inputs)}; a text model can only be fed {_TEXT_INPUTS} "
                    f"(unknown: {unknown})."
                )
            self.tokenizer = _load_tokenizer(tokenizer, self.max_length)
        else:
            if len(self._inputs) != 1:
                raise ValueError(
                    f"an {self.modality} ONNX model must have exactly one input, got {list(self._inputs)}."
                )
            self.tokenizer = None
        self.preprocess = preprocess
        static_dim = out_shape[-1] if out_shape and isinstance(out_shape[-1], int) else None
        if dim is None:
            if static_dim is None:
                raise ValueError(
                    f"the output {output!r} has no static width (shape {out_shape}); pass dim=... explicitly."
                )
            dim = static_dim
        self.dim = check_dim(dim, "ONNXEncoder")
        self.model_id = model_id or self.model_path
        self.name = name or path.stem
        self._sha: str | None = None

    def _metadata(self) -> dict[str, Any]:
        if self._sha is None:
            self._sha = file_fingerprint(self.model_path)
        meta: dict[str, Any] = {
            "model_id": self.model_id,
            "layer": self.output,
            "pooling": self.pooling or "model",
            "dtype": "float32",
            "onnx_sha256": self._sha,
        }
        if self.modality == "text":
            meta["max_length"] = self.max_length
        elif self.preprocess is not None:
            cfg = getattr(self.preprocess, "config", None)
            meta["preprocessing"] = cfg() if callable(cfg) else getattr(self.preprocess, "__qualname__", None)
        return meta

    def _dtype(self, name: str) -> Any:
        kind = self._inputs[name].type
        if kind not in _ORT_TO_NUMPY:
            raise ValueError(f"unsupported ONNX input type {kind} for input {name!r}.")
        return _ORT_TO_NUMPY[kind]

    def _encode_batch(self, batch: Any) -> np.ndarray:
        mask: np.ndarray | None = None
        if self.modality == "text":
            encodings = self.tokenizer.encode_batch(list(batch))
            ids = np.asarray([e.ids for e in encodings])
            mask = np.asarray([e.attention_mask for e in encodings])
            feeds_all = {
                "input_ids": ids,
                "attention_mask": mask,
                "token_type_ids": np.asarray([e.type_ids for e in encodings]),
            }
            feeds = {n: feeds_all[n].astype(self._dtype(n), copy=False) for n in self._inputs}
        else:
            (name,) = self._inputs
            data = self.preprocess(batch) if self.preprocess is not None else batch
            if hasattr(data, "detach"):
                data = data.detach().cpu().numpy()
            feeds = {name: np.ascontiguousarray(np.asarray(data), dtype=self._dtype(name))}
        out = self.session.run([self.output], feeds)[0]
        if self.pooling is not None:
            if out.ndim != 3:
                raise ValueError(
                    f"pooling={self.pooling!r} needs a (batch, tokens, dim) output, got shape {out.shape}."
                )
            if mask is None:
                mask = np.ones(out.shape[:2], dtype=np.int64)
            out = pool_tokens_numpy(out.astype(np.float32, copy=False), mask, self.pooling)
        return out
