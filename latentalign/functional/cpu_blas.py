"""Which library multiplies the score and moment blocks on the CPU: numpy's BLAS or torch's.

Both give the same products up to the rounding of the last bit, but not at the same speed, and not always
with the same rounding for equal inputs. numpy ships OpenBLAS, which picks a kernel for the CPU at import
time; torch's CPU wheel multiplies with MKL. Measured on two AMD EPYC machines (float32, 2 threads):

* with OpenBLAS's AVX-512 kernels (core ``Cooperlake``), numpy multiplied about 1.5x faster than torch,
  and its syrk computes a Gram matrix at half the flops of a GEMM;
* with its AVX2 kernels (core ``Haswell``), the two multiplied score tiles at about the same speed (numpy
  86 GFLOP/s against torch's 111 on one 4096 x 4096 x 768 product, 142 against 134 on the 1024 x 2048 tiles
  of an exact search), but numpy rounded equal keys differently by their place in the tile (the edge
  columns go through another micro-kernel), so exact copies of a key no longer tied with it; torch's
  products gave copies equal scores there. Linear CKA of 1e5 x 768 took 1.97 s with numpy's products and
  2.30 s with torch's (median of 7): syrk still wins there.

:func:`cpu_products` therefore multiplies *scores* (retrieval tiles, kNN searches, where equal keys must
tie) in numpy's BLAS only where OpenBLAS runs an AVX-512 core and in torch elsewhere, and *moments* (sums
of products, where no tie is read) in numpy's BLAS everywhere; :data:`CPU_PRODUCTS` overrides both.

Examples
--------
>>> cpu_products("moments")
'numpy'
>>> cpu_products("scores") in ("numpy", "torch")
True
"""

from __future__ import annotations

import functools

__all__ = ["CPU_PRODUCTS", "AVX512_CORES", "cpu_products", "openblas_core"]

#: ``"auto"`` (the choice of :func:`cpu_products`), ``"numpy"`` or ``"torch"``.
CPU_PRODUCTS = "auto"
#: OpenBLAS core names (lower case) whose kernels use AVX-512.
AVX512_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


def cpu_products(kind: str = "scores") -> str:
    """``"numpy"`` or ``"torch"``: the library of the CPU block products of ``kind`` (``"scores"`` or
    ``"moments"``, see the module docstring).

    Examples
    --------
    >>> import latentalign.functional.cpu_blas as cpu_blas
    >>> cpu_blas.CPU_PRODUCTS = "torch"
    >>> cpu_blas.cpu_products()
    'torch'
    >>> cpu_blas.CPU_PRODUCTS = "auto"
    """
    if kind not in ("scores", "moments"):
        raise ValueError(f"kind must be 'scores' or 'moments', got {kind!r}.")
    if CPU_PRODUCTS != "auto":
        if CPU_PRODUCTS not in ("numpy", "torch"):
            raise ValueError(
                f"latentalign.functional.cpu_blas.CPU_PRODUCTS must be 'auto', 'numpy' or 'torch', got "
                f"{CPU_PRODUCTS!r}. Set it to one of these."
            )
        return CPU_PRODUCTS
    if kind == "moments":
        return "numpy"
    core = openblas_core()
    return "numpy" if core is not None and core.lower() in AVX512_CORES else "torch"


@functools.cache
def openblas_core() -> str | None:
    """The kernel family numpy's OpenBLAS runs on this CPU (e.g. ``"Haswell"``), or ``None`` when numpy does
    not use OpenBLAS or the name cannot be read.

    Examples
    --------
    >>> core = openblas_core()
    >>> core is None or isinstance(core, str)
    True
    """
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl inspects)
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("internal_api") == "openblas" and "numpy" in str(info.get("filepath", "")):
            architecture = info.get("architecture")
            return str(architecture) if architecture else None
    return None
