"""The ``Encoder`` protocol and the base class every adapter builds on.

An encoder turns a sequence of inputs (texts, images, arrays or words) into a float32 array of shape
``(n, dim)``. :class:`BaseEncoder` does the shared work once: batching, a progress bar, eval mode and
``torch.inference_mode()``, the output shape and finiteness checks, optional L2 normalisation, and the
``metadata`` record (model id, layer, pooling, dtype, seed, library versions) that keys the embedding
cache in :mod:`latentalign.store`. Adapters implement only ``_encode_batch``.

Hidden layers: ``encode(inputs, layers=...)`` returns a dict layer name -> ``(n, d)`` array from ONE
forward pass per batch, pooled like the final embedding. It is an ``encode`` argument rather than a
constructor option so that the :class:`Encoder` protocol (``encode`` returns one array) and the cache key
(``metadata``) stay as they are: the default ``layers=None`` is today's call, and one encoder object serves
both. Adapters that expose layers implement :meth:`BaseEncoder.layer_names` and ``_encode_batch_layers``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Protocol, overload, runtime_checkable

import numpy as np
import torch

from latentalign._optional import library_versions

__all__ = ["Encoder", "BaseEncoder", "MODALITIES", "LayerSpec", "batched"]

#: What ``encode(layers=...)`` takes: ``"all"``, one layer name, or a sequence of names and indices.
LayerSpec = str | Sequence[str | int]

MODALITIES = ("text", "image", "array", "word")


@runtime_checkable
class Encoder(Protocol):
    """What every encoder offers.

    Attributes
    ----------
    name : str
        Short human-readable name (used in cache directory names and reports).
    dim : int
        Width of the embeddings ``encode`` returns.
    modality : {"text", "image", "array", "word"}
        The kind of input ``encode`` takes.
    metadata : dict
        JSON-serialisable description of the model and settings (model id, layer, pooling, dtype,
        seed, library versions). Two encoders with equal metadata produce equal embeddings.
    """

    name: str
    dim: int
    modality: str

    @property
    def metadata(self) -> dict[str, Any]: ...

    def encode(
        self, inputs: Any, *, batch_size: int = 64, normalize: bool = False, progress: bool = True
    ) -> np.ndarray: ...


def batched(inputs: Any, batch_size: int) -> Iterator[Any]:
    """Yield consecutive slices of ``inputs`` (a sequence, numpy array or tensor) of ``batch_size`` items."""
    for start in range(0, len(inputs), batch_size):
        yield inputs[start : start + batch_size]


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}. Pass e.g. batch_size=64.")
    return int(batch_size)


def _to_float32_numpy(out: Any) -> np.ndarray:
    if isinstance(out, torch.Tensor):
        out = out.detach()
        if out.dtype != torch.float32:
            out = out.float()
        return out.cpu().numpy()
    return np.asarray(out, dtype=np.float32)


def l2_normalize_rows(X: np.ndarray) -> np.ndarray:
    """Divide each row by its L2 norm (zero rows stay zero).

    Examples
    --------
    >>> l2_normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    np.maximum(norms, np.finfo(np.float32).tiny, out=norms)
    return (X / norms).astype(np.float32, copy=False)


class BaseEncoder:
    """Shared behaviour of all encoders: subclasses set ``name``, ``dim``, ``modality`` and implement
    :meth:`_encode_batch`.

    Subclasses that wrap a ``torch.nn.Module`` put it in eval mode in ``__init__`` (the base class calls
    ``eval()`` again on every ``encode``, since some libraries load models in train mode) and list it in
    :meth:`_modules`.
    """

    name: str
    dim: int
    modality: str
    #: Distributions whose versions are recorded in ``metadata``.
    _libraries: ClassVar[tuple[str, ...]] = ("numpy", "torch")

    # ------------------------------------------------------------------ to implement
    def _encode_batch(self, batch: Any) -> np.ndarray | torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _metadata(self) -> dict[str, Any]:
        """Adapter-specific metadata: at least ``model_id``; ``layer``, ``pooling``, ``dtype`` where they apply."""
        return {}

    def _modules(self) -> list[torch.nn.Module]:
        """The torch modules to keep in eval mode."""
        return []

    # ------------------------------------------------------------------ shared
    @property
    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description: encoder class, name, modality, dim, model id, layer, pooling,
        dtype, seed, preprocessing, library versions."""
        meta: dict[str, Any] = {
            "encoder": type(self).__name__,
            "name": self.name,
            "modality": self.modality,
            "dim": int(self.dim),
            "model_id": None,
            "layer": None,
            "pooling": None,
            "dtype": "float32",
            "seed": None,
        }
        meta.update(self._metadata())
        meta["versions"] = library_versions(*self._libraries)
        return meta

    def layer_names(self) -> list[str]:
        """The hidden layers ``encode(layers="all")`` returns, in forward order (empty: no layer access).

        Integer entries of ``layers`` index this list (negative values count from the end).
        """
        return []

    def _extra_layer_names(self) -> list[str]:
        """Further names ``layers`` accepts beyond :meth:`layer_names` (e.g. nested module paths)."""
        return []

    def _encode_batch_layers(self, batch: Any, names: list[str]) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def resolve_layers(self, layers: LayerSpec) -> list[str]:
        """The layer names ``layers`` selects, in the order given, without repeats.

        Parameters
        ----------
        layers : "all", str or sequence of str and int
            ``"all"`` selects :meth:`layer_names`; an int indexes that list; a str names a layer.

        Raises
        ------
        ValueError
            For an unknown name or an index out of range (the message lists the available layers), or
            when the adapter gives no access to its hidden layers.
        """
        names = self.layer_names()
        if not names:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} gives no access to hidden layers, so layers={layers!r} "
                "cannot be served. Use layers=None, or an encoder that exposes them (HFEncoder, "
                "SentenceTransformerEncoder, TimmEncoder, EfficientNetLiteEncoder, TorchModuleEncoder)."
            )
        if isinstance(layers, str):
            layers = names if layers == "all" else [layers]
        if isinstance(layers, (bytes, int)) or not isinstance(layers, Sequence) or len(layers) == 0:
            raise ValueError(
                f"layers must be 'all', a layer name or a non-empty list of names and indices, got {layers!r}. "
                f"Available layers of {self.name!r}: {names}."
            )
        known = set(names) | set(self._extra_layer_names())
        chosen: list[str] = []
        for entry in layers:
            if isinstance(entry, (int, np.integer)) and not isinstance(entry, bool):
                if not -len(names) <= entry < len(names):
                    raise ValueError(
                        f"layer index {int(entry)} is out of range for {self.name!r}, which has {len(names)} "
                        f"layers ({-len(names)}..{len(names) - 1}): {names}."
                    )
                name = names[int(entry)]
            elif isinstance(entry, str) and entry in known:
                name = entry
            else:
                extra = " (or any nested module path)" if len(known) > len(names) else ""
                raise ValueError(f"unknown layer {entry!r} for {self.name!r}. Available layers{extra}: {names}.")
            if name not in chosen:
                chosen.append(name)
        return chosen

    @overload
    def encode(
        self,
        inputs: Any,
        *,
        batch_size: int = ...,
        normalize: bool = ...,
        progress: bool = ...,
        layers: None = ...,
    ) -> np.ndarray: ...

    @overload
    def encode(
        self,
        inputs: Any,
        *,
        batch_size: int = ...,
        normalize: bool = ...,
        progress: bool = ...,
        layers: LayerSpec,
    ) -> dict[str, np.ndarray]: ...

    def encode(
        self,
        inputs: Any,
        *,
        batch_size: int = 64,
        normalize: bool = False,
        progress: bool = True,
        layers: LayerSpec | None = None,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Encode ``inputs`` into a float32 array of shape ``(len(inputs), dim)``.

        Parameters
        ----------
        inputs : sequence
            Texts (``list[str]``), images (PIL images, arrays, tensors or paths), arrays or words,
            according to :attr:`modality`. Any object with ``len`` and slicing works.
        batch_size : int
            Number of inputs per forward pass.
        normalize : bool
            L2-normalise each output row.
        progress : bool
            Show a tqdm progress bar.
        layers : "all", str or sequence of str and int, optional
            Return hidden layers instead of the final embedding: a dict layer name -> ``(n, d_layer)``
            float32 array, all layers from one forward pass per batch, each pooled like the final
            embedding (token pooling for text models, spatial mean for CNN feature maps). See
            :meth:`layer_names` and :meth:`resolve_layers`. ``None`` (default): the final embedding.

        Returns
        -------
        numpy.ndarray of shape (n, dim), float32
            Or, with ``layers``, a dict of such arrays in the order the layers were asked for.
        """
        batch_size = _check_batch_size(batch_size)
        names = None if layers is None else self.resolve_layers(layers)
        inputs = self._check_inputs(inputs)
        if names is not None:
            return self._encode_layers(inputs, names, batch_size, normalize, progress)
        n = len(inputs)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        for module in self._modules():
            module.eval()
        from tqdm.auto import tqdm

        with (
            torch.inference_mode(),
            tqdm(total=n, disable=not progress, desc=f"encode {self.name}", unit="item", leave=False) as bar,
        ):
            start = 0
            for batch in batched(inputs, batch_size):
                emb = self._check_output(_to_float32_numpy(self._encode_batch(batch)), len(batch))
                out[start : start + len(batch)] = emb
                start += len(batch)
                bar.update(len(batch))
        self._check_finite(out)
        if normalize:
            out = l2_normalize_rows(out)
        return out

    def _encode_layers(
        self, inputs: Any, names: list[str], batch_size: int, normalize: bool, progress: bool
    ) -> dict[str, np.ndarray]:
        n = len(inputs)
        outs: dict[str, np.ndarray] = {}
        for module in self._modules():
            module.eval()
        from tqdm.auto import tqdm

        with (
            torch.inference_mode(),
            tqdm(total=n, disable=not progress, desc=f"encode {self.name} layers", unit="item", leave=False) as bar,
        ):
            start = 0
            for batch in batched(inputs, batch_size):
                states = self._encode_batch_layers(batch, names)
                for name in names:
                    emb = _to_float32_numpy(states[name])
                    if name not in outs:
                        width = emb.shape[1] if emb.ndim == 2 else -1
                        outs[name] = np.empty((n, max(width, 0)), dtype=np.float32)
                    expected = (len(batch), outs[name].shape[1])
                    if emb.shape != expected:
                        raise ValueError(
                            f"layer {name!r} of {self.name!r} gave an array of shape {emb.shape} for a batch of "
                            f"{len(batch)} inputs (expected {expected}); pick layers whose pooled output is "
                            "(batch, features)."
                        )
                    outs[name][start : start + len(batch)] = emb
                start += len(batch)
                bar.update(len(batch))
        if n == 0:
            return {name: np.empty((0, 0), dtype=np.float32) for name in names}
        for name in names:
            self._check_finite(outs[name], f" in layer {name!r}")
            if normalize:
                outs[name] = l2_normalize_rows(outs[name])
        return {name: outs[name] for name in names}

    def _check_finite(self, out: np.ndarray, where: str = "") -> None:
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            n = out.shape[0]
            raise ValueError(
                f"{self.name} produced non-finite embeddings{where} for {int(bad.sum())} of {n} inputs (first at "
                f"index {int(np.flatnonzero(bad)[0])}). Check those inputs, or run the model in float32."
            )

    def __call__(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        return self.encode(inputs, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, modality={self.modality!r})"

    # ------------------------------------------------------------------ checks
    def _check_inputs(self, inputs: Any) -> Any:
        if isinstance(inputs, (str, bytes)) and self.modality in ("text", "word"):
            raise TypeError(
                f"inputs must be a sequence of strings, got a single {type(inputs).__name__}. "
                f"Wrap it in a list: encode([{inputs!r}])."
            )
        if not hasattr(inputs, "__len__") or not hasattr(inputs, "__getitem__"):
            if hasattr(inputs, "__iter__"):
                return list(inputs)
            raise TypeError(f"inputs must be a sequence (list, numpy array, tensor), got {type(inputs).__name__}.")
        if self.modality in ("text", "word"):
            for i, item in enumerate(inputs):
                if not isinstance(item, str):
                    raise TypeError(
                        f"inputs[{i}] is {type(item).__name__}, but {self.name} encodes {self.modality}s: "
                        "pass a list of str."
                    )
        return inputs

    def _check_output(self, emb: np.ndarray, n: int) -> np.ndarray:
        if emb.ndim != 2 or emb.shape[0] != n or emb.shape[1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} declares dim={self.dim} but its model returned an array "
                f"of shape {emb.shape} for a batch of {n} inputs (expected ({n}, {self.dim})). Pass the "
                "model's real output width as dim, or pick the layer/pooling that gives a 2-D output."
            )
        return emb


def check_modality(modality: str) -> str:
    """Return ``modality`` if it is one of :data:`MODALITIES`, else raise ``ValueError``."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}.")
    return modality


def check_dim(dim: Any, owner: str) -> int:
    """Return ``dim`` as an int if it is a positive integer, else raise ``ValueError``."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"{owner}: dim must be a positive integer (the embedding width), got {dim!r}.")
    return int(dim)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CPU; anything else -> ``torch.device(device)``."""
    return torch.device("cpu") if device is None else torch.device(device)
