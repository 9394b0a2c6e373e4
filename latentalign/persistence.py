"""Saving and loading estimators: one ``.safetensors`` file, never pickle.

The file's tensors hold every array (fitted state and array parameters); its header metadata holds a JSON
document naming the class by its module path (``"latentalign.align.procrustes:Procrustes"``), the format
version, the constructor parameters and the non-array fitted state.

Loading imports the named module only when it is ``latentalign`` or below it (or a module the caller
trusts explicitly), and builds the class only when it is a :class:`~latentalign.base.BaseEstimator`: a
file cannot make ``load`` import or run arbitrary code, and a user class that happens to share a name with
a library class never replaces it. Files of format version 1 (which named classes by their bare name) still
load.

Integrity. Format 3 (written since this version) stores in its header a BLAKE2b digest of the estimator
description and of every tensor (name, dtype, shape and bytes, in sorted name order); :func:`load` recomputes
it and refuses a file whose digest differs, so one flipped bit is caught. Files of formats 1 and 2 have no
digest and still load (a digest found in them is verified). Whatever the format, loading also checks that
the header has the expected JSON types (nesting at most :data:`MAX_DEPTH` levels), that every floating-point
tensor is finite, that the constructor parameters are valid and that the main fitted arrays of the library's
linear maps have the shapes their ``n_features_in_``/``n_features_out_`` say. Every malformed file raises
:class:`~latentalign.exceptions.PersistenceError`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch

from latentalign._version import __version__
from latentalign.base import BaseEstimator
from latentalign.exceptions import PersistenceError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "Persistable",
    "check_finite_tensors",
    "content_digest",
    "load",
    "parse_format_version",
    "read_safetensors",
    "resolve_class",
    "save",
]

FORMAT_NAME = "latentalign"
FORMAT_VERSION = 3
#: The first format whose files must carry a ``checksum`` in their header.
CHECKSUM_SINCE = 3
SUFFIX = ".safetensors"
#: Deepest nesting of lists/dicts accepted in a saved estimator description.
MAX_DEPTH = 32
_DIGEST = "blake2b-256"

#: Shapes of the main fitted arrays of the library's linear maps, in terms of n_features_in_ ("in") and
#: n_features_out_ ("out"): a file whose arrays disagree would transform to garbage or fail deep inside.
_STATE_SHAPES: dict[str, dict[str, tuple[str, ...]]] = {
    "latentalign.align.procrustes:Procrustes": {
        "rotation_": ("in", "out"),
        "mean_x_": ("in",),
        "mean_y_": ("out",),
        "std_x_": ("in",),
        "std_y_": ("out",),
    },
    "latentalign.align.affine:Affine": {"coef_": ("in", "out"), "intercept_": ("out",)},
}

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


def content_digest(tensors: Mapping[str, torch.Tensor], text: str = "") -> str:
    """BLAKE2b digest of ``text`` and of every tensor's name, dtype, shape and bytes, in sorted name order.

    Saved files store it in their header; loading recomputes it, so any change to the description or to
    one byte of one tensor is caught. Every field is length-prefixed, so no two different contents hash
    the same input.

    Parameters
    ----------
    tensors : mapping of str to torch.Tensor
        The tensors of the file (any dtype, on any device).
    text : str
        Header text covered by the digest as well (e.g. the JSON description of the estimator).

    Returns
    -------
    str
        ``"blake2b-256:"`` followed by 64 hexadecimal digits.

    Examples
    --------
    >>> import torch
    >>> a = content_digest({"w": torch.zeros(2, 2)}, "doc")
    >>> a == content_digest({"w": torch.zeros(2, 2)}, "doc"), a == content_digest({"w": torch.zeros(4)}, "doc")
    (True, False)
    >>> a.startswith("blake2b-256:")
    True
    """
    h = hashlib.blake2b(digest_size=32)

    def field(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    field(text.encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        field(name.encode())
        field(str(tensor.dtype).encode())
        field(json.dumps(list(tensor.shape)).encode())
        field(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{_DIGEST}:{h.hexdigest()}"


def parse_format_version(value: Any, source: str, *, newest: int) -> int:
    """The format version a header states, as an int; a PersistenceError unless it is 1 to ``newest``.

    Parameters
    ----------
    value : Any
        The header's ``format_version`` entry (a decimal integer string when the file is sound).
    source : str
        What the header belongs to, for the message (e.g. the file's path).
    newest : int
        The newest format this version of latentalign reads.

    Examples
    --------
    >>> parse_format_version("2", "map.safetensors", newest=3)
    2
    >>> parse_format_version("2.0", "map.safetensors", newest=3)
    Traceback (most recent call last):
    ...
    latentalign.exceptions.PersistenceError: map.safetensors has format_version '2.0' in its header; expected a decimal integer from 1 to 3. The file is damaged or was not written by latentalign: save it again.
    """
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,6}", value):
        version = int(value)
        if 1 <= version <= newest:
            return version
        if version > newest:
            raise PersistenceError(
                f"{source} uses save format {value!r}; this version of latentalign reads formats 1 to "
                f"{newest}. Install the latentalign version that wrote it, or refit and save again."
            )
    raise PersistenceError(
        f"{source} has format_version {value!r} in its header; expected a decimal integer from 1 to "
        f"{newest}. The file is damaged or was not written by latentalign: save it again."
    )


def check_finite_tensors(tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise a PersistenceError naming the first floating-point tensor that holds NaN or infinity.

    Parameters
    ----------
    tensors : mapping of str to torch.Tensor
        The tensors read from a file.
    source : str
        What the tensors belong to, for the message (e.g. the file's path).

    Examples
    --------
    >>> import torch
    >>> check_finite_tensors({"w": torch.ones(2)}, "map.safetensors")
    >>> check_finite_tensors({"w": torch.tensor([1.0, float("nan")])}, "map.safetensors")
    Traceback (most recent call last):
    ...
    latentalign.exceptions.PersistenceError: map.safetensors holds the tensor 'w' with NaN or infinite values; a fitted map never does, so the file is damaged or was saved from a failed fit. Fit again and save again.
    """
    for name in sorted(tensors):
        tensor = tensors[name]
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise PersistenceError(
                f"{source} holds the tensor {name!r} with NaN or infinite values; a fitted map never does, so "
                "the file is damaged or was saved from a failed fit. Fit again and save again."
            )


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
    doc = json.dumps(_to_document(estimator, "", tensors))
    header = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "library_version": __version__,
        "estimator": doc,
        "checksum": content_digest(tensors, doc),
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
        When the file is missing, truncated or corrupted (checksum mismatch, NaN or infinite weights, wrong
        JSON types or shapes, invalid parameters), not a latentalign file, from a newer format version, names
        a class outside the trusted modules, or holds another class than ``expected``.
    """
    path, header, tensors = read_safetensors(path, "estimator")
    source = repr(str(path))
    if header.get("format") != FORMAT_NAME or "estimator" not in header:
        raise PersistenceError(
            f"{source} is a safetensors file but was not written by latentalign's save() "
            f"(header keys: {sorted(header)})."
        )
    version = parse_format_version(header.get("format_version"), source, newest=FORMAT_VERSION)
    text = header["estimator"]
    if "checksum" in header or version >= CHECKSUM_SINCE:
        stored = header.get("checksum")
        if stored != content_digest(tensors, text):
            raise PersistenceError(
                f"{source} fails its integrity check: the checksum in its header ({stored!r}) does not match "
                "its contents, so the file was changed or damaged after it was saved. Save the estimator again."
            )
    check_finite_tensors(tensors, source)
    try:
        doc = json.loads(text)
        _check_depth(doc, MAX_DEPTH)
        obj = _from_document(doc, tensors, tuple(trusted_modules))
    except PersistenceError as exc:
        raise PersistenceError(f"{source}: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError, OverflowError) as exc:
        raise PersistenceError(f"{source} has a corrupted estimator description ({exc!r}).") from None
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


def read_safetensors(path: str | os.PathLike[str], what: str) -> tuple[Path, dict[str, str], dict[str, torch.Tensor]]:
    """Read a safetensors file whole: its path (``.safetensors`` appended when ``path`` has no suffix and
    does not exist, as :func:`save` does), header metadata and tensors.

    Raises
    ------
    PersistenceError
        When the file is missing or not a readable safetensors file; ``what`` names the saved thing.
    """
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(path)
    if not path.is_file() and path.suffix == "" and _with_suffix(path).is_file():
        path = _with_suffix(path)
    if not path.is_file():
        raise PersistenceError(f"No saved {what} at {str(path)!r}: the file does not exist.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise PersistenceError(
            f"{str(path)!r} is not a readable safetensors file ({exc}). It may be truncated or corrupted: "
            f"save the {what} again."
        ) from None
    return path, header, tensors


def _with_suffix(path: Path) -> Path:
    return path.with_suffix(SUFFIX) if path.suffix == "" else path


def _to_document(estimator: BaseEstimator, prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    estimator._prepare_save()
    return {
        "class": class_path(type(estimator)),
        "params": _encode(estimator.get_params(deep=False), f"{prefix}params.", tensors),
        "state": _encode(estimator._fitted_attributes(), f"{prefix}state.", tensors),
    }


def _check_depth(doc: Any, limit: int) -> None:
    """Raise unless ``doc`` nests lists/dicts at most ``limit`` deep (checked without recursion)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                raise PersistenceError(
                    f"the estimator description nests deeper than {limit} levels; no saved estimator does, "
                    "so the file is damaged or forged."
                )
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise PersistenceError(f"{what} should be a JSON {names}, got {type(value).__name__}.")
    return value


def _from_document(doc: Any, tensors: dict[str, torch.Tensor], trusted: tuple[str, ...]) -> Any:
    _expect(doc, dict, "an estimator description")
    name = _expect(doc.get("class"), str, "the estimator's 'class'")
    klass = resolve_class(name, trusted_modules=trusted)
    params = _expect(_decode(_expect(doc.get("params"), dict, "'params'"), tensors, trusted), dict, "'params'")
    state = _expect(_decode(_expect(doc.get("state"), dict, "'state'"), tensors, trusted), dict, "'state'")
    try:
        obj = klass(**params)
        check = getattr(obj, "_check_params", None)  # the estimator's own parameter validation
        if callable(check):
            check()
    except (TypeError, ValueError) as exc:
        raise PersistenceError(f"the saved parameters of {name} are not valid for this version ({exc}).") from None
    for key, value in state.items():
        if not (key.isidentifier() and key.endswith("_") and not key.startswith("_")):
            raise PersistenceError(f"the saved state of {name} has the entry {key!r}, not a fitted attribute name.")
        setattr(obj, key, value)
    _check_state_shapes(obj, class_path(klass))
    return obj


def _check_state_shapes(obj: BaseEstimator, name: str) -> None:
    sizes: dict[str, int] = {}
    for side, attr in (("in", "n_features_in_"), ("out", "n_features_out_")):
        if hasattr(obj, attr):
            value = getattr(obj, attr)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PersistenceError(f"the saved {attr} of {name} is {value!r}; expected a positive integer.")
            sizes[side] = value
    rules = _STATE_SHAPES.get(name, {})
    if len(sizes) < 2:
        return
    for attr, dims in rules.items():
        value = getattr(obj, attr, None)
        if value is None:
            continue
        expected = tuple(sizes[d] for d in dims)
        shape = tuple(getattr(value, "shape", ()))
        if shape != expected:
            raise PersistenceError(
                f"the saved {attr} of {name} has shape {shape}; expected {expected} "
                f"(n_features_in_={sizes['in']}, n_features_out_={sizes['out']})."
            )


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
            return _get(tensors, _expect(value["__tensor__"], str, "a tensor reference"))
        if "__ndarray__" in value:
            return _get(tensors, _expect(value["__ndarray__"], str, "an array reference")).numpy()
        if "__strings__" in value:
            strings = _expect(value["__strings__"], list, "a string array")
            if not all(isinstance(v, str) for v in strings):
                raise PersistenceError("a saved string array holds values that are not strings.")
            return np.asarray(strings, dtype=object)
        if "__estimator__" in value:
            return _from_document(value["__estimator__"], tensors, trusted)
        if "__dict__" in value:
            items = _expect(value["__dict__"], dict, "a saved dictionary")
            return {k: _decode(v, tensors, trusted) for k, v in items.items()}
        if "__tuple__" in value:
            return tuple(_decode(v, tensors, trusted) for v in _expect(value["__tuple__"], list, "a saved tuple"))
        return {k: _decode(v, tensors, trusted) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors, trusted) for v in value]
    return value


def _get(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    try:
        return tensors[key]
    except KeyError:
        raise PersistenceError(f"the file is missing the tensor {key!r}; it is corrupted.") from None
