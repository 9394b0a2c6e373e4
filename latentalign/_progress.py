"""The one progress-bar switch: every long step of the library asks :func:`progress_enabled`.

The command line's ``--no-progress`` sets :data:`PROGRESS_ENV` to ``0`` for the run; Python callers may
set it too (or pass ``enabled=``). An environment variable, not a module global, so that code in any
layer (datasets, encoders, experiments) and child processes read the same switch without importing the
command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["PROGRESS_ENV", "progress_enabled", "progress_bar"]

#: Environment variable that turns latentalign's progress bars off when ``0``, ``false``, ``no`` or ``off``.
PROGRESS_ENV = "LATENTALIGN_PROGRESS"
_OFF = ("0", "false", "no", "off")

T = TypeVar("T")


def progress_enabled() -> bool:
    """Whether progress bars are on (``$LATENTALIGN_PROGRESS`` is not ``0``/``false``/``no``/``off``).

    Examples
    --------
    >>> import os
    >>> os.environ[PROGRESS_ENV] = "0"
    >>> progress_enabled()
    False
    >>> del os.environ[PROGRESS_ENV]
    >>> progress_enabled()
    True
    """
    return os.environ.get(PROGRESS_ENV, "1").strip().lower() not in _OFF


def progress_bar(
    items: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it", enabled: bool | None = None
) -> Iterator[T]:
    """``items`` wrapped in a tqdm bar on stderr, unless progress is off (``enabled`` or the switch).

    Examples
    --------
    >>> list(progress_bar(range(3), desc="counting", enabled=False))
    [0, 1, 2]
    """
    on = progress_enabled() if enabled is None else enabled
    if not on:
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False)
