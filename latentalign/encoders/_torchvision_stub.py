"""Import open_clip and timm on a machine without torchvision.

Both libraries import torchvision at module level (``torchvision.ops.misc.FrozenBatchNorm2d``, the
``torchvision.transforms`` pipeline, ``torchvision.datasets``), although building a model and running
its forward pass never touches it. PyPI's torchvision wheels are CUDA builds that replace a CPU torch,
so latentalign installs open_clip/timm with ``--no-deps`` and imports them through
:func:`import_without_torchvision`:

* if a working torchvision is installed, it is used and nothing here happens;
* otherwise a minimal stand-in package is placed in ``sys.modules`` *only for the duration of the
  import*, then removed: afterwards ``import torchvision`` still fails as before and
  ``importlib.util.find_spec("torchvision")`` is still ``None`` (so transformers is not misled).

The stand-in provides a real ``FrozenBatchNorm2d`` (a fixed affine batch norm, as in torchvision); every
other name is a placeholder class that raises :class:`~latentalign.exceptions.MissingDependencyError`
when called, so e.g. ``open_clip.create_model_and_transforms`` fails with a clear message at the
transform step, while ``open_clip.create_model`` works. latentalign's encoders use
:class:`latentalign.encoders.image.ImagePreprocess` in place of those transforms.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from latentalign.exceptions import MissingDependencyError

__all__ = ["import_without_torchvision", "torchvision_available"]

_LOCK = threading.Lock()
_PACKAGES = ("torchvision", "torchvision.ops", "torchvision.transforms", "torchvision.models")
_MODULES = (
    "torchvision",
    "torchvision.ops",
    "torchvision.ops.misc",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "torchvision.datasets",
    "torchvision.utils",
)


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (torchvision.ops.misc.FrozenBatchNorm2d)."""

    weight: torch.Tensor
    bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight.reshape(1, -1, 1, 1) * (self.running_var.reshape(1, -1, 1, 1) + self.eps).rsqrt()
        bias = self.bias.reshape(1, -1, 1, 1) - self.running_mean.reshape(1, -1, 1, 1) * scale
        return x * scale + bias


class _PlaceholderMeta(type):
    def __getattr__(cls, item: str) -> Any:
        if item.startswith("__"):
            raise AttributeError(item)
        return _placeholder(f"{cls.__qualname__}.{item}")


def _placeholder(qualname: str) -> type:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        raise MissingDependencyError(
            f"torchvision.{qualname} is needed here, but torchvision is not installed. latentalign "
            "replaces torchvision's image transforms with latentalign.encoders.image.ImagePreprocess; "
            "use the latentalign encoders (or install a torchvision that matches your torch)."
        )

    return _PlaceholderMeta(qualname.rsplit(".", 1)[-1], (), {"__init__": __init__, "__qualname__": qualname})


def _module_getattr(modname: str) -> Callable[[str], Any]:
    def __getattr__(item: str) -> Any:
        if item.startswith("__"):
            raise AttributeError(item)
        prefix = modname.partition(".")[2]
        return _placeholder(f"{prefix}.{item}" if prefix else item)

    return __getattr__


def _build_stub() -> dict[str, types.ModuleType]:
    mods: dict[str, types.ModuleType] = {}
    for name in _MODULES:
        mod = types.ModuleType(name, "latentalign stand-in for torchvision (import-time only)")
        is_pkg = name in _PACKAGES
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=is_pkg)
        if is_pkg:
            mod.__path__ = []
        mod.__dict__["__getattr__"] = _module_getattr(name)  # a module-level __getattr__ (PEP 562)
        mods[name] = mod
    mods["torchvision"].__version__ = "0.0.0+latentalign.stub"  # type: ignore[attr-defined]
    mods["torchvision.ops.misc"].FrozenBatchNorm2d = FrozenBatchNorm2d  # type: ignore[attr-defined]
    for name, mod in mods.items():
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(mods[parent], child, mod)
    return mods


def torchvision_available() -> bool:
    """True when a real torchvision imports cleanly."""
    if "torchvision" in sys.modules:
        return getattr(sys.modules["torchvision"], "__version__", "").endswith("latentalign.stub") is False
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision")
    except Exception:  # a CUDA torchvision beside a CPU torch raises RuntimeError at import
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


def import_without_torchvision(module: str, extra: str, *, purpose: str | None = None) -> types.ModuleType:
    """Import ``module`` (``"open_clip"`` or ``"timm"``), standing in for torchvision during the import
    if it is missing; raise :class:`MissingDependencyError` naming ``extra`` if ``module`` is missing."""
    from latentalign._optional import import_optional

    if module in sys.modules or torchvision_available():
        return import_optional(module, extra, purpose=purpose)
    with _LOCK:
        stub = _build_stub()
        added = [name for name in stub if name not in sys.modules]
        sys.modules.update({name: stub[name] for name in added})
        try:
            return import_optional(module, extra, purpose=purpose)
        finally:
            for name in added:
                if sys.modules.get(name) is stub[name]:
                    del sys.modules[name]
