"""Lazy imports of optional dependencies, failing with the extra to install."""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path
from types import ModuleType

from latentalign.exceptions import MissingDependencyError

__all__ = ["import_optional", "library_versions", "package_dir"]


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


def package_dir(package: ModuleType) -> Path:
    """The folder of an imported package, for the data files installed with it.

    Parameters
    ----------
    package : module
        An imported regular package (one with an ``__init__.py``).

    Returns
    -------
    pathlib.Path
        The folder holding the package's ``__init__.py``.

    Raises
    ------
    MissingDependencyError
        When ``package`` has no ``__file__`` (a namespace package: an incomplete installation).

    Examples
    --------
    >>> import json
    >>> (package_dir(json) / "decoder.py").exists()
    True
    """
    file = getattr(package, "__file__", None)
    if file is None:
        raise MissingDependencyError(
            f"package must be an installed regular package, but {package.__name__!r} has no __file__ (a "
            f"namespace package: its installation is incomplete). Reinstall it: pip install --force-reinstall "
            f"{package.__name__}"
        )
    return Path(file).parent


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
