"""The ``Encoder`` protocol and the base class every adapter builds on.

An encoder turns a sequence of inputs (texts, images, arrays or words) into a float32 array of shape
``(n, dim)``. :class:`BaseEncoder` does the shared work once: batching, a progress bar, eval mode and
``torch.inference_mode()``, the output shape and finiteness checks, optional L2 normalisation, and the
``metadata`` record (model id, layer, pooling, dtype, seed, library versions) that keys the embedding
cache in :mod:`latentalign.store`. Adapters implement only ``_encode_batch``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from latentalign._optional import library_versions

__all__ = ["Encoder", "BaseEncoder", "MODALITIES", "batched"]

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

    def encode(
        self, inputs: Any, *, batch_size: int = 64, normalize: bool = False, progress: bool = True
    ) -> np.ndarray:
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

        Returns
        -------
        numpy.ndarray of shape (n, dim), float32
        """
        batch_size = _check_batch_size(batch_size)
        inputs = self._check_inputs(inputs)
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
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            raise ValueError(
                f"{self.name} produced non-finite embeddings for {int(bad.sum())} of {n} inputs (first at "
                f"index {int(np.flatnonzero(bad)[0])}). Check those inputs, or run the model in float32."
            )
        if normalize:
            out = l2_normalize_rows(out)
        return out

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
