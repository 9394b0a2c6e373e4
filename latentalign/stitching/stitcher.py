"""Stitcher: model A's encoder, a fitted map, and model B's decoder or classifier head, as one module.

The aligner was fitted on paired anchors and the head was trained on B's own embeddings, so the
composition works zero-shot. :class:`Stitcher` is a real ``torch.nn.Module``: the map is a submodule
(:meth:`Aligner.to_module <latentalign.align.base.Aligner.to_module>`), so ``state_dict`` holds it,
``.to()`` moves it, and after ``.train()`` the map (built with ``trainable_map=True``) and a torch head
can be fine-tuned. :meth:`Stitcher.save` / :meth:`Stitcher.load` write and read it with safetensors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from latentalign._array import as_tensor
from latentalign.exceptions import PersistenceError

__all__ = ["Stitcher", "apply_head", "map_embeddings", "map_module"]

_FORMAT = "latentalign.Stitcher"
# format 2 adds a checksum of the tensors and of the header's description (format 1 files still load)
_FORMAT_VERSION = 2
_CHECKSUM_SINCE = 2
# the dtypes a saved map may name; anything else in the header is refused rather than looked up on torch
_MAP_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def map_embeddings(aligner: Any, Z: torch.Tensor, *, src: str | None = None, dst: str | None = None) -> torch.Tensor:
    """Send A's embeddings ``Z`` into the space B's head reads.

    ``aligner`` is either a fitted pairwise aligner (``transform``; for a relative projection the head must
    have been trained on ``aligner.transform_target(Y)``), a fitted universal space (``translate`` with
    ``src`` and ``dst`` model names), or ``None`` for no map at all (the absolute baseline).
    """
    if aligner is None:
        return Z
    if hasattr(aligner, "translate"):
        _check_names(src, dst)
        return aligner.translate(Z, src=src, dst=dst)
    if not hasattr(aligner, "transform"):
        raise TypeError(
            f"aligner must be a fitted latentalign aligner, a UniversalSpace or None, got {type(aligner).__name__}."
        )
    return aligner.transform(Z)


def _check_names(src: str | None, dst: str | None) -> None:
    if src is None or dst is None:
        raise ValueError(
            "A UniversalSpace needs the source and destination model names: Stitcher(..., src='a', dst='b')."
        )


def map_module(
    aligner: Any,
    *,
    src: str | None = None,
    dst: str | None = None,
    trainable: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> nn.Module | None:
    """The map of ``aligner`` as a module: ``to_module`` of an aligner or a UniversalSpace (``src -> dst``),
    ``nn.Identity`` for ``None``, the module itself for an ``nn.Module``; ``None`` for an object that only
    has ``transform``/``translate`` (it is then applied as in :func:`map_embeddings`).

    Examples
    --------
    >>> map_module(None)
    Identity()
    """
    if aligner is None:
        return nn.Identity()
    if isinstance(aligner, nn.Module):
        return aligner
    if hasattr(aligner, "to_module"):
        kwargs: dict[str, Any] = {"trainable": trainable, "dtype": dtype, "device": device}
        if hasattr(aligner, "translate"):
            _check_names(src, dst)
            kwargs.update(src=src, dst=dst)
        return aligner.to_module(**kwargs)
    if not (hasattr(aligner, "transform") or hasattr(aligner, "translate")):
        raise TypeError(
            "aligner must be a fitted latentalign aligner, a UniversalSpace, a torch module or None, "
            f"got {type(aligner).__name__}."
        )
    return None


def apply_head(head: Any, Z: torch.Tensor) -> torch.Tensor:
    """Run a head on embeddings: a torch module, a scikit-learn classifier, or any callable.

    scikit-learn classifiers return ``decision_function`` scores (or ``predict_proba`` when that is all
    they have), so ``argmax`` over the last axis gives the predicted class index for both kinds.
    """
    if isinstance(head, nn.Module):
        param = next(head.parameters(), None)
        if param is not None:
            Z = Z.to(device=param.device, dtype=param.dtype)
        return head(Z)
    for method in ("decision_function", "predict_proba"):
        if hasattr(head, method):
            scores = np.asarray(getattr(head, method)(Z.detach().cpu().numpy()))
            if scores.ndim == 1:  # binary decision_function: one score per row
                scores = np.stack([-scores, scores], axis=1)
            return torch.from_numpy(scores)
    if callable(head):
        return head(Z)
    raise TypeError(
        f"head_b must be a torch.nn.Module, a scikit-learn classifier or a callable, got {type(head).__name__}."
    )


def _tensor_location(module: Any) -> tuple[nn.Module, str] | None:
    """``(submodule, attribute)`` of the first parameter (else buffer) of ``module``; None if it has none.

    ``getattr(submodule, attribute)`` is then the current tensor even after ``.to()`` replaced it.
    """
    if not isinstance(module, nn.Module):
        return None
    for kind in (nn.Module.named_parameters, nn.Module.named_buffers):
        for name, _ in kind(module):
            path, _, attr = name.rpartition(".")
            return module.get_submodule(path), attr
    return None


def _first_tensor(module: Any) -> torch.Tensor | None:
    if not isinstance(module, nn.Module):
        return None
    for param in module.parameters():
        return param
    for buf in module.buffers():
        return buf
    return None


class Stitcher(nn.Module):
    """Compose ``encoder_a`` -> map -> ``head_b`` into one zero-shot model (a ``torch.nn.Module``).

    The map is ``self.map``, a submodule built once by ``aligner.to_module()``: ``state_dict()`` holds it
    (next to a torch encoder's and head's weights), ``.to(device/dtype)`` moves it, and ``forward`` is
    differentiable. The stitcher is constructed in eval mode; call ``.train()`` to fine-tune (the map
    receives gradients only when built with ``trainable_map=True``). :meth:`predict` runs without
    gradients.

    Parameters
    ----------
    encoder_a : torch.nn.Module, latentalign Encoder, callable, or None
        Model A's encoder. A module is called on tensors; an object with ``encode`` is called on raw inputs;
        ``None`` means ``forward`` receives A's embeddings directly.
    aligner : fitted aligner, UniversalSpace, torch.nn.Module, or None
        The map from A's space to the space ``head_b`` reads. A fitted aligner or UniversalSpace is turned
        into a module with ``to_module``; an ``nn.Module`` (e.g. a map loaded or built elsewhere) is used
        as it is; ``None`` is the identity (the absolute baseline). Any other object with ``transform`` or
        ``translate`` is applied through it (not a module: no gradients, not in ``state_dict``).
    head_b : torch.nn.Module, scikit-learn classifier, or callable
        Model B's decoder or classifier head, trained on B's own (possibly relative) embeddings.
    src, dst : str, optional
        Model names, required when ``aligner`` is a UniversalSpace.
    trainable_map : bool, default False
        Hold the map as ``nn.Parameter`` objects (fine-tunable) instead of buffers.
    dtype : torch.dtype, optional
        Dtype of the map. Default: that of ``head_b``'s parameters when it is a torch module with
        parameters, else of ``encoder_a``'s, else float64 (the precision the aligners are fitted in).
        ``forward`` casts the embeddings to the map's dtype and device.

    Attributes
    ----------
    map : torch.nn.Module or None
        The map module (``None`` only for an aligner without ``to_module``, kept as ``aligner``).
    aligner : object or None
        Only set for an aligner without ``to_module``.

    Examples
    --------
    >>> import torch
    >>> from latentalign import Procrustes
    >>> X = torch.randn(50, 4, dtype=torch.float64)
    >>> Q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    >>> head = torch.nn.Linear(4, 3).double()
    >>> stitched = Stitcher(None, Procrustes().fit(X, X @ Q), head)
    >>> bool(torch.allclose(stitched(X), head(X @ Q), atol=1e-6))
    True
    >>> sorted(stitched.state_dict())
    ['head_b.bias', 'head_b.weight', 'map.bias', 'map.weight']
    """

    _map_location: tuple[nn.Module, str] | None

    def __init__(
        self,
        encoder_a: Any,
        aligner: Any,
        head_b: Any,
        *,
        src: str | None = None,
        dst: str | None = None,
        trainable_map: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if encoder_a is not None and not (callable(encoder_a) or hasattr(encoder_a, "encode")):
            raise TypeError(
                f"encoder_a must be a torch module, an Encoder with .encode, a callable or None, "
                f"got {type(encoder_a).__name__}."
            )
        if not (
            isinstance(head_b, nn.Module)
            or callable(head_b)
            or hasattr(head_b, "decision_function")
            or hasattr(head_b, "predict_proba")
        ):
            raise TypeError(
                f"head_b must be a torch.nn.Module, a scikit-learn classifier or a callable, got "
                f"{type(head_b).__name__}."
            )
        reference = _first_tensor(head_b)
        if reference is None:
            reference = _first_tensor(encoder_a)
        if dtype is None:
            dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float64
        device = reference.device if reference is not None else None
        self.encoder_a = encoder_a
        self.head_b = head_b
        self.src, self.dst = src, dst
        module = map_module(aligner, src=src, dst=dst, trainable=trainable_map, dtype=dtype, device=device)
        self.map = module
        self.aligner = aligner if module is None else None
        self._head_is_module = isinstance(head_b, nn.Module)
        self.eval()

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "map":
            # where forward reads the map's dtype and device (a generator over parameters costs ~6 us);
            # a plain attribute, so object's __setattr__ (nn.Module's would only forward it there)
            object.__setattr__(self, "_map_location", _tensor_location(value))

    def embed(self, inputs: Any) -> torch.Tensor:
        """Model A's embeddings of ``inputs`` as a tensor."""
        if self.encoder_a is None:
            Z = inputs
        elif hasattr(self.encoder_a, "encode"):
            Z = self.encoder_a.encode(inputs, progress=False)
        else:
            Z = self.encoder_a(inputs)
        if isinstance(Z, torch.Tensor) and Z.is_floating_point():
            return Z
        t, _ = as_tensor(Z)
        return t

    def forward(self, inputs: Any) -> torch.Tensor:
        """Head B's output on model A's embeddings of ``inputs``, mapped into B's space."""
        fast = self.encoder_a is None and isinstance(inputs, torch.Tensor) and inputs.is_floating_point()
        Z = inputs if fast else self.embed(inputs)
        mapping = self.map
        if mapping is None:
            Z = map_embeddings(self.aligner, Z, src=self.src, dst=self.dst)
        else:
            location = self._map_location
            if location is not None:
                ref = getattr(*location)
                if Z.dtype is not ref.dtype or Z.device != ref.device:
                    Z = Z.to(device=ref.device, dtype=ref.dtype)
            Z = mapping(Z)
        if self._head_is_module:
            return self.head_b(Z)
        return apply_head(self.head_b, Z)

    @torch.no_grad()
    def predict(self, inputs: Any) -> np.ndarray:
        """Predicted class indices (``argmax`` of the head's scores), computed without gradients."""
        return self.forward(inputs).argmax(dim=-1).cpu().numpy()

    # -- persistence ----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save ``state_dict()`` (map, and a torch encoder's and head's weights) to one safetensors file.

        The file's header describes the map module (its classes and shapes, see
        :func:`latentalign.align.modules.module_config`), so :meth:`load` rebuilds it without the aligner.
        Encoders and heads that are not torch modules are not saved: pass them again to :meth:`load`.
        The header also stores a checksum of the tensors and of that description (see
        :func:`latentalign.persistence.content_digest`), which :meth:`load` verifies.

        Parameters
        ----------
        path : str or path-like
            Destination; ``.safetensors`` is appended when it has no suffix.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        from safetensors.torch import safe_open, save_file, save_model

        from latentalign.align.modules import module_config
        from latentalign.persistence import content_digest

        if self.map is None:
            raise TypeError(
                f"This Stitcher applies a {type(self.aligner).__name__} that has no to_module, so its map is "
                "not a module and cannot be saved here; save the aligner itself with its own method."
            )
        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".safetensors")
        ref = _first_tensor(self.map)
        header = {
            "format": _FORMAT,
            "format_version": str(_FORMAT_VERSION),
            "map": json.dumps(module_config(self.map)),
            "map_dtype": str(ref.dtype).removeprefix("torch.") if ref is not None else "",
            "names": json.dumps({"src": self.src, "dst": self.dst}),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        # save_model drops the aliases of shared tensors; the checksum covers exactly what it wrote, so write
        # once, read back (memory-mapped) and write again with the checksum in the header
        save_model(self, str(tmp), metadata=header)
        with safe_open(str(tmp), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
        header["checksum"] = content_digest(tensors, _described(header))
        save_file(tensors, str(tmp), metadata=header)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        encoder_a: Any = None,
        head_b: Any,
    ) -> Stitcher:
        """Rebuild a Stitcher saved with :meth:`save` around ``encoder_a`` and ``head_b``.

        The map is rebuilt from the file alone; the torch modules among ``encoder_a`` and ``head_b`` get
        the saved weights (strict: the file and the modules must have the same keys and shapes).

        Parameters
        ----------
        path : str or path-like
        encoder_a, head_b
            As given to the constructor of the saved stitcher (same architectures).
        Returns
        -------
        Stitcher
            In eval mode; the map is on the device of ``head_b``'s parameters (else ``encoder_a``'s, else
            the CPU).

        Raises
        ------
        PersistenceError
            When the file is missing, not a saved Stitcher, damaged (checksum mismatch, NaN or infinite
            weights, malformed header), or does not match ``encoder_a``/``head_b``.

        Examples
        --------
        >>> import tempfile, torch
        >>> from latentalign import Affine
        >>> X = torch.randn(40, 3)
        >>> head = torch.nn.Linear(3, 2)
        >>> s = Stitcher(None, Affine().fit(X, 2 * X + 1), head)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     back = Stitcher.load(s.save(tmp + "/s"), head_b=torch.nn.Linear(3, 2))
        >>> bool(torch.equal(back(X), s(X)))
        True
        """
        from safetensors.torch import load_model

        from latentalign.align.modules import module_from_config
        from latentalign.persistence import (
            check_finite_tensors,
            content_digest,
            parse_format_version,
            read_safetensors,
        )

        path, header, tensors = read_safetensors(path, "Stitcher")
        if header.get("format") != _FORMAT:
            raise PersistenceError(
                f"{str(path)!r} was not written by Stitcher.save (header format {header.get('format')!r}). "
                "An aligner file loads with latentalign.load(path)."
            )
        source = repr(str(path))
        version = parse_format_version(header.get("format_version"), source, newest=_FORMAT_VERSION)
        if "checksum" in header or version >= _CHECKSUM_SINCE:
            stored = header.get("checksum")
            if stored != content_digest(tensors, _described(header)):
                raise PersistenceError(
                    f"{source} fails its integrity check: the checksum in its header ({stored!r}) does not "
                    "match its contents, so the file was changed or damaged after it was saved. Save the "
                    "Stitcher again."
                )
        check_finite_tensors(tensors, source)
        map_dtype = header.get("map_dtype", "")
        if map_dtype and map_dtype not in _MAP_DTYPES:
            raise PersistenceError(
                f"{str(path)!r} has map_dtype {map_dtype!r} in its header; expected one of "
                f"{', '.join(_MAP_DTYPES)}. The file is damaged or was not written by Stitcher.save: "
                "save the Stitcher again."
            )
        try:
            names = json.loads(header["names"])
            if not (
                isinstance(names, dict) and all(isinstance(names.get(k), (str, type(None))) for k in ("src", "dst"))
            ):
                raise TypeError(f"'names' should map 'src' and 'dst' to strings or null, got {names!r}")
            map_ = module_from_config(json.loads(header["map"]))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError, OverflowError) as exc:
            raise PersistenceError(
                f"{source} has a malformed header ({exc!r}); the file is damaged or was not written by "
                "Stitcher.save: save the Stitcher again."
            ) from None
        if map_dtype:
            map_ = map_.to(_MAP_DTYPES[map_dtype])
        reference = _first_tensor(head_b)
        if reference is None:
            reference = _first_tensor(encoder_a)
        if reference is not None:
            map_ = map_.to(reference.device)
        stitcher = cls(encoder_a, map_, head_b, src=names["src"], dst=names["dst"])
        try:
            load_model(stitcher, str(path), strict=True)
        except RuntimeError as exc:
            raise PersistenceError(
                f"{str(path)!r} does not match this Stitcher's modules ({exc}). Pass the encoder_a and head_b "
                "the Stitcher was saved with (same architectures)."
            ) from None
        return stitcher.eval()


def _described(header: dict[str, str]) -> str:
    """The header entries a Stitcher file's checksum covers besides its tensors."""
    return json.dumps([header.get(key, "") for key in ("map", "map_dtype", "names")])
