"""Float64 brute-force references shared by the retrieval tests: the full score matrix, sorted."""

from __future__ import annotations

import numpy as np


def brute_topk(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Decreasing score, lower key index first among equal scores (a stable sort of the negated scores)."""
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(S, order, axis=1), order


def brute_csls(Q: np.ndarray, K: np.ndarray, csls_k: int) -> np.ndarray:
    """The full CSLS matrix in float64 (MUSE's formula)."""
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    Kn = K / np.linalg.norm(K, axis=1, keepdims=True)
    C = Qn @ Kn.T
    r_q = -np.sort(-C, axis=1)[:, :csls_k].mean(1)
    r_k = -np.sort(-C, axis=0)[:csls_k].mean(0)
    return 2 * C - r_q[:, None] - r_k[None, :]
