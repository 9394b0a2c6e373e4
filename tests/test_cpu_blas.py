"""The choice of the CPU product library: numpy's BLAS only where OpenBLAS runs AVX-512 kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentalign.functional import blocks, cpu_blas


@pytest.mark.parametrize(
    ("core", "expected"),
    [("Cooperlake", "numpy"), ("SKYLAKEX", "numpy"), ("Haswell", "torch"), ("Zen", "torch"), (None, "torch")],
)
def test_auto_takes_numpy_only_with_avx512_kernels(monkeypatch, core, expected):
    monkeypatch.setattr(cpu_blas, "openblas_core", lambda: core)
    assert cpu_blas.cpu_products() == expected


def test_moments_take_numpys_syrk_whatever_the_kernels(monkeypatch):
    monkeypatch.setattr(cpu_blas, "openblas_core", lambda: "Haswell")
    assert cpu_blas.cpu_products("moments") == "numpy"
    monkeypatch.setattr(cpu_blas, "CPU_PRODUCTS", "torch")
    assert cpu_blas.cpu_products("moments") == "torch"
    with pytest.raises(ValueError, match="kind must be 'scores' or 'moments', got 'gram'"):
        cpu_blas.cpu_products("gram")


def test_an_explicit_choice_wins_and_a_wrong_one_is_named(monkeypatch):
    monkeypatch.setattr(cpu_blas, "openblas_core", lambda: "Haswell")
    monkeypatch.setattr(cpu_blas, "CPU_PRODUCTS", "numpy")
    assert cpu_blas.cpu_products() == "numpy"
    monkeypatch.setattr(cpu_blas, "CPU_PRODUCTS", "mkl")
    with pytest.raises(ValueError, match=r"CPU_PRODUCTS must be 'auto', 'numpy' or 'torch', got 'mkl'"):
        cpu_blas.cpu_products()


def test_the_core_is_read_from_numpys_openblas():
    core = cpu_blas.openblas_core()
    if "openblas" in str(np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]).lower():
        assert isinstance(core, str) and core
    else:
        assert core is None


def test_the_chosen_library_gives_copies_of_a_key_equal_scores_wherever_they_sit():
    # OpenBLAS's AVX2 kernels failed this (the edge columns of a tile go through another micro-kernel).
    rng = np.random.default_rng(4)
    K = rng.standard_normal((1000, 12)).astype(np.float32)
    copies = np.arange(150, 1000, 85)
    K[copies] = K[3]
    Q = rng.standard_normal((20, 12)).astype(np.float32)
    S = torch.cat(
        [blocks.product(torch.from_numpy(Q), torch.from_numpy(K[c : c + 208])) for c in range(0, 1000, 208)], 1
    )
    assert (S[:, copies] == S[:, 3:4]).all()
