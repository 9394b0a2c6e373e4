"""Fitted maps as ``torch.nn.Module``: what :meth:`Aligner.to_module` returns.

Each module holds its map in buffers (fixed) or in ``nn.Parameter`` objects (``trainable=True``), so it
behaves as PyTorch users expect: gradients flow to the input (and to the map when trainable),
``.to(device/dtype)`` moves the map, ``state_dict`` holds it and loads back, and ``forward`` has no
Python-side data-dependent control flow, so ``torch.export.export`` and ``torch.compile(fullgraph=True)``
trace it. Unlike :meth:`Aligner.transform`, ``forward`` does no input validation and no numpy round trip:
inputs must be tensors of the module's dtype and device (as for ``nn.Linear``).

Modules
-------
:class:`LinearMap`
    ``x @ weight.T + bias``, laid out as ``nn.Linear`` (``weight`` is the transpose of the aligner's
    ``W``); one ``addmm``. Procrustes, Affine, the maps of OTAligner and SelfLearning, and UniversalSpace.
:class:`RelativeMap`
    Similarities to anchors (RelativeProjection): the formulas of
    :mod:`latentalign.functional.relative`, in one pass over the batch.
:class:`Shift`, :class:`Standardize`, :class:`RowNormalize`, :class:`ZeroPad`, :class:`Truncate`
    The preprocessing steps (and their inverses) an aligner applies around its map;
    :func:`preprocessor_module` turns a fitted step or ``Chain`` into them (``nn.Sequential``).

:func:`module_config` and :func:`module_from_config` describe a module as JSON and rebuild it with
buffers of the right shapes, so a state dict saved with safetensors can be loaded without the aligner.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, cast

import torch
from torch import nn

from latentalign.preprocessing import (
    Center,
    Chain,
    L2Normalize,
    Preprocessor,
    StandardScale,
)
from latentalign.preprocessing import ZeroPad as ZeroPadStep

__all__ = [
    "LinearMap",
    "RelativeInverse",
    "RelativeMap",
    "RowNormalize",
    "Shift",
    "Standardize",
    "Truncate",
    "ZeroPad",
    "finalize_module",
    "module_config",
    "module_from_config",
    "preprocessor_module",
    "sandwich",
]

_F64 = torch.float64
# Rows whose norm is below this are not rescaled by RowNormalize (as latentalign.preprocessing.L2Normalize).
_ROW_EPS = 1e-12
_LAYER_NORM_EPS = 1e-5


def _store(module: nn.Module, name: str, value: torch.Tensor, trainable: bool) -> None:
    """Register ``value`` as a parameter (trainable) or a persistent buffer."""
    value = value.detach().clone(memory_format=torch.contiguous_format)
    if trainable:
        module.register_parameter(name, nn.Parameter(value))
    else:
        module.register_buffer(name, value)


class LinearMap(nn.Module):
    """The affine map ``x @ weight.T + bias``, laid out as ``nn.Linear`` (one ``addmm`` per call).

    An aligner's ``transform`` is ``X @ W + b`` with ``W`` of shape ``(in_features, out_features)``; this
    module holds ``weight = W.T`` of shape ``(out_features, in_features)``, as ``nn.Linear`` does, so its
    ``state_dict`` loads into ``nn.Linear(in_features, out_features)`` and the matrix product runs in the
    same memory layout (``torch.nn.functional.linear``), which is measurably faster than ``X @ W`` with a
    row-major ``W`` for small batches on CPU.

    Parameters
    ----------
    weight : torch.Tensor of shape (out_features, in_features)
    bias : torch.Tensor of shape (out_features,)
    trainable : bool, default False
        Hold ``weight`` and ``bias`` as ``nn.Parameter`` (else as buffers, which receive no gradient).

    Examples
    --------
    >>> import torch
    >>> W, b = torch.randn(3, 2), torch.randn(2)
    >>> m = LinearMap(W.T, b)
    >>> x = torch.randn(4, 3)
    >>> bool(torch.allclose(m(x), x @ W + b)), sorted(m.state_dict())
    (True, ['bias', 'weight'])
    >>> linear = torch.nn.Linear(3, 2)
    >>> _ = linear.load_state_dict(m.state_dict())
    >>> bool(torch.equal(linear(x), m(x)))
    True
    """

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, *, trainable: bool = False) -> None:
        super().__init__()
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise ValueError(
                f"LinearMap needs weight of shape (out_features, in_features) and bias of shape "
                f"(out_features,), got {tuple(weight.shape)} and {tuple(bias.shape)}."
            )
        _store(self, "weight", weight, trainable)
        _store(self, "bias", bias.to(weight.dtype), trainable)

    @property
    def in_features(self) -> int:
        """Input dimension."""
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        """Output dimension."""
        return int(self.weight.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch ``x`` of shape ``(n, in_features)``."""
        return nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

    def config(self) -> dict[str, Any]:
        """JSON description (see :func:`module_config`)."""
        return {"in_features": self.in_features, "out_features": self.out_features}

    @classmethod
    def from_config(cls, config: dict[str, Any], trainable: bool) -> LinearMap:
        """An empty module of the described shape (fill it with ``load_state_dict``)."""
        return cls(
            torch.zeros(config["out_features"], config["in_features"]),
            torch.zeros(config["out_features"]),
            trainable=trainable,
        )


class RelativeMap(nn.Module):
    """Relative coordinates: similarities of each (shifted) row to the (shifted) anchors.

    Computes what :class:`~latentalign.align.relative.RelativeProjection` ``.transform`` computes, with
    the formulas of :mod:`latentalign.functional.relative`, on the whole batch at once (no row chunks).
    Euclidean distances are computed directly (``torch.cdist`` without the matrix-product shortcut), so
    they are exact near the anchors without the data-dependent correction the functional version uses.

    Parameters
    ----------
    anchors : torch.Tensor of shape (n_anchors, n_features)
        The source anchors, not centred.
    shift : torch.Tensor of shape (n_features,)
        Subtracted from the inputs and the anchors (the anchors' mean, or zeros without centring).
    metrics : tuple of str
        One or several of ``"cosine"``, ``"angular"``, ``"euclidean"``, ``"l1"``, ``"linf"``.
    top_k : int or None
    power : float
    aggregate : {"concat", "concat_norm", "sum"}
    trainable : bool, default False
        Hold the anchors as an ``nn.Parameter`` (``shift`` stays a buffer).

    Examples
    --------
    >>> import torch
    >>> from latentalign.functional.relative import relative_projection
    >>> X, A = torch.randn(5, 3), torch.randn(4, 3)
    >>> m = RelativeMap(A, torch.zeros(3), metrics=("cosine",))
    >>> bool(torch.allclose(m(X), relative_projection(X, A), atol=1e-6))
    True
    """

    anchors: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self,
        anchors: torch.Tensor,
        shift: torch.Tensor,
        *,
        metrics: tuple[str, ...],
        top_k: int | None = None,
        power: float = 1.0,
        aggregate: str = "concat",
        trainable: bool = False,
    ) -> None:
        super().__init__()
        _store(self, "anchors", anchors, trainable)
        self.register_buffer("shift", shift.detach().clone().to(anchors.dtype))
        self.metrics = tuple(metrics)
        self.top_k = None if top_k is None else int(top_k)
        self.power = float(power)
        self.aggregate = aggregate

    @property
    def n_anchors(self) -> int:
        """Number of anchors."""
        return int(self.anchors.shape[0])

    @property
    def out_features(self) -> int:
        """Output dimension."""
        k = self.n_anchors
        return k if self.aggregate == "sum" or len(self.metrics) == 1 else k * len(self.metrics)

    def _block(self, metric: str, x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        if metric in ("cosine", "angular"):
            tiny = torch.finfo(x.dtype).tiny
            unit_a = A / torch.linalg.vector_norm(A, dim=1, keepdim=True)
            unit_x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(tiny)
            out = unit_x @ unit_a.T
            if metric == "angular":
                out = out.clamp(-1.0, 1.0).arccos() * (-1.0 / math.pi) + 1.0
            return out
        if metric == "euclidean":
            return -torch.cdist(x, A, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
        return -torch.cdist(x, A, p=1.0 if metric == "l1" else float("inf"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Relative coordinates of a batch ``x`` of shape ``(n, n_features)``."""
        xc = x - self.shift
        A = self.anchors - self.shift
        k = A.shape[0]
        blocks = [self._block(m, xc, A) for m in self.metrics]
        if len(blocks) == 1:
            out = blocks[0]
        else:
            if self.aggregate != "concat":
                blocks = [nn.functional.layer_norm(b, (k,), eps=_LAYER_NORM_EPS) for b in blocks]
            out = torch.stack(blocks).sum(0) if self.aggregate == "sum" else torch.cat(blocks, dim=1)
        if self.top_k is None and self.power == 1.0:
            return out
        if self.top_k is not None and self.top_k < out.shape[1]:
            values, index = torch.topk(out, self.top_k, dim=1, largest=True, sorted=False)
            if self.power != 1.0:
                values = values.sign() * values.abs().pow(self.power)
            out = torch.zeros_like(out).scatter(1, index, values)
        elif self.power != 1.0:
            out = out.sign() * out.abs().pow(self.power)
        norms = torch.linalg.vector_norm(out, dim=1, keepdim=True)
        return out / norms.clamp_min(torch.finfo(out.dtype).tiny)

    def extra_repr(self) -> str:
        return (
            f"n_anchors={self.n_anchors}, n_features={int(self.anchors.shape[1])}, metrics={self.metrics}, "
            f"top_k={self.top_k}, power={self.power}, aggregate={self.aggregate!r}"
        )

    def config(self) -> dict[str, Any]:
        """JSON description (see :func:`module_config`)."""
        return {
            "n_anchors": self.n_anchors,
            "n_features": int(self.anchors.shape[1]),
            "metrics": list(self.metrics),
            "top_k": self.top_k,
            "power": self.power,
            "aggregate": self.aggregate,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], trainable: bool) -> RelativeMap:
        """An empty module of the described shape (fill it with ``load_state_dict``)."""
        return cls(
            torch.zeros(config["n_anchors"], config["n_features"]),
            torch.zeros(config["n_features"]),
            metrics=tuple(config["metrics"]),
            top_k=config["top_k"],
            power=config["power"],
            aggregate=config["aggregate"],
            trainable=trainable,
        )


class RelativeInverse(nn.Module):
    """Decode one metric block of relative coordinates into absolute target coordinates (least squares).

    The module of :meth:`RelativeProjection.inverse_transform
    <latentalign.align.relative.RelativeProjection.inverse_transform>`: the ``block``-th group of
    ``n_anchors`` columns is decoded with the pseudo-inverse of the (unit or shifted) centred target anchors
    (see :func:`latentalign.functional.relative.relative_inverse` for when it is exact), then ``offset``
    (the target anchors' mean) is added.

    Parameters
    ----------
    pinv_T : torch.Tensor of shape (n_anchors, n_features)
        Transposed pseudo-inverse of the decoder's anchor matrix.
    offset : torch.Tensor of shape (n_features,)
    metric : {"euclidean", "cosine", "angular"}
    block : int
        Which block of ``n_anchors`` columns to decode (0 for a single metric).
    sq : torch.Tensor of shape (n_anchors,), optional
        Squared norms of the shifted anchors (euclidean).
    mid : torch.Tensor of shape (n_features,), optional
        Mean of the centred anchors (euclidean).
    scale : float, optional
        Norm given to the decoded points (cosine, angular).
    """

    pinv_T: torch.Tensor
    offset: torch.Tensor
    sq: torch.Tensor
    mid: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        pinv_T: torch.Tensor,
        offset: torch.Tensor,
        *,
        metric: str,
        block: int = 0,
        sq: torch.Tensor | None = None,
        mid: torch.Tensor | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        k, d = pinv_T.shape
        dtype = pinv_T.dtype
        self.register_buffer("pinv_T", pinv_T.detach().clone())
        self.register_buffer("offset", offset.detach().clone().to(dtype))
        self.register_buffer("sq", (torch.zeros(k, dtype=dtype) if sq is None else sq.detach().clone()).to(dtype))
        self.register_buffer("mid", (torch.zeros(d, dtype=dtype) if mid is None else mid.detach().clone()).to(dtype))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=dtype))
        self.metric = metric
        self.block = int(block)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Absolute target coordinates of relative coordinates ``z``."""
        k = self.pinv_T.shape[0]
        R = z[:, self.block * k : (self.block + 1) * k]
        if self.metric == "euclidean":
            d2 = R.square()
            b = (self.sq - self.sq.mean()) - (d2 - d2.mean(1, keepdim=True))
            return 0.5 * (b @ self.pinv_T) + self.mid + self.offset
        C = torch.cos(math.pi * (1.0 - R)) if self.metric == "angular" else R
        U = C @ self.pinv_T
        U = U / torch.linalg.vector_norm(U, dim=1, keepdim=True).clamp_min(torch.finfo(U.dtype).tiny) * self.scale
        return U + self.offset

    def extra_repr(self) -> str:
        return f"n_anchors={int(self.pinv_T.shape[0])}, metric={self.metric!r}, block={self.block}"

    def config(self) -> dict[str, Any]:
        """JSON description (see :func:`module_config`)."""
        k, d = self.pinv_T.shape
        return {"n_anchors": int(k), "n_features": int(d), "metric": self.metric, "block": self.block}

    @classmethod
    def from_config(cls, config: dict[str, Any], trainable: bool) -> RelativeInverse:
        """An empty module of the described shape (fill it with ``load_state_dict``)."""
        return cls(
            torch.zeros(config["n_anchors"], config["n_features"]),
            torch.zeros(config["n_features"]),
            metric=config["metric"],
            block=config["block"],
        )


class Shift(nn.Module):
    """Add a fixed vector: ``x + offset`` (centring with ``offset = -mean``, its inverse with ``+mean``)."""

    offset: torch.Tensor

    def __init__(self, offset: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("offset", offset.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + offset``."""
        return x + self.offset

    def config(self) -> dict[str, Any]:
        """JSON description (see :func:`module_config`)."""
        return {"n_features": int(self.offset.shape[0])}

    @classmethod
    def from_config(cls, config: dict[str, Any], trainable: bool) -> Shift:
        """An empty module of the described shape."""
        return cls(torch.zeros(config["n_features"]))


class Standardize(nn.Module):
    """``(x - mean) / scale``, or its inverse ``x * scale + mean`` (``inverse=True``)."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, *, inverse: bool = False) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("scale", scale.detach().clone())
        self.inverse = bool(inverse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise (or undo it)."""
        if self.inverse:
            return x * self.scale + self.mean
        return (x - self.mean) / self.scale

    def extra_repr(self) -> str:
        return f"n_features={int(self.mean.shape[0])}, inverse={self.inverse}"

    def config(self) -> dict[str, Any]:
        """JSON description (see :func:`module_config`)."""
        return {"n_features": int(self.mean.shape[0]), "inverse": self.inverse}

    @classmethod
    def from_config(cls, config: dict[str, Any], trainable: bool) -> Standardize:
        """An empty module of the described shape."""
        n = config["n_features"]
        return cls(torch.zeros(n), torch.ones(n), inverse=config["inverse"])


class RowNormalize(nn.Module):
    """Scale every row to Euclidean norm ``norm`` (a buffer; rows of norm below 1e-12 are not enlarged)."""

    norm: torch.Tensor

    def __init__(self, norm: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("norm", torch.tensor(float(norm), dtype=_F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rows rescaled to norm ``norm``."""
        return x / x.norm(dim=1, keepdim=True).clamp_min(_ROW_EPS) * self.norm

    def config(self) -> dict[str, Any]:
        """JSON description (see :func:`module_config`)."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any], trainable: bool) -> RowNormalize:
        """An empty module (fill it with ``load_state_dict``)."""
        return cls()


class ZeroPad(nn.Module):
    """Append ``pad`` zero columns."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = int(pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with ``pad`` zero columns appended."""
        return nn.functional.pad(x, (0, self.pad))

    def config(self) -> dict[str, Any]:
        """JSON description (see :func:`module_config`)."""
        return {"pad": self.pad}

    @classmethod
    def from_config(cls, config: dict[str, Any], trainable: bool) -> ZeroPad:
        """The described module."""
        return cls(config["pad"])


class Truncate(nn.Module):
    """Keep the first ``n_features`` columns (the inverse of :class:`ZeroPad`)."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.n_features = int(n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The first ``n_features`` columns of ``x``."""
        return x[:, : self.n_features]

    def config(self) -> dict[str, Any]:
        """JSON description (see :func:`module_config`)."""
        return {"n_features": self.n_features}

    @classmethod
    def from_config(cls, config: dict[str, Any], trainable: bool) -> Truncate:
        """The described module."""
        return cls(config["n_features"])


def _step_module(step: Preprocessor, inverse: bool) -> nn.Module:
    mean = getattr(step, "mean_", None)
    if isinstance(step, StandardScale):
        return Standardize(step.mean_, step.scale_, inverse=inverse)
    if isinstance(step, Center) and mean is not None:
        return Shift(mean if inverse else -mean)
    if isinstance(step, L2Normalize):
        return RowNormalize(step.mean_norm_ if inverse else 1.0)
    if isinstance(step, ZeroPadStep):
        return Truncate(step.n_features_in_) if inverse else ZeroPad(step.pad_)
    raise NotImplementedError(
        f"{type(step).__name__} has no torch module; the steps with one are Center, StandardScale, "
        "L2Normalize and ZeroPad."
    )


def preprocessor_module(step: Preprocessor, *, inverse: bool = False) -> nn.Module:
    """The fitted preprocessing ``step`` (or its inverse) as a module; a ``Chain`` becomes ``nn.Sequential``.

    Parameters
    ----------
    step : Preprocessor
        A fitted :class:`~latentalign.preprocessing.Center`, ``StandardScale``, ``L2Normalize``,
        ``ZeroPad`` or a ``Chain`` of them.
    inverse : bool, default False
        The module of ``step.inverse_transform`` (a chain's steps undone in reverse order).

    Returns
    -------
    torch.nn.Module
        Buffers in the dtype the step was fitted in (float64).

    Examples
    --------
    >>> import torch
    >>> from latentalign.preprocessing import make_preprocessor
    >>> X = torch.randn(10, 3, dtype=torch.float64)
    >>> chain = make_preprocessor(["center", "l2"]).fit(X)
    >>> m = preprocessor_module(chain)
    >>> bool(torch.allclose(m(X), chain.transform(X)))
    True
    """
    if isinstance(step, Chain):
        steps = reversed(step.steps_) if inverse else step.steps_
        return nn.Sequential(*[_step_module(s, inverse) for s in steps])
    return _step_module(step, inverse)


def sandwich(before: nn.Module, core: nn.Module, after: nn.Module) -> nn.Module:
    """``after(core(before(x)))``: ``core`` alone when both sides are empty ``nn.Sequential``, else flat.

    Examples
    --------
    >>> from torch import nn
    >>> core = nn.Identity()
    >>> sandwich(nn.Sequential(), core, nn.Sequential()) is core
    True
    """
    parts: list[nn.Module] = []
    for part in (before, core, after):
        parts.extend(part if isinstance(part, nn.Sequential) else [part])
    return parts[0] if len(parts) == 1 else nn.Sequential(*parts)


def finalize_module(
    module: nn.Module, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> nn.Module:
    """Cast ``module`` to ``dtype`` (default: ``torch.get_default_dtype()``) and move it to ``device``.

    Examples
    --------
    >>> import torch
    >>> m = finalize_module(LinearMap(torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)))
    >>> m.weight.dtype
    torch.float32
    """
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (e.g. torch.float32), got {dtype!r}.")
    return module.to(device=device, dtype=dtype)


_MODULES: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (LinearMap, RelativeMap, RelativeInverse, Shift, Standardize, RowNormalize, ZeroPad, Truncate)
}
# Map modules defined beside their aligner, imported only when a description names them (the aligner
# modules import this one, so they cannot be imported here at load time).
_MODULES_ELSEWHERE = {"MLPMap": "latentalign.align.mlp", "KernelRidgeMap": "latentalign.align.kernel_ridge"}


def _module_class(name: Any) -> type[nn.Module] | None:
    if name in _MODULES:
        return _MODULES[name]
    if isinstance(name, str) and name in _MODULES_ELSEWHERE:
        return cast(type[nn.Module], getattr(importlib.import_module(_MODULES_ELSEWHERE[name]), name))
    return None


def module_config(module: nn.Module) -> dict[str, Any]:
    """A JSON-serialisable description of a map module (built by this module, ``nn.Sequential`` of them,
    or ``nn.Identity``), from which :func:`module_from_config` rebuilds it with empty buffers.

    Examples
    --------
    >>> import torch
    >>> m = LinearMap(torch.randn(2, 3), torch.randn(2))
    >>> copy = module_from_config(module_config(m))
    >>> _ = copy.load_state_dict(m.state_dict())
    >>> x = torch.randn(4, 3)
    >>> bool(torch.equal(copy(x), m(x)))
    True
    """
    if isinstance(module, nn.Sequential):
        return {"class": "Sequential", "children": [module_config(child) for child in module]}
    if isinstance(module, nn.Identity):
        return {"class": "Identity"}
    name = type(module).__name__
    if _module_class(name) is not type(module):
        raise TypeError(
            f"Cannot describe a {name} module: only latentalign's map modules "
            f"({sorted([*_MODULES, *_MODULES_ELSEWHERE])}), "
            "nn.Sequential of them and nn.Identity are saved by description."
        )
    trainable = any(True for _ in module.parameters(recurse=False))
    return {"class": name, "trainable": trainable, "config": module.config()}  # type: ignore[operator]


def module_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a module described by :func:`module_config` (buffers zero-filled, in float32).

    Load the values with ``module.load_state_dict(state)``, which also restores their dtype only if
    the module was cast first; see :meth:`latentalign.stitching.Stitcher.load`.
    """
    name = config.get("class")
    if name == "Sequential":
        return nn.Sequential(*[module_from_config(child) for child in config["children"]])
    if name == "Identity":
        return nn.Identity()
    cls = _module_class(name)
    if cls is None:
        raise ValueError(
            f"Unknown map module {name!r} in the saved description; known: "
            f"{sorted([*_MODULES, *_MODULES_ELSEWHERE])}. The file was written by another version of latentalign."
        )
    return cls.from_config(config["config"], bool(config.get("trainable", False)))  # type: ignore[attr-defined]
