"""Lazy imports of optional dependencies, failing with the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from latentalign.exceptions import MissingDependencyError

__all__ = ["import_optional"]


def import_optional(module: str, extra: str, *, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"ot"``.
    extra : str
        The latentalign extra that installs it, e.g. ``"ot"``.
    purpose : str, optional
        What the module is needed for, used in the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"The optional dependency {module!r} is needed{what} but could not be imported ({exc}). "
            f"Install it with: pip install 'latentalign[{extra}]'"
        ) from exc
