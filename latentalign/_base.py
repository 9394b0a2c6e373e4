"""Estimator base: parameters, cloning and persistence (safetensors + JSON, never pickle).

A saved estimator is ONE ``.safetensors`` file. Its tensors hold every array (fitted state and array
parameters); its header metadata holds a JSON document with the class name, the format version, the
constructor parameters and the non-array fitted state. Loading never unpickles anything.

Fitted state is every public attribute whose name ends in ``_`` (scikit-learn's convention). Values may be
tensors, numpy arrays, nested estimators (e.g. preprocessing), dicts/lists of those, or plain JSON values.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from latentalign.exceptions import PersistenceError

__all__ = ["BaseEstimator", "FORMAT_NAME", "FORMAT_VERSION", "registered_estimator"]

FORMAT_NAME = "latentalign"
FORMAT_VERSION = 1

_ESTIMATORS: dict[str, type[BaseEstimator]] = {}

T = TypeVar("T", bound="BaseEstimator")


def registered_estimator(name: str) -> type[BaseEstimator]:
    """Return the estimator class saved under ``name`` (every subclass registers itself when defined)."""
    if name not in _ESTIMATORS:
        # The classes register when their modules are imported; import the public ones on demand.
        import latentalign.align
        import latentalign.preprocessing  # noqa: F401

        latentalign.align.import_all()
    try:
        return _ESTIMATORS[name]
    except KeyError:
        raise PersistenceError(
            f"The file describes an estimator of class {name!r}, which this version of latentalign does not "
            f"know (known: {sorted(_ESTIMATORS)}). Upgrade latentalign or load it with the version that saved it."
        ) from None


class BaseEstimator:
    """Keyword-only parameters stored by ``__init__``; learned state ends in ``_`` and is set by ``fit``."""

    _persist_name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._persist_name = cls.__name__
        _ESTIMATORS[cls.__name__] = cls

    # -- parameters ---------------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """Return the constructor parameters as a dict."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: T, **params: Any) -> T:
        """Set constructor parameters; unknown names raise ``ValueError``."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for {type(self).__name__}; valid parameters are {valid}."
                )
            setattr(self, key, value)
        return self

    def clone(self: T) -> T:
        """Return an unfitted copy with the same parameters (arrays deep-copied)."""
        return type(self)(**copy.deepcopy(self.get_params()))

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
        }
        shown = []
        for key, value in self.get_params().items():
            if isinstance(value, (np.ndarray, torch.Tensor)):
                shown.append(f"{key}=<array {tuple(value.shape)}>")
            elif key not in defaults or defaults[key] is inspect.Parameter.empty or defaults[key] != value:
                shown.append(f"{key}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def _fitted_attributes(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` has been called."""
        return bool(self._fitted_attributes())

    # -- persistence --------------------------------------------------------------------------------
    def _to_document(self, prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {
            "class": self._persist_name,
            "params": _encode(self.get_params(), f"{prefix}params.", tensors),
            "state": _encode(self._fitted_attributes(), f"{prefix}state.", tensors),
        }

    @classmethod
    def _from_document(cls, doc: dict[str, Any], tensors: dict[str, torch.Tensor]) -> BaseEstimator:
        klass = registered_estimator(doc["class"])
        params = _decode(doc["params"], tensors)
        try:
            obj = klass(**params)
        except TypeError as exc:
            raise PersistenceError(
                f"The saved parameters of {doc['class']} do not match this version's constructor ({exc})."
            ) from None
        for key, value in _decode(doc["state"], tensors).items():
            setattr(obj, key, value)
        return obj

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save parameters and fitted state to one ``.safetensors`` file (written atomically).

        Parameters
        ----------
        path : str or path-like
            Destination file; ``.safetensors`` is appended when it has no suffix.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".safetensors")
        tensors: dict[str, torch.Tensor] = {}
        doc = self._to_document("", tensors)
        from latentalign import __version__

        header = {
            "format": FORMAT_NAME,
            "format_version": str(FORMAT_VERSION),
            "library_version": __version__,
            "estimator": json.dumps(doc),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=header)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls: type[T], path: str | os.PathLike[str]) -> T:
        """Load an estimator saved with :meth:`save`.

        Raises
        ------
        PersistenceError
            When the file is missing, corrupted, not a latentalign file, from a newer format version,
            or holds a different class than the one ``load`` was called on.
        """
        from safetensors import SafetensorError
        from safetensors.torch import safe_open

        path = Path(path)
        if not path.is_file():
            raise PersistenceError(f"No saved estimator at {str(path)!r}: the file does not exist.")
        try:
            with safe_open(str(path), framework="pt") as handle:
                header = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise PersistenceError(
                f"{str(path)!r} is not a readable safetensors file ({exc}). It may be truncated or corrupted: "
                "save the estimator again."
            ) from None
        if header.get("format") != FORMAT_NAME or "estimator" not in header:
            raise PersistenceError(
                f"{str(path)!r} is a safetensors file but was not written by latentalign's save() "
                f"(header keys: {sorted(header)})."
            )
        version = int(header.get("format_version", "-1"))
        if version > FORMAT_VERSION or version < 1:
            raise PersistenceError(
                f"{str(path)!r} uses latentalign save format {version} (written by latentalign "
                f"{header.get('library_version', '?')}); this version reads format {FORMAT_VERSION}. "
                "Install the latentalign version that wrote it, or refit and save again."
            )
        try:
            doc = json.loads(header["estimator"])
            obj = cls._from_document(doc, tensors)
        except (json.JSONDecodeError, KeyError) as exc:
            raise PersistenceError(f"{str(path)!r} has a corrupted estimator description ({exc}).") from None
        if not isinstance(obj, cls):
            raise PersistenceError(
                f"{str(path)!r} holds a {type(obj).__name__}, not a {cls.__name__}. "
                f"Load it with {type(obj).__name__}.load(...) or latentalign.load(...)."
            )
        return obj


def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Turn ``value`` into JSON, moving arrays into ``tensors`` under ``key``."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {"__ndarray__": key}
    if isinstance(value, BaseEstimator):
        return {"__estimator__": value._to_document(key + ".", tensors)}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise PersistenceError(f"Cannot save {key}: dictionary keys must be strings, got {list(value)}.")
        return {"__dict__": {k: _encode(v, f"{key}{k}.", tensors) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{key}{i}.", tensors) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise PersistenceError(
        f"Cannot save {key!r} of type {type(value).__name__}: only arrays, estimators, numbers, strings "
        "and lists/dicts of those are saved."
    )


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return _get(tensors, value["__tensor__"])
        if "__ndarray__" in value:
            return _get(tensors, value["__ndarray__"]).numpy()
        if "__estimator__" in value:
            return BaseEstimator._from_document(value["__estimator__"], tensors)
        if "__dict__" in value:
            return {k: _decode(v, tensors) for k, v in value["__dict__"].items()}
        if "__tuple__" in value:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        return {k: _decode(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value


def _get(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    try:
        return tensors[key]
    except KeyError:
        raise PersistenceError(f"The saved file is missing the tensor {key!r}; it is corrupted.") from None
