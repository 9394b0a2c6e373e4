"""Lazy imports of optional dependencies, failing with the extra to install."""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType

from latentalign.exceptions import MissingDependencyError

__all__ = ["import_optional", "library_versions"]


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


def library_versions(*packages: str) -> dict[str, str]:
    """Return ``{package: version}`` for the installed distributions among ``packages``.

    Examples
    --------
    >>> "numpy" in library_versions("numpy", "surely-not-installed-pkg")
    True
    """
    out: dict[str, str] = {}
    for pkg in packages:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
