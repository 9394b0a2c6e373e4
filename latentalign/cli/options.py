"""Checks of option values shared by the commands: output paths, ``--device`` and lists of cut-offs.

Each runs before any work starts, so a wrong value costs nothing, and raises with a message that names
the option, says what was received and what to do instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from latentalign.cli.application import typer

__all__ = ["check_output", "check_device", "parse_cutoffs"]


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``.`` for a relative path with none)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_output(path: Path, option: str, *, directory: bool) -> Path:
    """Check that ``path`` can be written before a command computes anything; return it.

    Parameters
    ----------
    path : pathlib.Path
        The output path as given on the command line (it need not exist yet).
    option : str
        The option's name, for messages (e.g. ``"--out"``).
    directory : bool
        Whether the command writes files into ``path`` (a directory) or writes ``path`` itself (a file).

    Returns
    -------
    pathlib.Path
        ``path``, unchanged.

    Raises
    ------
    IsADirectoryError
        If a file is expected and ``path`` is an existing directory.
    NotADirectoryError
        If ``path`` (as a directory) or one of its parent folders is an existing file.
    PermissionError
        If the folder it would be created in is not writable by this user.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> check_output(root / "new" / "map.safetensors", "--out", directory=False) == root / "new" / "map.safetensors"
    True
    >>> (root / "notes.txt").write_text("x")
    1
    >>> check_output(root / "notes.txt" / "runs", "--out", directory=True)
    Traceback (most recent call last):
    ...
    NotADirectoryError: --out ...: ...notes.txt' is a file, so no folder can be created inside it. ...
    """
    where = _nearest_existing(path)
    if where == path:  # it exists: it must be of the expected kind
        if directory and not path.is_dir():
            raise NotADirectoryError(
                f"{option} {str(path)!r} is a file, but a directory is expected here (the command writes "
                "several files into it); give a directory path."
            )
        if not directory and path.is_dir():
            raise IsADirectoryError(
                f"{option} {str(path)!r} is a directory, but a file path is expected here; give a file name "
                f"inside it, e.g. {str(path / 'output.safetensors')!r}."
            )
        folder = path if directory else path.parent
    elif not where.is_dir():
        raise NotADirectoryError(
            f"{option} {str(path)!r}: {str(where)!r} is a file, so no folder can be created inside it. "
            "Choose a path whose parent folders are directories."
        )
    else:
        folder = where
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{option} {str(path)!r} cannot be written: the directory {str(folder)!r} is not writable by this "
            "user. Choose a writable location, or change that directory's permissions."
        )
    return path


def check_device(device: str, option: str = "--device") -> str:
    """Check that torch can use ``device`` on this machine; return it.

    Parameters
    ----------
    device : str
        A torch device string such as ``"cpu"``, ``"cuda"`` or ``"cuda:1"``.
    option : str
        The option's name, for messages.

    Returns
    -------
    str
        ``device``, unchanged.

    Raises
    ------
    ValueError
        If ``device`` is not a torch device string, or names an accelerator this machine's torch cannot
        use (CPU-only build, no GPU, or a GPU index beyond the ones present).

    Examples
    --------
    >>> check_device("cpu")
    'cpu'
    >>> check_device("gpu0")
    Traceback (most recent call last):
    ...
    ValueError: --device expects a torch device such as 'cpu', 'cuda' or 'cuda:0', got 'gpu0'.
    """
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(
            f"{option} expects a torch device such as 'cpu', 'cuda' or 'cuda:0', got {device!r}."
        ) from None
    if parsed.type == "cpu":
        return device
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                f"this torch ({torch.__version__}) was built without CUDA"
                if torch.version.cuda is None
                else "torch sees no CUDA GPU on this machine"
            )
            raise ValueError(
                f"{option} {device!r} asks for a CUDA GPU, but {why}. Use --device cpu, or install a CUDA "
                "build of torch (https://pytorch.org/get-started/locally/) on a machine with an NVIDIA GPU."
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(
                f"{option} {device!r} names GPU {parsed.index}, but this machine has {count} CUDA device(s) "
                f"(cuda:0 to cuda:{count - 1}). Pick one of those, or --device cpu."
            )
        return device
    backend = getattr(torch.backends, parsed.type, None) or getattr(torch, parsed.type, None)
    available = getattr(backend, "is_available", None)
    if callable(available) and not available():
        raise ValueError(
            f"{option} {device!r} asks for a {parsed.type} device, which this torch build or machine does not "
            "offer. Use --device cpu (or cuda on a machine with an NVIDIA GPU)."
        )
    return device


def parse_cutoffs(value: str, option: str) -> tuple[int, ...]:
    """Read a comma-separated list of positive integers (e.g. ``--k 1,5,10``).

    Parameters
    ----------
    value : str
        The option's text.
    option : str
        The option's name, for messages.

    Returns
    -------
    tuple of int

    Raises
    ------
    typer.BadParameter
        If an item is not a positive integer (the message names ``option``).

    Examples
    --------
    >>> parse_cutoffs("1, 5,10", "--k")
    (1, 5, 10)
    """
    items = [item.strip() for item in value.split(",")]
    bad = [item for item in items if not item.isdigit() or int(item) < 1]
    if bad:
        raise typer.BadParameter(
            f"expected comma-separated positive integers such as 1,5,10, got {value!r} "
            f"({bad[0]!r} is not a positive integer).",
            param_hint=f"'{option}'",
        )
    return tuple(int(item) for item in items)
