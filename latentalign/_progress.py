"""The one progress-bar switch: every long step of the library asks :func:`progress_enabled`.

The command line's ``--no-progress`` sets :data:`PROGRESS_ENV` to ``0`` for the run; Python callers may
set it too (or pass ``enabled=``). An environment variable, not a module global, so that code in any
layer (datasets, encoders, experiments) and child processes read the same switch without importing the
command line.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["PROGRESS_ENV", "progress_enabled", "progress_bar", "byte_progress", "RoundProgress"]

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


@contextmanager
def byte_progress(total: int | None, *, desc: str, enabled: bool | None = None) -> Iterator[Callable[[int], None]]:
    """A bar over ``total`` bytes (in KB, MB, ...): the block yields ``advance(n_bytes)``.

    Off (``enabled`` or the switch), ``advance`` does nothing.

    Examples
    --------
    >>> with byte_progress(3 << 20, desc="copying", enabled=False) as advance:
    ...     for _ in range(3):
    ...         advance(1 << 20)
    """
    on = progress_enabled() if enabled is None else enabled
    if not on:
        yield lambda n: None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False) as bar:
        yield bar.update


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3g}"
    return "-" if value is None else str(value)


class RoundProgress:
    """Report the rounds of an iterative fit: a tqdm bar (unless progress is off) and DEBUG log lines.

    An instance is the ``on_round`` callback the loops of :mod:`latentalign.functional` take: they stay
    pure (no bar, no environment switch) and the estimator that calls them decides how rounds are shown.
    Each call advances the bar by one round, shows ``keys`` of the round's record as the bar's postfix
    and logs the whole record at DEBUG on ``logger``. On leaving the ``with`` block, one INFO line on
    ``logger`` says what ran, how many rounds and how long it took.

    Parameters
    ----------
    desc : str
        What runs (the bar's label and the start of the log lines), e.g. ``"OTAligner (sinkhorn)"``.
    logger : logging.Logger
        Where the DEBUG and INFO lines go (the calling module's ``logging.getLogger(__name__)``).
    total : int, optional
        Most rounds (the bar's length).
    keys : sequence of str, default ("changed", "map_change")
        Fields of each record shown in the bar's postfix, when present.
    unit : str, default "round"
    enabled : bool, optional
        Force the bar on or off; by default :func:`progress_enabled` decides. Logging is not affected.
    summary : bool, default True
        Whether leaving the block logs the INFO line (off for an inner stage whose caller logs one line
        for the whole fit).

    Attributes
    ----------
    n : int
        Rounds reported so far.
    seconds : float
        Time spent inside the ``with`` block (set on leaving it).
    outcome : str
        Set by the caller before leaving the block (e.g. ``"converged"``); appended to the INFO line.

    Examples
    --------
    >>> import logging
    >>> log = logging.getLogger("latentalign.example")
    >>> with RoundProgress("toy fit", logger=log, total=3, enabled=False) as on_round:
    ...     for r in range(1, 3):
    ...         on_round({"round": r, "changed": 1.0 / r})
    >>> on_round.n
    2
    """

    def __init__(
        self,
        desc: str,
        *,
        logger: logging.Logger,
        total: int | None = None,
        keys: Sequence[str] = ("changed", "map_change"),
        unit: str = "round",
        enabled: bool | None = None,
        summary: bool = True,
    ) -> None:
        self.desc = desc
        self.logger = logger
        self.total = total
        self.keys = tuple(keys)
        self.unit = unit
        self.enabled = progress_enabled() if enabled is None else enabled
        self.summary = summary
        self.n = 0
        self.seconds = 0.0
        self.outcome = ""
        self._bar: Any = None
        self._start = 0.0

    def __enter__(self) -> RoundProgress:
        self._start = time.perf_counter()
        self.n = 0
        if self.enabled:
            from tqdm.auto import tqdm

            # rounds are few and each is real work: redraw on every one (tqdm skips redraws within 0.1 s)
            self._bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, leave=False, mininterval=0)
        self.logger.debug("%s: started", self.desc)
        return self

    def __call__(self, record: Mapping[str, Any]) -> None:
        self.n += 1
        self.logger.debug(
            "%s: %s %d: %s", self.desc, self.unit, self.n, ", ".join(f"{k}={_format(v)}" for k, v in record.items())
        )
        if self._bar is not None:
            shown = {k: _format(record[k]) for k in self.keys if k in record}
            self._bar.set_postfix(shown, refresh=False)
            self._bar.update(1)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.seconds = time.perf_counter() - self._start
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if not self.summary:
            return
        if exc_type is not None:
            ended = f"stopped by {exc_type.__name__} after"
        else:
            ended = "done:" if not self.outcome else f"{self.outcome},"
        self.logger.info("%s %s %d %s(s) in %.2f s", self.desc, ended, self.n, self.unit, self.seconds)
