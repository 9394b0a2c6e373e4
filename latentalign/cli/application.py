"""The typer application every command registers on, and the one place user errors become one line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from latentalign._optional import import_optional

typer = import_optional("typer", "cli", purpose="the latentalign command line")

__all__ = ["app", "command", "main", "USER_ERRORS"]

app = typer.Typer(
    name="latentalign",
    help="Align the latent spaces of pretrained models: embed, fit maps, evaluate retrieval, stitch, report.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)

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
                raise typer.Exit(1) from exc

        return app.command(name)(wrapper)

    return register


def main() -> None:
    """Console-script entry point (``latentalign``): run the command line with every command registered."""
    import latentalign.cli  # noqa: F401  (importing the package registers the commands)

    app()
