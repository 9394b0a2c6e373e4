"""Row norms and the relative projection at the edges of float32's range."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentalign import RelativeProjection
from latentalign.functional.norms import row_norms


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("magnitude", [1e-35, 1e-25, 1.0, 1e18, 1e25, 1e35])
def test_row_norms_are_exact_at_any_magnitude(dtype, magnitude):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 7))
    expected = np.linalg.norm(X, axis=1) * magnitude
    got = row_norms(torch.tensor(X * magnitude, dtype=dtype))
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5)


def test_row_norms_keep_zero_rows_zero_and_keepdim():
    X = torch.tensor([[0.0, 0.0], [3e-30, 4e-30]])
    out = row_norms(X, keepdim=True)
    assert out.shape == (2, 1) and out[0, 0] == 0.0 and out[1, 0] > 0.0


@pytest.mark.parametrize("magnitude", [1e-30, 1e-20, 1e20, 1e30])
def test_relative_projection_is_scale_invariant_across_float32_range(magnitude):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 16)).astype(np.float32)
    Q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    Y = (X @ Q).astype(np.float32)
    reference = RelativeProjection().fit(X[:50], Y[:50]).transform(X)
    scaled = RelativeProjection().fit(X[:50] * magnitude, Y[:50] * magnitude)
    np.testing.assert_allclose(scaled.transform(X * magnitude), reference, atol=1e-5)
    np.testing.assert_allclose(scaled.transform_target(Y * magnitude), reference, atol=1e-5)
