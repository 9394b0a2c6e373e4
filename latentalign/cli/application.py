"""The typer application every command registers on, its global options, and the one place user errors
become one line.

Exit codes: 0 success, 1 an error (one ``Error: ...`` line on stderr), 2 a usage error (click's message
naming the option, or :func:`usage_error`).
"""

from __future__ import annotations

import enum
import functools
import logging
import platform
import sys
from collections.abc import Callable
from typing import Any

from latentalign._optional import import_optional
from latentalign._version import __version__
from latentalign.cli.logs import configure_output

typer = import_optional("typer", "cli", purpose="the latentalign command line")

__all__ = ["app", "command", "USER_ERRORS", "usage_error", "AlignerName", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
logger = logging.getLogger(__name__)

app = typer.Typer(
    name="latentalign",
    help="Align the latent spaces of pretrained models: embed, fit maps, evaluate retrieval, stitch, report.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"latentalign {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _global_options(
    ctx: typer.Context,  # type: ignore[name-defined]  # typer is imported lazily, as a module value
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log every step (DEBUG)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="log warnings and errors only"),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="progress bars (ours and those of transformers, huggingface_hub)"
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Align the latent spaces of pretrained models: embed, fit maps, evaluate retrieval, stitch, report."""
    if verbose and quiet:
        raise usage_error("--verbose and --quiet contradict each other; give one of them.", "'--verbose' / '--quiet'")
    ctx.call_on_close(configure_output(verbosity=1 if verbose else -1 if quiet else 0, progress=progress))
    logger.debug("latentalign %s on Python %s; command line %s", __version__, platform.python_version(), sys.argv)


def usage_error(message: str, options: str | None = None) -> Any:
    """A usage error (exit code 2) with ``message`` about ``options`` (e.g. ``"'--pairs' / '--unpaired'"``);
    ``raise`` it.

    Examples
    --------
    >>> usage_error("give --pairs FILE or --unpaired.").exit_code
    2
    """
    return typer.BadParameter(message, param_hint=options)


class AlignerName(str, enum.Enum):
    """The ``-m`` choices of ``fit`` and ``diagnose``: a wrong name is a usage error listing these (exit 2).

    Kept equal to :func:`latentalign.align.list_aligners` by a test; listed here so that ``--help`` imports
    no aligner.

    Examples
    --------
    >>> AlignerName("ot").value
    'ot'
    """

    affine = "affine"
    kernel_ridge = "kernel_ridge"
    lfm = "lfm"
    mlp = "mlp"
    ot = "ot"
    procrustes = "procrustes"
    relative = "relative"
    unsupervised = "unsupervised"


#: Library errors a user can cause (bad or truncated files, wrong shapes, missing packages, a locked store): shown as one
#: "Error: ..." line on stderr with exit code 1 instead of a traceback.
USER_ERRORS = (ValueError, TypeError, KeyError, OSError, EOFError, ImportError, RuntimeError)


def command(name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``app.command`` that reports user errors as one ``Error: ...`` line and exit code 1.

    Parameters
    ----------
    name : str, optional
        The command's name on the command line (default: the function's name).

    Returns
    -------
    callable
        A decorator that registers the function on :data:`app`.

    Examples
    --------
    >>> from typer.testing import CliRunner
    >>> @command("example-fail")
    ... def example_fail() -> None:
    ...     raise ValueError("X has 3 rows, Y has 4; give paired rows.")
    >>> result = CliRunner().invoke(app, ["example-fail"])
    >>> result.exit_code, result.output.strip()
    (1, 'Error: X has 3 rows, Y has 4; give paired rows. (ValueError)')
    >>> app.registered_commands.pop() and None  # keep the example out of the real command list
    """

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own (Exit is a RuntimeError)
                raise
            except USER_ERRORS as exc:
                message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
                message = " ".join(message.split())  # one line, whatever the library's message holds
                typer.echo(f"Error: {message} ({type(exc).__name__})", err=True)
                raise typer.Exit(EXIT_ERROR) from exc

        return app.command(name)(wrapper)

    return register
