"""The array backend: numpy in -> numpy out, torch in -> torch out.

All maths in latentalign runs on torch tensors (CPU or GPU). Public functions accept numpy arrays or
torch tensors, convert them to tensors without copying (``torch.from_numpy``), and convert results back
to the caller's kind, dtype and device with :func:`restore`. Mixing numpy and torch in one call raises.

Tensors are detached on the way in: fitting and scoring are not differentiable (SVDs, sorting, numpy
round trips), so a tensor with ``requires_grad=True`` is read as plain data and results carry no graph.
Gradients go through the modules of ``Aligner.to_module()`` and :class:`~latentalign.stitching.Stitcher`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import torch

__all__ = ["ArrayLike", "ArraySpec", "as_tensor", "restore", "backend_of", "check_same_backend"]

ArrayLike: TypeAlias = np.ndarray | torch.Tensor

_FLOAT_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class ArraySpec:
    """How an input array looked, so that outputs can be returned the same way.

    Attributes
    ----------
    backend : {"numpy", "torch"}
        The kind of array the caller passed.
    dtype : torch.dtype
        The caller's floating dtype (non-float inputs are reported as float32).
    device : torch.device
        The caller's device (always CPU for numpy).
    """

    backend: str
    dtype: torch.dtype
    device: torch.device

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype maths runs in: float64 stays float64, everything else computes in float32."""
        return torch.float64 if self.dtype == torch.float64 else torch.float32


def backend_of(x: Any) -> str:
    """Return ``"torch"`` for a tensor, ``"numpy"`` for anything else array-like."""
    return "torch" if isinstance(x, torch.Tensor) else "numpy"


def check_same_backend(**arrays: Any) -> str:
    """Raise ``TypeError`` when the named arrays mix numpy and torch; return the common backend.

    Examples
    --------
    >>> import numpy as np, torch
    >>> check_same_backend(X=np.zeros((2, 2)), Y=np.ones((2, 2)))
    'numpy'
    """
    kinds = {name: backend_of(a) for name, a in arrays.items() if a is not None}
    if len(set(kinds.values())) > 1:
        described = ", ".join(f"{name} is {kind}" for name, kind in kinds.items())
        raise TypeError(
            f"Inputs mix numpy arrays and torch tensors ({described}). Pass all inputs as numpy arrays "
            "or all as torch tensors (e.g. torch.from_numpy(X) or T.cpu().numpy())."
        )
    return next(iter(kinds.values()), "numpy")


def as_tensor(x: Any) -> tuple[torch.Tensor, ArraySpec]:
    """Convert ``x`` to a floating torch tensor without copying where possible.

    Parameters
    ----------
    x : numpy.ndarray, torch.Tensor or array-like
        Input data. Lists and other sequences are converted with ``numpy.asarray``.

    Returns
    -------
    tensor : torch.Tensor
        A float32 or float64 tensor sharing memory with ``x`` when ``x`` already had that dtype, detached
        from any autograd graph (``requires_grad=False``).
    spec : ArraySpec
        What the caller passed, for :func:`restore`.

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(3, 2, requires_grad=True)
    >>> t, spec = as_tensor(x)
    >>> t.requires_grad, t.data_ptr() == x.data_ptr(), spec.backend
    (False, True, 'torch')
    """
    if isinstance(x, torch.Tensor):
        x = x.detach()  # not a copy: the same storage, without the graph
        spec = ArraySpec("torch", x.dtype if x.dtype in _FLOAT_DTYPES else _float_like(x.dtype), x.device)
        t = x if x.dtype in _FLOAT_DTYPES else x.to(spec.compute_dtype)
        return t, spec
    arr = np.asarray(x)
    if arr.dtype == object:  # e.g. a DataFrame of mixed columns; non-numbers raise TypeError here
        arr = arr.astype(np.float64)
    if arr.dtype == np.float64:
        dtype = torch.float64
    elif arr.dtype == np.float32:
        dtype = torch.float32
    else:
        dtype = torch.float32
        arr = arr.astype(np.float32) if arr.dtype.kind in "fiub" else arr
    if arr.dtype.kind not in "f":
        # Let validation report non-numeric inputs with the argument's name.
        raise TypeError(f"expected a numeric array, got dtype {arr.dtype}")
    spec = ArraySpec("numpy", dtype, torch.device("cpu"))
    if any(stride < 0 for stride in arr.strides):
        arr = np.ascontiguousarray(arr)
    with warnings.catch_warnings():
        # Read-only arrays (memory-mapped stores) are shared, not copied; latentalign never writes to inputs.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(arr), spec


def _float_like(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype.is_floating_point else torch.float32


def restore(t: torch.Tensor, spec: ArraySpec) -> ArrayLike:
    """Return ``t`` in the caller's kind, dtype and device (inverse of :func:`as_tensor`)."""
    if spec.backend == "torch":
        return t.to(device=spec.device, dtype=spec.dtype)
    out_dtype = torch.float64 if spec.dtype == torch.float64 else torch.float32
    return t.detach().to(device="cpu", dtype=out_dtype).numpy()
