"""Saving and loading estimators: one ``.safetensors`` file, never pickle.

The file's tensors hold every array (fitted state and array parameters); its header metadata holds a JSON
document naming the class by its module path (``"latentalign.align.procrustes:Procrustes"``), the format
version, the constructor parameters and the non-array fitted state.

Loading imports the named module only when it is ``latentalign`` or below it (or a module the caller
trusts explicitly), and builds the class only when it is a :class:`~latentalign.base.BaseEstimator`: a
file cannot make ``load`` import or run arbitrary code, and a user class that happens to share a name with
a library class never replaces it. Files of format version 1 (which named classes by their bare name) still
load.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch

from latentalign._version import __version__
from latentalign.base import BaseEstimator
from latentalign.exceptions import PersistenceError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Persistable", "load", "save", "resolve_class"]

FORMAT_NAME = "latentalign"
FORMAT_VERSION = 2
SUFFIX = ".safetensors"

#: Format 1 named classes by their bare name; these are the classes that format could hold.
_FORMAT1_CLASSES = {
    "Procrustes": "latentalign.align.procrustes:Procrustes",
    "Affine": "latentalign.align.affine:Affine",
    "RelativeProjection": "latentalign.align.relative:RelativeProjection",
    "OTAligner": "latentalign.align.ot:OTAligner",
    "SelfLearning": "latentalign.align.refine:SelfLearning",
    "UniversalSpace": "latentalign.align.universal:UniversalSpace",
    "Center": "latentalign.preprocessing:Center",
    "StandardScale": "latentalign.preprocessing:StandardScale",
    "L2Normalize": "latentalign.preprocessing:L2Normalize",
    "ZeroPad": "latentalign.preprocessing:ZeroPad",
    "Chain": "latentalign.preprocessing:Chain",
}

P = TypeVar("P", bound="Persistable")


def class_path(klass: type) -> str:
    """``"module:QualName"`` of a class, as saved files name it.

    Examples
    --------
    >>> from latentalign.preprocessing import Center
    >>> class_path(Center)
    'latentalign.preprocessing:Center'
    """
    return f"{klass.__module__}:{klass.__qualname__}"


def resolve_class(path: str, *, trusted_modules: Iterable[str] = ()) -> type[BaseEstimator]:
    """Return the estimator class a saved file names (``"module:Class"``), importing only trusted modules.

    Parameters
    ----------
    path : str
        ``"module:Class"`` (format 2) or a bare class name (format 1).
    trusted_modules : iterable of str
        Top-level packages besides ``latentalign`` whose classes may be loaded (e.g. ``("mypackage",)``
        for your own subclasses). Importing a module runs its code, so only name packages you trust.

    Examples
    --------
    >>> resolve_class("latentalign.preprocessing:Center").__name__
    'Center'
    >>> resolve_class("os:system")
    Traceback (most recent call last):
    ...
    latentalign.exceptions.PersistenceError: The file names the class 'os:system', outside latentalign. Loading imports the module it names, so only latentalign's own modules are loaded by default; if you trust the file, pass trusted_modules=('os',).
    """
    if ":" not in path:
        if path not in _FORMAT1_CLASSES:
            raise PersistenceError(
                f"The file describes an estimator of class {path!r}, which this version of latentalign does "
                f"not know (known: {sorted(_FORMAT1_CLASSES)}). Load it with the version that saved it."
            )
        path = _FORMAT1_CLASSES[path]
    module_name, _, qualname = path.partition(":")
    top = module_name.split(".")[0]
    allowed = {"latentalign", *trusted_modules}
    if top not in allowed:
        raise PersistenceError(
            f"The file names the class {path!r}, outside latentalign. Loading imports the module it names, so "
            f"only latentalign's own modules are loaded by default; if you trust the file, pass "
            f"trusted_modules=({top!r},)."
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PersistenceError(
            f"The file names the class {path!r}, which cannot be found ({exc}). Install the version of the "
            "package that saved it."
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, BaseEstimator)):
        raise PersistenceError(f"The file names {path!r}, which is not a latentalign estimator class.")
    return obj


def save(estimator: BaseEstimator, path: str | os.PathLike[str]) -> Path:
    """Save ``estimator``'s parameters and fitted state to one ``.safetensors`` file, atomically.

    Parameters
    ----------
    estimator : BaseEstimator
        A latentalign estimator (fitted or not).
    path : str or path-like
        Destination; ``.safetensors`` is appended when the name has no suffix (and :func:`load` does the
        same, so ``load(p)`` finds what ``save(p)`` wrote).

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from latentalign import Procrustes
    >>> X = np.random.default_rng(0).standard_normal((20, 3))
    >>> p = Procrustes().fit(X, X)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     written = save(p, tmp + "/map")
    ...     back = load(tmp + "/map")
    >>> written.name, np.allclose(back.transform(X), p.transform(X))
    ('map.safetensors', True)
    """
    from safetensors.torch import save_file

    if not isinstance(estimator, BaseEstimator):
        raise TypeError(f"estimator must be a latentalign estimator, got {type(estimator).__name__}.")
    path = _with_suffix(Path(path))
    tensors: dict[str, torch.Tensor] = {}
    doc = _to_document(estimator, "", tensors)
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


def load(
    path: str | os.PathLike[str],
    *,
    expected: type | None = None,
    trusted_modules: Iterable[str] = (),
) -> Any:
    """Load an estimator saved with :func:`save` (or an estimator's ``.save``), whatever its class.

    Parameters
    ----------
    path : str or path-like
        The file; when it does not exist and has no suffix, ``path + ".safetensors"`` is tried.
    expected : type, optional
        Raise unless the file holds an instance of this class.
    trusted_modules : iterable of str
        Packages besides ``latentalign`` whose estimator classes may be loaded (see :func:`resolve_class`).

    Raises
    ------
    PersistenceError
        When the file is missing, corrupted, not a latentalign file, from a newer format version, names a
        class outside the trusted modules, or holds another class than ``expected``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(path)
    if not path.is_file() and path.suffix == "" and _with_suffix(path).is_file():
        path = _with_suffix(path)
    if not path.is_file():
        raise PersistenceError(f"No saved estimator at {str(path)!r}: the file does not exist.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
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
    try:
        version = int(header.get("format_version", "-1"))
    except ValueError:
        version = -1
    if version > FORMAT_VERSION or version < 1:
        raise PersistenceError(
            f"{str(path)!r} uses latentalign save format {header.get('format_version')!r} (written by "
            f"latentalign {header.get('library_version', '?')}); this version reads formats 1 to "
            f"{FORMAT_VERSION}. Install the latentalign version that wrote it, or refit and save again."
        )
    try:
        doc = json.loads(header["estimator"])
        obj = _from_document(doc, tensors, tuple(trusted_modules))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise PersistenceError(f"{str(path)!r} has a corrupted estimator description ({exc!r}).") from None
    if expected is not None and not isinstance(obj, expected):
        raise PersistenceError(
            f"{str(path)!r} holds a {type(obj).__name__}, not a {expected.__name__}. "
            f"Load it with {type(obj).__name__}.load(...) or latentalign.load(...)."
        )
    return obj


class Persistable:
    """``save(path)`` and ``load(path)`` methods for estimators (see :func:`save` and :func:`load`)."""

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
        return save(cast(BaseEstimator, self), path)  # only ever mixed into a BaseEstimator

    @classmethod
    def load(cls: type[P], path: str | os.PathLike[str], *, trusted_modules: Iterable[str] = ()) -> P:
        """Load an estimator of this class saved with :meth:`save` (see :func:`latentalign.load`)."""
        obj: P = load(path, expected=cls, trusted_modules=trusted_modules)
        return obj


def _with_suffix(path: Path) -> Path:
    return path.with_suffix(SUFFIX) if path.suffix == "" else path


def _to_document(estimator: BaseEstimator, prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    estimator._prepare_save()
    return {
        "class": class_path(type(estimator)),
        "params": _encode(estimator.get_params(deep=False), f"{prefix}params.", tensors),
        "state": _encode(estimator._fitted_attributes(), f"{prefix}state.", tensors),
    }


def _from_document(doc: dict[str, Any], tensors: dict[str, torch.Tensor], trusted: tuple[str, ...]) -> Any:
    klass = resolve_class(doc["class"], trusted_modules=trusted)
    params = _decode(doc["params"], tensors, trusted)
    try:
        obj = klass(**params)
    except TypeError as exc:
        raise PersistenceError(
            f"The saved parameters of {doc['class']} do not match this version's constructor ({exc})."
        ) from None
    for key, value in _decode(doc["state"], tensors, trusted).items():
        setattr(obj, key, value)
    return obj


def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Turn ``value`` into JSON, moving arrays into ``tensors`` under ``key``."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        if value.dtype == object:  # e.g. feature_names_in_: an array of column names
            if not all(isinstance(v, str) for v in value.ravel()):
                raise PersistenceError(f"Cannot save {key!r}: an object array holds non-strings.")
            return {"__strings__": value.tolist()}
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {"__ndarray__": key}
    if isinstance(value, BaseEstimator):
        return {"__estimator__": _to_document(value, key + ".", tensors)}
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


def _decode(value: Any, tensors: dict[str, torch.Tensor], trusted: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return _get(tensors, value["__tensor__"])
        if "__ndarray__" in value:
            return _get(tensors, value["__ndarray__"]).numpy()
        if "__strings__" in value:
            return np.asarray(value["__strings__"], dtype=object)
        if "__estimator__" in value:
            return _from_document(value["__estimator__"], tensors, trusted)
        if "__dict__" in value:
            return {k: _decode(v, tensors, trusted) for k, v in value["__dict__"].items()}
        if "__tuple__" in value:
            return tuple(_decode(v, tensors, trusted) for v in value["__tuple__"])
        return {k: _decode(v, tensors, trusted) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors, trusted) for v in value]
    return value


def _get(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    try:
        return tensors[key]
    except KeyError:
        raise PersistenceError(f"The saved file is missing the tensor {key!r}; it is corrupted.") from None
