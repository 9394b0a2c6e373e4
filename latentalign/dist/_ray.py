"""Lazy access to Ray (the ``dist`` extra); nothing here runs at import time."""

from __future__ import annotations

from types import ModuleType

from latentalign._optional import import_optional

__all__ = ["require_ray", "require_ray_data"]

_PURPOSE = "distributed embedding and fitting (latentalign.dist)"


def require_ray() -> ModuleType:
    """Import :mod:`ray` or raise :class:`~latentalign.exceptions.MissingDependencyError` naming the extra."""
    return import_optional("ray", "dist", purpose=_PURPOSE)


def require_ray_data() -> ModuleType:
    """Import :mod:`ray.data` (Ray Data) or raise naming the ``dist`` extra."""
    require_ray()
    return import_optional("ray.data", "dist", purpose=_PURPOSE)
