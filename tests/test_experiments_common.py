"""The thread settings the experiment pages run under."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from latentalign.experiments.common import restore_threads, set_threads


def blas_thread_counts() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_torch_threads_also_pin_the_blas_under_numpy_and_restore_both():
    torch_before = torch.get_num_threads()
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_thread_counts() == {2}
        previous = set_threads({"torch_threads": 1})
        assert torch.get_num_threads() == 1
        assert blas_thread_counts() == {1}
        restore_threads(previous)
        assert blas_thread_counts() == {2}
    assert torch.get_num_threads() == torch_before


def test_no_thread_setting_changes_nothing():
    torch_before, blas_before = torch.get_num_threads(), blas_thread_counts()
    assert set_threads({"workers": 3}) is None
    restore_threads(None)
    assert (torch.get_num_threads(), blas_thread_counts()) == (torch_before, blas_before)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_a_thread_count_that_is_not_a_positive_whole_number_is_named(bad):
    torch_before, blas_before = torch.get_num_threads(), blas_thread_counts()
    with pytest.raises(ValueError, match=r"setup\.torch_threads must be a positive whole number .* got"):
        set_threads({"torch_threads": bad})
    assert (torch.get_num_threads(), blas_thread_counts()) == (torch_before, blas_before)
