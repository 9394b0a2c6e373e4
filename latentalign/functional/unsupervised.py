"""Alignment without any known pair: an unsupervised first dictionary, then robust self-learning.

Pure functions on tensors (:func:`unsupervised_alignment` also takes numpy arrays). Rows are expected
in order of importance (e.g. word frequency): the first rows feed the initial dictionary and the
dictionary induction, as in VecMap.

Starts (the first dictionary, from no pair at all)
--------------------------------------------------
* :func:`sorted_similarity_dictionary` -- VecMap's fully unsupervised initialisation (Artetxe, Labaka
  and Agirre, ACL 2018). The similarity matrix of the first ``n`` rows of one space, ``K = X X^T``, is
  unknown up to the row order relative to the other space's, but each row's *sorted* values of
  ``sqrt(K) = U S U^T`` do not depend on a rotation of the space nor on the order of the rows. Those
  sorted rows are comparable across spaces: nearest neighbours between them (CSLS, both directions)
  give the first dictionary.
* :func:`neighbourhood_similarity_dictionary` -- the same sorted profile of each row, next to the mean
  profile of its nearest neighbours in its own space. Still blind to rotations and to the row order, but
  less noisy between spaces that are only roughly isometric: on MiniLM-L6 vs e5-small gloss embeddings,
  where self-learning from VecMap's start failed on every seed, it matches about twice as many rows
  right, enough for self-learning to succeed from some starts. The default starts alternate it with
  VecMap's.
* :func:`gw_dictionary` -- Gromov-Wasserstein on cosine distances (Alvarez-Melis and Jaakkola, 2018):
  entropic GW annealed from a large to a small regularisation, each step warm-started from the last
  plan; the plan's row and column maxima give the first dictionary.

Self-learning (:func:`self_learning_map`)
----------------------------------------
Alternate an orthogonal map fitted on the dictionary and a new dictionary induced under that map, with
VecMap's robustness devices: CSLS retrieval, *stochastic* dictionary induction (each similarity is kept
with probability ``p``, which grows from 0.1 to 1 each time the objective stalls, so early rounds can
leave a poor start), a frequency cut-off (only the first ``vocab_cutoff`` rows take part) and a
bidirectional dictionary (source-to-target plus target-to-source matches).

The loop ends on the map itself: once ``p = 1``, it stops when the relative change of the map between
rounds, ``||W_t - W_{t-1}||_F / ||W_t||_F``, falls below ``tol``.

Restarts (:func:`unsupervised_alignment`)
-----------------------------------------
A weak start is the usual failure: on real embeddings the first dictionary can be right for well under
1 % of the rows, and whether self-learning then finds the true map depends on the start and on the
random dictionaries of the stochastic rounds. The starts are therefore made different from each other
(:func:`candidate_starts`: neighbourhood and plain sorted-similarity profiles, over different
neighbourhoods, frequency cut-offs and random subsets of the first rows, Gromov-Wasserstein couplings
from different starting plans), each is screened by a self-learning run on the first ``screen_size``
rows (until its map settles), and only the one with the best *unsupervised* score
(:func:`dictionary_score`: the mean CSLS score of the mutual nearest neighbours under its map) goes on to
the full self-learning. No ground truth enters the loop.

All the ``n x n`` work (similarities, CSLS, dictionary induction) runs in float32; only the ``d x d``
polar factor, and the final map fitted on the final dictionary, use the input's precision. With fewer
source rows than dimensions (image features: a few hundred rows of 1,280 dimensions) the rounds rotate
the rows' coordinates in their own spans (:mod:`latentalign.functional.row_span`): the same similarities,
an ``n x n`` polar factor per round instead of ``d x d``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from latentalign._array import ArrayLike
from latentalign._validation import check_choice, check_number, check_pair
from latentalign.exceptions import ConvergenceWarning
from latentalign.functional.blocks import one_torch_thread
from latentalign.functional.ot import gw_loss, gw_plan_tensors
from latentalign.functional.ot_rounds import OnRound, check_pairs
from latentalign.functional.procrustes import polar_factor
from latentalign.functional.retrieval import retrieval_scores
from latentalign.functional.row_span import reduces, row_span, with_length_column
from latentalign.functional.self_learning import mutual_csls_tensors

__all__ = [
    "UNSUPERVISED_INITS",
    "GW_ANNEALING",
    "UnsupervisedFit",
    "normalize_rows",
    "candidate_starts",
    "extra_start",
    "identity_dictionary",
    "use_identity_start",
    "sorted_similarity_dictionary",
    "neighbourhood_similarity_dictionary",
    "gw_dictionary",
    "induce_dictionary",
    "map_change",
    "dictionary_score",
    "pair_retrieval",
    "pairs_needed",
    "self_learning_map",
    "unsupervised_alignment",
]

UNSUPERVISED_INITS = ("neighbourhood", "vecmap", "gw", "mixed")
#: Nearest neighbours averaged by :func:`neighbourhood_similarity_dictionary`, as fractions of the rows
#: compared: the first neighbourhood start and the later ones cycle through them.
NEIGHBOURHOOD_FRACTIONS = (1 / 16, 1 / 8, 1 / 32)
#: Entropic GW regularisations of the annealing (relative to the mean cosine distance). Below about
#: 2e-3 POT's entropic solver underflows in float64; the annealing stops at the last step that worked.
GW_ANNEALING = (0.05, 0.02, 0.01, 0.005)


def normalize_rows(X: torch.Tensor) -> torch.Tensor:
    """VecMap's normalisation: unit length, centred, unit length again (zero rows stay zero).

    Examples
    --------
    >>> import torch
    >>> Z = normalize_rows(torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]]))
    >>> torch.allclose(Z.norm(dim=1), torch.ones(3))
    True
    """
    unit = torch.nn.functional.normalize
    Z = unit(X, dim=1)
    return unit(Z - Z.mean(0), dim=1)


def _polar(M: torch.Tensor) -> torch.Tensor:
    """:func:`polar_factor` of a small matrix, on one thread."""
    with one_torch_thread():
        return polar_factor(M)[0]


def _sqrt_gram(A: torch.Tensor) -> torch.Tensor:
    """``sqrt(A A^T) = U S U^T`` (n x n, float32) from the d x d Gram matrix, not an n x d SVD.

    With ``A = U S V^T``: ``A V = U S``, so ``U S U^T = (A V S^-1/2)(A V S^-1/2)^T``.
    """
    C = A.T.to(torch.float64) @ A.to(torch.float64)
    with one_torch_thread():
        evals, V = torch.linalg.eigh(C)
    s = evals.clamp(min=0).sqrt()
    inv_sqrt = torch.where(s > 1e-6 * s.max(), s.clamp(min=1e-300).rsqrt(), torch.zeros_like(s))
    P = A.to(torch.float32) @ (V * inv_sqrt).to(torch.float32)
    return P @ P.T


def _topk_mean(S: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the ``k`` largest values of each row (the CSLS penalty of each row)."""
    return S.topk(min(k, S.shape[1]), dim=1).values.mean(1)


def _csls_union(
    S: torch.Tensor, k: int, keep_prob: float, gen: torch.Generator | None, *, inplace: bool = False
) -> tuple[torch.Tensor, ...]:
    """Bidirectional CSLS matches of a similarity matrix, each entry kept with probability ``keep_prob``.

    Returns ``(rows, cols, best_fwd, best_bwd)``: the union dictionary (every source row with its best
    target, then every target row with its best source) and the best plain similarities per row and
    per column (VecMap's objective). ``inplace=True`` lets it overwrite ``S``.
    """
    St = S.T.contiguous()  # row-wise reductions on a contiguous copy are several times faster
    r_src = _topk_mean(S, k)  # each source row's mean similarity to its k nearest targets
    r_trg = _topk_mean(St, k)
    best_fwd = S.max(1).values
    best_bwd = St.max(1).values
    # CSLS = 2 S - r_src - r_trg; the row's own penalty does not change its argmax, so the matches
    # are the argmax of S - r_trg / 2 (halved: the same order as 2 S - r_trg).
    fwd = S.sub_(r_trg[None, :] / 2) if inplace else S - r_trg[None, :] / 2
    bwd = St.sub_(r_src[None, :] / 2)
    if keep_prob < 1.0:
        for M in (fwd, bwd):
            drop = torch.rand(M.shape, generator=gen, dtype=M.dtype).to(M.device) >= keep_prob
            M.masked_fill_(drop, -math.inf)
    n_x, n_y = S.shape
    dev = S.device
    rows = torch.cat([torch.arange(n_x, device=dev), bwd.argmax(1)])
    cols = torch.cat([fwd.argmax(1), torch.arange(n_y, device=dev)])
    return rows, cols, best_fwd, best_bwd


def sorted_similarity_dictionary(
    X: torch.Tensor, Y: torch.Tensor, *, n: int = 4000, csls_k: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """VecMap's unsupervised first dictionary from the sorted similarity distributions of each space.

    Parameters
    ----------
    X : torch.Tensor of shape (n_x, d_x)
    Y : torch.Tensor of shape (n_y, d_y)
        Rows in order of importance (the first ``n`` of each are used); any dimensions.
    n : int, default 4000
        Rows of each side compared (at most ``min(n_x, n_y)`` are used).
    csls_k : int, default 10
        CSLS neighbourhood between the two sets of sorted rows.

    Returns
    -------
    rows, cols : torch.Tensor of shape (2 m,), int64
        The dictionary ``X[rows[i]] <-> Y[cols[i]]``: each of the ``m`` first rows of ``X`` with its best
        match among the first ``m`` of ``Y``, then each of those of ``Y`` with its best match in ``X``.

    Examples
    --------
    A rotated, shuffled copy of a clustered cloud is matched without any pair:

    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> centres = torch.randn(8, 6, generator=gen, dtype=torch.float64) * 3
    >>> X = centres[torch.arange(200) % 8] + torch.randn(200, 6, generator=gen, dtype=torch.float64)
    >>> Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    >>> perm = torch.randperm(200, generator=gen)
    >>> rows, cols = sorted_similarity_dictionary(X, (X @ Q)[perm], n=200)
    >>> hit = (perm[cols[:200]] == rows[:200]).double().mean()
    >>> bool(hit > 0.2)  # far above chance (1/200): enough for self-learning to take over
    True
    """
    return _profile_dictionary(X, Y, int(min(n, X.shape[0], Y.shape[0])), csls_k, neighbours=0)


def _sorted_profiles(A: torch.Tensor, neighbours: int) -> torch.Tensor:
    """Each row's sorted similarity profile next to the mean profile of its ``neighbours`` nearest rows."""
    K = _sqrt_gram(normalize_rows(A.to(torch.float32)))
    own = normalize_rows(K.sort(dim=1).values)
    if neighbours < 1:
        return own
    K.fill_diagonal_(-math.inf)  # a row is not its own neighbour
    nearest = K.topk(neighbours, dim=1).indices
    averaging = torch.zeros_like(K).scatter_(1, nearest, 1.0 / neighbours)
    return normalize_rows(torch.cat([own, normalize_rows(averaging @ own)], dim=1))


def neighbourhood_similarity_dictionary(
    X: torch.Tensor, Y: torch.Tensor, *, n: int = 4000, csls_k: int = 10, neighbours: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """First dictionary from each row's sorted similarities and those of its nearest neighbours.

    :func:`sorted_similarity_dictionary` describes a row by its own sorted similarities to the other
    rows of its space. Between spaces that are only roughly isometric those profiles are noisy; the mean
    profile of the row's ``neighbours`` nearest rows (in the same space) is a smoother, still
    order-free, description of where the row lies. Both profiles side by side are matched across the
    spaces by CSLS. On the few_and_no_pairs page's cases (zero pairs, items shuffled, 80 % of the items,
    a sixteenth of them as neighbours) this about doubled the share of right first matches: 1.6 % ->
    3.0 % (MiniLM-L6 -> MPNet glosses), 0.4 % -> 0.9 % (MiniLM-L6 -> e5-small glosses), 7.0 % -> 14.0 %
    (Tux Paint captions), 0.8 % -> 1.2 % (GloVe-50 -> fastText-fr words). On e5-small glosses, where
    self-learning from VecMap's start failed on every seed, that is enough for it to succeed from some
    starts.

    Parameters
    ----------
    X, Y : torch.Tensor of shape (n_x, d_x), (n_y, d_y)
        As in :func:`sorted_similarity_dictionary`: rows in order of importance, any dimensions.
    n : int, default 4000
        Rows of each side compared.
    csls_k : int, default 10
        CSLS neighbourhood between the two sets of profiles.
    neighbours : int, optional
        Nearest rows averaged per row (default: a sixteenth of the rows compared; 0: the plain sorted
        similarities of :func:`sorted_similarity_dictionary`). Memory: a few ``n x n`` float32 matrices.

    Returns
    -------
    rows, cols : torch.Tensor of shape (2 m,), int64
        As :func:`sorted_similarity_dictionary`'s.

    Examples
    --------
    A rotated, shuffled and noisy copy of a clustered cloud (so only roughly isometric): the neighbourhood
    profiles match more of its rows right than the plain sorted similarities (chance: 1/400):

    >>> import numpy as np
    >>> import torch
    >>> rng = np.random.default_rng(0)
    >>> spectrum = np.geomspace(3.0, 0.1, 16)
    >>> centres = rng.normal(size=(12, 16)) * spectrum
    >>> X = centres[rng.integers(0, 12, 400)] + 0.5 * rng.normal(size=(400, 16)) * spectrum
    >>> Q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    >>> perm = rng.permutation(400)
    >>> Y = (X @ Q + 0.3 * rng.normal(size=(400, 16)))[perm]
    >>> A, B = normalize_rows(torch.as_tensor(X)), normalize_rows(torch.as_tensor(Y))
    >>> truth = torch.as_tensor(np.argsort(perm))
    >>> def right(rows, cols):
    ...     return round(float((truth[rows[:400]] == cols[:400]).double().mean()), 2)
    >>> right(*sorted_similarity_dictionary(A, B)), right(*neighbourhood_similarity_dictionary(A, B))
    (0.3, 0.44)
    """
    m = int(min(n, X.shape[0], Y.shape[0]))
    k = _neighbours(m, 0) if neighbours is None else int(neighbours)
    if not 0 <= k < m:
        raise ValueError(
            f"neighbours must be between 0 and the rows compared minus one ({m - 1}), got {neighbours}; "
            "pass fewer neighbours, or None for a sixteenth of the rows."
        )
    return _profile_dictionary(X, Y, m, csls_k, neighbours=k)


def _profile_dictionary(
    X: torch.Tensor, Y: torch.Tensor, m: int, csls_k: int, *, neighbours: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """CSLS union dictionary between the :func:`_sorted_profiles` of the first ``m`` rows of each side."""
    S = _sorted_profiles(X[:m], neighbours) @ _sorted_profiles(Y[:m], neighbours).T
    rows, cols, _, _ = _csls_union(S, int(csls_k), 1.0, None, inplace=True)
    return rows, cols


def identity_dictionary(
    X: torch.Tensor, Y: torch.Tensor, *, n: int = 4000, csls_k: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """First dictionary of spaces that share coordinates: CSLS matches under the identity map.

    Two models fine-tuned or distilled from one another often keep much of their coordinate system
    (MiniLM-L6 and MiniLM-L3 sentence embeddings of 1,200 words: the identity map already retrieves 89 %
    of held-out words by CSLS), while their similarity distributions are too alike for the sorted-
    similarity start. Only defined when both sides have the same dimension.

    Parameters
    ----------
    X, Y : torch.Tensor of shape (n_x, d), (n_y, d)
        Normalised rows in order of importance (the first ``n`` of each are used).
    n : int, default 4000
    csls_k : int, default 10

    Returns
    -------
    rows, cols : torch.Tensor of int64
        As :func:`sorted_similarity_dictionary`'s.

    Examples
    --------
    >>> import torch
    >>> X = normalize_rows(torch.randn(50, 8, generator=torch.Generator().manual_seed(0)))
    >>> perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    >>> rows, cols = identity_dictionary(X, X[perm], csls_k=3)
    >>> bool((perm[cols[:50]] == rows[:50]).all())
    True
    """
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"identity_dictionary needs X and Y of the same dimension, got {X.shape[1]} and {Y.shape[1]}; "
            "use sorted_similarity_dictionary or gw_dictionary for spaces of different dimensions."
        )
    m = int(min(n, X.shape[0], Y.shape[0]))
    rows, cols, _ = induce_dictionary(X[:m].to(torch.float32), Y[:m].to(torch.float32), csls_k=min(csls_k, m))
    return rows, cols


def gw_dictionary(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    n: int = 1000,
    annealing: tuple[float, ...] = GW_ANNEALING,
    max_iter: int = 30,
    random_state: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """First dictionary from annealed entropic Gromov-Wasserstein on cosine distances.

    Parameters
    ----------
    X : torch.Tensor of shape (n_x, d_x)
    Y : torch.Tensor of shape (n_y, d_y)
        Rows in order of importance (the first ``n`` of each are coupled); any dimensions.
    n : int, default 1000
        Rows of each side coupled (GW costs O(n^3) per iteration).
    annealing : tuple of float
        Decreasing entropic regularisations (relative to the mean distance); each step starts from the
        previous plan. Steps at which POT's solver underflows end the annealing early.
    max_iter : int, default 30
        Outer iterations of each annealing step (the steps are a continuation, not solved to tolerance).
    random_state : int, default 0
        Seed 0 starts from the product coupling; other seeds from a random positive coupling with the
        same marginals (another basin of the non-convex GW objective).

    Returns
    -------
    rows, cols : torch.Tensor of shape (n_x' + n_y',), int64
        The union dictionary of the plan's row and column maxima.
    info : dict
        ``reached`` (smallest regularisation solved), ``gw_loss`` (GW discrepancy of the plan: lower is
        better, an unsupervised score), ``n``.

    Examples
    --------
    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> X = torch.randn(40, 5, generator=gen, dtype=torch.float64) * torch.linspace(3, 0.5, 5, dtype=torch.float64)
    >>> Q, _ = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64))
    >>> rows, cols, info = gw_dictionary(X, X @ Q, n=40)
    >>> float((rows[:40] == cols[:40]).double().mean()) > 0.9, info["reached"]
    (True, 0.005)
    """
    m_x, m_y = int(min(n, X.shape[0])), int(min(n, Y.shape[0]))
    A = normalize_rows(X[:m_x].to(torch.float64))
    B = normalize_rows(Y[:m_y].to(torch.float64))
    G0 = None
    if random_state != 0:
        gen = torch.Generator().manual_seed(int(random_state))
        G0 = torch.rand(m_x, m_y, generator=gen, dtype=torch.float64).add_(0.5).to(A.device)
        G0 /= G0.sum()
    plan, reached = None, None
    skipped: list[str] = []
    for step, reg in enumerate(annealing):
        last = step == len(annealing) - 1
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                new = gw_plan_tensors(A, B, reg=float(reg), metric="cosine", max_iter=int(max_iter), G0=G0)
        except FloatingPointError:
            if plan is None:
                raise
            break  # the solver underflowed at this reg: keep the last plan, as documented
        # Intermediate steps are a continuation and are not meant to converge; the last step's
        # warnings are passed on.
        for w in caught:
            if last:
                warnings.warn(w.message, w.category, stacklevel=2)
            else:
                skipped.append(str(w.message))
        plan, reached, G0 = new, float(reg), new
    assert plan is not None  # the first step either worked or raised
    n_x, n_y = plan.shape
    dev = X.device
    rows = torch.cat([torch.arange(n_x), plan.argmax(0).cpu()]).to(dev)
    cols = torch.cat([plan.argmax(1).cpu(), torch.arange(n_y)]).to(dev)
    loss = gw_loss(A, B, plan, metric="cosine")
    return rows, cols, {"reached": reached, "gw_loss": float(loss), "n": (n_x, n_y), "unconverged_steps": len(skipped)}


def induce_dictionary(
    Z: torch.Tensor,
    Y: torch.Tensor,
    *,
    csls_k: int = 10,
    keep_prob: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Bidirectional CSLS dictionary between mapped source rows ``Z`` and target rows ``Y``.

    Each similarity is kept with probability ``keep_prob`` (dropped ones cannot be chosen), as in
    VecMap's stochastic dictionary induction.

    Returns
    -------
    rows, cols : torch.Tensor of shape (n_z + n_y,), int64
    objective : float
        Mean of the best cosine of every source row and of every target row (VecMap's objective).

    Examples
    --------
    >>> import torch
    >>> rows, cols, objective = induce_dictionary(torch.eye(3)[[2, 0, 1]], torch.eye(3), csls_k=1)
    >>> rows.tolist(), cols.tolist(), objective
    ([0, 1, 2, 1, 2, 0], [2, 0, 1, 0, 1, 2], 1.0)
    """
    unit = torch.nn.functional.normalize
    S = unit(Z, dim=1) @ unit(Y, dim=1).T
    rows, cols, fwd, bwd = _csls_union(S, int(csls_k), float(keep_prob), generator, inplace=True)
    return rows, cols, float((fwd.mean() + bwd.mean()) / 2)


def map_change(W_prev: torch.Tensor | None, W: torch.Tensor) -> float:
    """Relative change of a map between rounds, ``||W - W_prev||_F / ||W||_F`` (inf without ``W_prev``).

    Examples
    --------
    >>> import torch
    >>> map_change(torch.eye(2), torch.eye(2)), map_change(None, torch.eye(2))
    (0.0, inf)
    """
    if W_prev is None:
        return math.inf
    norm = float(torch.linalg.matrix_norm(W))
    return float(torch.linalg.matrix_norm(W - W_prev)) / norm if norm > 0 else math.inf


def dictionary_score(Z: torch.Tensor, Y: torch.Tensor, *, csls_k: int = 10) -> float:
    """Unsupervised quality of a map: mean CSLS score of the mutual nearest neighbours under it.

    ``Z`` are source rows already mapped into ``Y``'s space. A good map pairs many rows confidently;
    a wrong one leaves few mutual pairs with low scores. Rows without a mutual partner count as 0, so
    that a map cannot score well by matching a handful of rows.

    Examples
    --------
    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> Y = normalize_rows(torch.randn(50, 5, generator=gen, dtype=torch.float64))
    >>> R, _ = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64))
    >>> dictionary_score(Y, Y, csls_k=5) > dictionary_score(Y @ R, Y, csls_k=5)
    True
    """
    k = int(min(csls_k, Z.shape[0], Y.shape[0]))
    _, _, scores = mutual_csls_tensors(Z, Y, k)
    return float(scores.double().sum()) / Z.shape[0]


def screened_dictionary(A: torch.Tensor, B: torch.Tensor, W: torch.Tensor, *, n: int, csls_k: int) -> torch.Tensor:
    """The mutual CSLS matches of the first ``n`` rows of each side under ``W``, as codes ``row * n_B + col``.

    Examples
    --------
    >>> import torch
    >>> Y = normalize_rows(torch.randn(30, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    >>> codes = screened_dictionary(Y, Y, torch.eye(4, dtype=torch.float64), n=30, csls_k=5)
    >>> codes.tolist() == [i * 30 + i for i in range(30)]
    True
    """
    Az, Bz = A[:n], B[:n]
    rows, cols, _ = mutual_csls_tensors(Az @ W.to(Az.dtype), Bz, int(min(csls_k, Az.shape[0], Bz.shape[0])))
    return rows * Bz.shape[0] + cols


def dictionary_agreement(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Share of the matches of ``reference`` (codes of :func:`screened_dictionary`) also in ``other``.

    Examples
    --------
    >>> import torch
    >>> dictionary_agreement(torch.tensor([1, 5, 9, 12]), torch.tensor([5, 12, 40]))
    0.5
    """
    if reference.numel() == 0:
        return 0.0
    return float(torch.isin(reference, other).double().mean())


def pair_retrieval(A: torch.Tensor, B: torch.Tensor, W: torch.Tensor, pairs: torch.Tensor) -> tuple[int, float]:
    """How well a map retrieves known pairs: rank-1 hits and mean reciprocal rank among all rows of ``B``.

    ``A`` and ``B`` are normalised rows (:func:`normalize_rows`), ``W`` maps ``A`` into ``B``'s space
    (``a @ W``), and ``pairs`` is an ``(m, 2)`` array of ``(row of A, row of B)``. Each pair's source row
    is mapped and its target is ranked by cosine among every row of ``B``.

    Examples
    --------
    >>> import torch
    >>> B = normalize_rows(torch.randn(40, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    >>> pairs = torch.tensor([[0, 0], [1, 1], [2, 2]])
    >>> pair_retrieval(B, B, torch.eye(6, dtype=torch.float64), pairs)
    (3, 1.0)
    """
    found = retrieval_scores(A[pairs[:, 0]] @ W.to(A.dtype), B, gold=pairs[:, 1], k=1, ties="optimistic")
    return round(found["recall@1"] * pairs.shape[0]), found["mrr"]


def pairs_needed(n_pairs: int) -> int:
    """Rank-1 hits among ``n_pairs`` known pairs that confirm a map found without them: half, at least 2.

    A failed start can hit a few pairs by chance (on GloVe-50 -> fastText-fr words one put 2 of 5 at rank 1
    among 768 rows, where the start the pairs confirmed put 4).

    Examples
    --------
    >>> [pairs_needed(m) for m in (2, 4, 5, 8, 24)]
    [2, 2, 3, 4, 12]
    """
    return max(2, math.ceil(n_pairs / 2))


@dataclass
class UnsupervisedFit:
    """What :func:`self_learning_map` (and the restart chosen by :func:`unsupervised_alignment`) found.

    Attributes
    ----------
    W : torch.Tensor of shape (d_x, d_y), float64
        Orthogonal (semi-orthogonal across dimensions) map: source rows ``x`` map to ``x @ W``.
    rows, cols : torch.Tensor, int64
        The final dictionary the map was fitted on.
    history : list of dict
        Per round: ``keep_prob``, ``objective``, ``map_change``, ``n_pairs``.
    converged : bool
        Whether the map stopped changing (relative change below ``tol`` at ``keep_prob = 1``).
    n_iter : int
        Rounds run.
    score : float
        :func:`dictionary_score` of the final map.
    restarts : list of dict
        Filled by :func:`unsupervised_alignment`: one entry per start (``seed``, ``score``,
        ``converged``, ``n_iter``, plus the start's own information).
    confirmed : bool
        Filled by :func:`unsupervised_alignment`: whether the chosen start was confirmed (by another
        start, a standout score or the known pairs that judge the starts); False with a single start.
    firmly_confirmed : bool
        Filled by :func:`unsupervised_alignment`: with known pairs judging, whether another start found the
        chosen map again (or its score stands out) and at least 2 pairs are at rank 1 under it, or every
        pair is. A start confirmed by the pairs alone (half of them at rank 1, not all) may be only partly
        right: among many screened starts, a partly right map can put half of a few pairs first by chance.
        Without judging pairs, ``confirmed``.
    """

    W: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    history: list[dict[str, Any]]
    converged: bool
    n_iter: int
    score: float
    restarts: list[dict[str, Any]] = field(default_factory=list)
    confirmed: bool = False
    firmly_confirmed: bool = False


def self_learning_map(
    X: torch.Tensor,
    Y: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    *,
    vocab_cutoff: int = 5000,
    csls_k: int = 10,
    keep_prob: float = 0.1,
    growth: float = 2.0,
    patience: int = 5,
    threshold: float = 1e-4,
    max_iter: int = 150,
    tol: float = 1e-6,
    random_state: int = 0,
    on_round: OnRound | None = None,
) -> UnsupervisedFit:
    """Robust self-learning from a first dictionary: orthogonal map, stochastic CSLS induction, repeat.

    Parameters
    ----------
    X : torch.Tensor of shape (n_x, d_x)
    Y : torch.Tensor of shape (n_y, d_y)
        Normalised rows (e.g. :func:`normalize_rows`), in order of importance.
    rows, cols : torch.Tensor of int64
        The first dictionary ``X[rows[i]] <-> Y[cols[i]]``.
    vocab_cutoff : int, default 5000
        Only the first ``vocab_cutoff`` rows of each side take part in dictionary induction (VecMap:
        20,000 on full vocabularies). Memory: one ``cutoff x cutoff`` similarity matrix and its copies.
    csls_k : int, default 10
        CSLS neighbourhood (at most the rows of either side).
    keep_prob : float, default 0.1
        Starting probability of keeping each similarity in the stochastic induction.
    growth : float, default 2.0
        ``keep_prob`` is multiplied by this (up to 1) each time the objective stalls.
    patience : int, default 5
        Rounds without an objective gain of ``threshold`` that count as a stall; ``keep_prob`` also grows
        after ``4 * patience`` rounds at one level.
    threshold : float, default 1e-4
        Smallest objective gain that counts as progress.
    max_iter : int, default 150
        Most rounds.
    tol : float, default 1e-6
        Convergence: relative change of the map between rounds, at ``keep_prob = 1``.
    random_state : int, default 0
        Seed of the stochastic induction.
    on_round : callable, optional
        Called after each round with that round's history entry (e.g. a progress bar); this function
        shows nothing itself.

    Returns
    -------
    UnsupervisedFit
        ``converged`` says whether the map criterion was met; the caller warns (see
        :func:`unsupervised_alignment`).

    Examples
    --------
    A start with a third of the dictionary right is enough on a rotated, shuffled cloud:

    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> X = normalize_rows(torch.randn(300, 8, generator=gen, dtype=torch.float64))
    >>> Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=torch.float64))
    >>> perm = torch.randperm(300, generator=gen)
    >>> Y = (X @ Q)[perm]
    >>> rows = torch.arange(300)
    >>> cols = torch.where(rows % 3 == 0, perm.argsort(), torch.randint(0, 300, (300,), generator=gen))
    >>> fit = self_learning_map(X, Y, rows, cols)
    >>> fit.converged, torch.allclose(fit.W, Q)
    (True, True)
    """
    cut_x, cut_y = int(min(vocab_cutoff, X.shape[0])), int(min(vocab_cutoff, Y.shape[0]))
    k = int(min(csls_k, cut_x, cut_y))
    gen = torch.Generator().manual_seed(int(random_state))
    # The rounds run in float32 (n x n similarities); the final map is refitted in X's precision.
    Xf, Yf = X.to(torch.float32), Y.to(torch.float32)
    # With fewer source rows than dimensions the rounds rotate the rows' span coordinates (row_span): the same
    # similarities as the full d x d map, at O(n^3) per round.
    reduced = reduces(Xf, Yf)
    Xs, Ys = (row_span(Xf).coords, row_span(Yf).coords) if reduced else (Xf, Yf)
    Xc, Yc = Xf[:cut_x], Yf[:cut_y]
    lengths = Xc.norm(dim=1)
    map_norm = math.sqrt(min(X.shape[1], Y.shape[1]))  # ||W||_F of a full map with orthonormal rows or columns
    history: list[dict[str, Any]] = []
    W_prev: torch.Tensor | None = None
    best, last_gain, level_start, p = -math.inf, 0, 0, float(keep_prob)
    converged = False
    it = 0
    for it in range(1, int(max_iter) + 1):
        W = _polar(Xs[rows].T @ Ys[cols])
        change = map_change(W_prev, W)
        if reduced and W_prev is not None:  # relative to the full map, whose part outside the spans stays put
            change = float(torch.linalg.matrix_norm(W - W_prev)) / map_norm
        W_prev = W
        record = {"round": it, "keep_prob": p, "map_change": change, "n_pairs": int(rows.numel())}
        history.append(record)
        if p >= 1.0 and change < tol:
            converged = True
            if on_round is not None:
                on_round(record)
            break
        mapped, targets = Xs[:cut_x] @ W.to(Xs.dtype), Ys[:cut_y]
        if reduced:
            mapped, targets = with_length_column(mapped, lengths, targets)
        rows, cols, objective = induce_dictionary(mapped, targets, csls_k=k, keep_prob=p, generator=gen)
        record["objective"] = objective
        if on_round is not None:
            on_round(record)
        if objective - best >= threshold:
            best, last_gain = objective, it
        # keep_prob grows on a stall, and at the latest after 4 * patience rounds at one level (the
        # noisy objective of the stochastic rounds creeps up for long without the dictionary settling).
        if p < 1.0 and (it - last_gain >= patience or it - level_start >= 4 * patience):
            p, last_gain, level_start = min(1.0, p * growth), it, it
    W = _polar(X[rows].T @ Y[cols])
    score = dictionary_score(Xc @ W.to(Xf.dtype), Yc, csls_k=k)
    return UnsupervisedFit(W=W, rows=rows, cols=cols, history=history, converged=converged, n_iter=it, score=score)


def candidate_starts(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    init: str = "neighbourhood",
    n_init: int = 3,
    init_size: int | None = None,
    csls_k: int = 10,
    random_state: int = 0,
) -> list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]:
    """``n_init`` different first dictionaries, so that restarts do not all fail together.

    ``"neighbourhood"``: start 0 compares the neighbourhood profiles
    (:func:`neighbourhood_similarity_dictionary`, a sixteenth of the rows as neighbours) of the first
    ``init_size`` rows of each side, start 1 their plain sorted similarities (VecMap's start), start 2
    neighbourhood profiles over an eighth of the rows; later starts neighbourhood profiles of a random
    80 % of the first ``init_size`` rows of each side (drawn with seed ``random_state + i``).
    ``"vecmap"``: start 0 compares the sorted similarities of the first ``init_size`` rows of each side;
    start 1 those of the first half of them (a lower frequency cut-off); later starts those of a random
    80 % of the first ``init_size`` rows of each side.
    ``"gw"``: :func:`gw_dictionary` from different starting couplings (seeds ``random_state + i``).
    ``"mixed"``: the ``"vecmap"`` starts, the last one replaced by a GW start on at most 500 rows.

    Parameters
    ----------
    X, Y : torch.Tensor
        Normalised rows (:func:`normalize_rows`), most important first.
    init : {"neighbourhood", "vecmap", "gw", "mixed"}, default "neighbourhood"
    n_init : int, default 3
    init_size : int, optional
        Rows per side available to a start (default 4000 for similarity profiles, 1000 for GW).
    csls_k : int, default 10
    random_state : int, default 0

    Returns
    -------
    list of (rows, cols, info)
        One dictionary per start; ``info`` names the start (``start``) and its rows (``n``).

    Examples
    --------
    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> X = normalize_rows(torch.randn(100, 6, generator=gen))
    >>> starts = candidate_starts(X, X, n_init=4)
    >>> [info["start"] for _, _, info in starts]  # doctest: +NORMALIZE_WHITESPACE
    ['neighbourhood profiles (6 neighbours), first 100 rows', 'sorted similarity, first 100 rows',
     'neighbourhood profiles (12 neighbours), first 100 rows',
     'neighbourhood profiles (5 neighbours), random 80 of the first 100 rows (seed 3)']
    >>> [info["start"] for _, _, info in candidate_starts(X, X, init="vecmap", n_init=3)]  # doctest: +NORMALIZE_WHITESPACE
    ['sorted similarity, first 100 rows', 'sorted similarity, first 50 rows',
     'sorted similarity, random 80 of the first 100 rows (seed 2)']
    """
    m = int(min(init_size or 4000, X.shape[0], Y.shape[0]))
    starts: list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]] = []
    for i in range(int(n_init)):
        seed = int(random_state) + i
        if init == "gw" or (init == "mixed" and i == n_init - 1 and n_init > 1):
            size = init_size or 1000 if init == "gw" else min(init_size or 500, 500)
            rows, cols, info = gw_dictionary(X, Y, n=size, random_state=seed)
            starts.append((rows, cols, {"start": f"Gromov-Wasserstein, {info['n'][0]} rows", **info}))
        elif init == "neighbourhood" and i in (0, 2) and m >= 4:
            k = _neighbours(m, i // 2)
            rows, cols = neighbourhood_similarity_dictionary(X, Y, n=m, csls_k=csls_k, neighbours=k)
            starts.append((rows, cols, {"start": f"neighbourhood profiles ({k} neighbours), first {m} rows", "n": m}))
        elif i == 0 or (i == 1 and (init == "neighbourhood" or m >= 4)):
            keep = m // 2 if i == 1 and init != "neighbourhood" else m  # VecMap's second start: a lower cut-off
            rows, cols = sorted_similarity_dictionary(X, Y, n=keep, csls_k=csls_k)
            starts.append((rows, cols, {"start": f"sorted similarity, first {keep} rows", "n": keep}))
        else:
            starts.append(_subset_start(X, Y, m, seed, csls_k, neighbourhood=init == "neighbourhood"))
    return starts


def _neighbours(m: int, index: int) -> int:
    """Neighbours averaged by the ``index``-th neighbourhood start on ``m`` rows (at least 1, below ``m``)."""
    return max(1, min(m - 1, int(m * NEIGHBOURHOOD_FRACTIONS[index % len(NEIGHBOURHOOD_FRACTIONS)])))


def _subset_start(
    X: torch.Tensor, Y: torch.Tensor, m: int, seed: int, csls_k: int, *, neighbourhood: bool = False
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    # Independent random subsets of each side: the shared rows are fewer, but the start differs.
    gen = torch.Generator().manual_seed(seed)
    keep = max(2, int(0.8 * m))
    sub_x = torch.randperm(m, generator=gen)[:keep].sort().values.to(X.device)
    sub_y = torch.randperm(m, generator=gen)[:keep].sort().values.to(Y.device)
    subset = f"random {keep} of the first {m} rows (seed {seed})"
    if neighbourhood and keep >= 4:
        k = _neighbours(keep, seed)
        r, c = neighbourhood_similarity_dictionary(X[sub_x], Y[sub_y], n=keep, csls_k=csls_k, neighbours=k)
        info = {"start": f"neighbourhood profiles ({k} neighbours), {subset}", "n": keep}
    else:
        r, c = sorted_similarity_dictionary(X[sub_x], Y[sub_y], n=keep, csls_k=csls_k)
        info = {"start": f"sorted similarity, {subset}", "n": keep}
    return sub_x[r], sub_y[c], info


def extra_start(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    init: str = "neighbourhood",
    index: int = 3,
    init_size: int | None = None,
    csls_k: int = 10,
    random_state: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """One more start beyond :func:`candidate_starts`' (seed ``random_state + index``).

    ``"gw"``: :func:`gw_dictionary` from a new random coupling; ``"neighbourhood"``: neighbourhood
    profiles (the number of neighbours cycling through :data:`NEIGHBOURHOOD_FRACTIONS`) of a new random
    80 % of the first ``init_size`` rows of each side; otherwise their sorted similarities.

    Examples
    --------
    >>> import torch
    >>> X = normalize_rows(torch.randn(100, 6, generator=torch.Generator().manual_seed(0)))
    >>> extra_start(X, X, index=5, init="vecmap")[2]["start"]
    'sorted similarity, random 80 of the first 100 rows (seed 5)'
    >>> extra_start(X, X, index=4)[2]["start"]
    'neighbourhood profiles (10 neighbours), random 80 of the first 100 rows (seed 4)'
    """
    seed = int(random_state) + int(index)
    if init == "gw":
        rows, cols, info = gw_dictionary(X, Y, n=init_size or 1000, random_state=seed)
        return rows, cols, {"start": f"Gromov-Wasserstein, {info['n'][0]} rows", **info}
    m = int(min(init_size or 4000, X.shape[0], Y.shape[0]))
    return _subset_start(X, Y, m, seed, csls_k, neighbourhood=init == "neighbourhood")


def use_identity_start(identity_start: bool | str, d_x: int, d_y: int) -> bool:
    """Whether :func:`unsupervised_alignment` adds the identity start (``"auto"``: same dimension).

    Examples
    --------
    >>> use_identity_start("auto", 384, 384), use_identity_start("auto", 384, 768), use_identity_start(False, 8, 8)
    (True, False, False)
    """
    check_choice(identity_start, "identity_start", (True, False, "auto"))
    if identity_start is True and d_x != d_y:
        raise ValueError(
            f"identity_start=True needs X and Y of the same dimension, got {d_x} and {d_y}; pass "
            'identity_start="auto" (or False) for spaces of different dimensions.'
        )
    return d_x == d_y if identity_start == "auto" else bool(identity_start)


def _ranking(restart: dict[str, Any], n_judging: int) -> tuple[float, ...]:
    """Order of screened starts: by score; when known pairs judge, those they confirm first, the others by their rank.

    Among starts the pairs confirm, the score ranks better than the few pairs do: on MiniLM-L6 -> MPNet
    captions with 8 judging pairs, ranking them by the pairs' mean reciprocal rank instead gave 0.82
    and 0.89 R@1 on two seeds, against 0.97 and 0.95 by score.
    """
    if not n_judging:
        return (restart["score"],)
    if restart["pair_hits"] >= pairs_needed(n_judging):
        return (1.0, restart["score"])
    return (0.0, restart["pair_mrr"], restart["score"])


def unsupervised_alignment(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    init: str = "neighbourhood",
    n_init: int = 1,
    init_size: int | None = None,
    identity_start: bool | str = "auto",
    vocab_cutoff: int = 5000,
    csls_k: int = 10,
    keep_prob: float = 0.1,
    patience: int = 5,
    max_iter: int = 150,
    tol: float = 1e-6,
    screen_iter: int = 100,
    screen_size: int = 2000,
    max_starts: int | None = None,
    extra_patience: int | None = None,
    agree_tol: float = 0.05,
    agree_share: float = 0.5,
    standout: float = 1.5,
    time_budget: float | None = None,
    random_state: int = 0,
    judge_pairs: ArrayLike | None = None,
    label: str = "unsupervised_alignment",
    on_start: OnRound | None = None,
    on_round: OnRound | None = None,
) -> UnsupervisedFit:
    """Align two spaces without any known pair: diverse starts, a screening run each, full self-learning on the best.

    Parameters
    ----------
    X : array of shape (n_x, d_x)
    Y : array of shape (n_y, d_y)
        Not paired; rows in order of importance (most frequent first for words). Normalised here with
        :func:`normalize_rows`.
    init : {"neighbourhood", "vecmap", "gw", "mixed"}, default "neighbourhood"
        Kind of first dictionaries (:func:`candidate_starts`).
    n_init : int, default 1
        Starts. With more than one, each start (seed ``random_state + i`` for its stochastic induction)
        is screened by ``screen_iter`` self-learning rounds on the first ``screen_size`` rows; the one
        with the best :func:`dictionary_score` then continues, from its screened dictionary and
        ``keep_prob``, on ``vocab_cutoff`` rows. With one start (and no identity start) there is no
        screening.
    init_size : int, optional
        Rows of each side used by the starts (default 4000 for similarity profiles, 1000 for ``"gw"``).
    identity_start : bool or "auto", default "auto"
        One more start, screened after the ``n_init`` others when they leave their best one unconfirmed
        (whatever ``time_budget``): :func:`identity_dictionary`, the CSLS matches under the identity map,
        for models that share coordinates (one fine-tuned or distilled from the other). ``"auto"``: when
        ``X`` and ``Y`` have the same dimension. Like every start it is kept only if its screened map scores
        best; on unrelated spaces of one dimension it scores low.
    vocab_cutoff, csls_k, keep_prob, patience, max_iter, tol :
        As in :func:`self_learning_map` (``max_iter`` bounds the final run).
    screen_iter : int, default 100
        Most rounds of each start's screening run (it stops earlier once its map stops changing). The
        score only tells a good start from a bad one once the run has reached ``keep_prob = 1``: on
        MiniLM-L6 vs L3 words, after 30 rounds every start scored 0.13 whether it later succeeded or
        not; at convergence, 0.55 against 0.26.
    screen_size : int, default 2000
        Rows per side in the screening runs (at most ``vocab_cutoff``). Screening on fewer rows than a
        side has is cheaper, but where the rows of the two sides are not in a shared order of importance
        (two shuffled sets rather than two frequency-sorted vocabularies) the first rows of each side
        share only part of their items, and fewer starts succeed: on MiniLM-L6 -> e5-small glosses
        (1,349 shuffled rows a side), screening on the first 1,000 rows found a good map from 1 of 18
        starts over two seeds, on all rows from 5 of 12 starts over the same seeds and two more.
    max_starts : int, optional
        With ``n_init > 1``: after the ``n_init`` starts, more are screened (random subsets of the first
        rows with new seeds, or GW from new couplings) until the best start is *confirmed*, up to
        ``max_starts`` in all (default ``n_init``: no more; the identity start comes on top). Extra starts alternate between the first
        start with a new induction seed and :func:`extra_start`. Confirmed: another start's screened map
        agrees with it (``agree_tol``, ``agree_share``), or its score is at least ``standout`` times the
        median score of the starts that disagree with it (the premise: a good map is found again from
        other starts, while failed starts end in local optima of their own).
    extra_patience : int, optional
        ``patience`` of the extra starts (default twice ``patience``), screened by up to
        ``screen_iter * extra_patience / patience`` rounds: ``keep_prob`` grows more slowly, so the
        stochastic rounds explore longer before they settle. The first ``n_init`` starts keep
        ``patience``, so a fit they confirm costs the same. On MiniLM-L6 -> e5-small glosses (1,349 shuffled
        rows a side), where the right map's basin is narrow, 1 of 32 starts succeeded with patience 5
        and 3 of the first 16 of them with 10 (on another seed, 6 of 8 with 10), at about twice the
        rounds per start.
    agree_tol : float, default 0.05
        Relative distance ``||W_i - W_best||_F / ||W_best||_F`` under which two screened maps agree.
    agree_share : float, default 0.5
        Two screened maps also agree when at least this share of the best map's mutual CSLS matches
        (on the screening rows) are mutual matches of the other map too. Maps between spaces of
        different dimensions can induce nearly the same dictionary and still lie far apart in the
        directions the rows barely use: on MiniLM-L6 -> MPNet captions, the starts that succeeded shared
        83-88 % of their matches at relative distances of 0.56-0.64, the failed ones 1-27 %.
    standout : float, default 1.5
        Score ratio over the other starts' median that confirms the best start on its own.
    time_budget : float, optional
        Seconds after which no further start (beyond ``n_init``) is screened.
    random_state : int, default 0
        First seed.
    judge_pairs : array of shape (m, 2), optional
        Known pairs ``(row of X, row of Y)`` that judge the screened starts and never enter a map fit
        (with ``n_init > 1``). Each screened map ranks every pair's target among all rows of ``Y``
        (:func:`pair_retrieval`). A start is confirmed when its map puts :func:`pairs_needed` of them
        (half) at rank 1, or 2 of them when it is also confirmed as below; more starts are screened (up
        to ``max_starts``) until one is confirmed by the pairs *and* as below, or puts every pair at
        rank 1 (a map with half of them first may be only partly right). The starts the pairs confirm are chosen first (by score), the
        others by the pairs' mean reciprocal rank. So screening goes on until a start succeeds, and stops
        once one has: on GloVe-50 -> fastText-fr words a start succeeded about one time in eight to twenty
        (failed starts scored 0.14, good ones 0.20-0.24), and a fixed number of starts often had none.
    label : str
        Name used in the warning.
    on_start : callable, optional
        Called after each start's screening run (only with more than one start) with its ``restarts`` entry.
    on_round : callable, optional
        Called after each round of the final run with its history entry. Both are for progress bars
        and logs (:class:`latentalign._progress.RoundProgress`); this function shows nothing itself.

    Returns
    -------
    UnsupervisedFit
        The final fit; ``restarts`` lists every start (``seed``, ``start``, ``score`` after screening,
        ``n_iter``, ``patience``, ``chosen``, ``gap``: the relative distance of its screened map to the chosen one's,
        ``agreement``: the share of the chosen screened map's mutual matches it also found).

    Warns
    -----
    ConvergenceWarning
        Once, when the final run ends at ``max_iter`` rounds with the map still changing by more than
        ``tol``; and when more starts were allowed (``max_starts > n_init``) but none confirmed the
        chosen one (the map may be a local optimum).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> spectrum = np.geomspace(3, 0.1, 16)
    >>> centres = rng.normal(size=(12, 16)) * spectrum
    >>> X = centres[rng.integers(0, 12, 600)] + 0.5 * rng.normal(size=(600, 16)) * spectrum
    >>> Q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    >>> perm = rng.permutation(600)
    >>> fit = unsupervised_alignment(X, (X @ Q)[perm])
    >>> fit.converged, bool(np.allclose(fit.W.numpy(), Q, atol=1e-6))
    (True, True)
    """
    Xt, Yt, _ = check_pair(X, Y, paired=False, min_rows=2)
    check_choice(init, "init", UNSUPERVISED_INITS)
    check_number(n_init, "n_init", integer=True, low=1)
    check_number(init_size, "init_size", integer=True, low=2, allow_none=True)
    with_identity = use_identity_start(identity_start, Xt.shape[1], Yt.shape[1])
    check_number(vocab_cutoff, "vocab_cutoff", integer=True, low=2)
    check_number(csls_k, "csls_k", integer=True, low=1)
    check_number(keep_prob, "keep_prob", low=0.0, high=1.0, low_inclusive=False)
    check_number(patience, "patience", integer=True, low=1)
    check_number(max_iter, "max_iter", integer=True, low=1)
    check_number(tol, "tol", low=0.0, low_inclusive=False)
    check_number(screen_iter, "screen_iter", integer=True, low=1)
    check_number(screen_size, "screen_size", integer=True, low=2)
    check_number(max_starts, "max_starts", integer=True, low=1, allow_none=True)
    check_number(extra_patience, "extra_patience", integer=True, low=1, allow_none=True)
    check_number(agree_tol, "agree_tol", low=0.0, low_inclusive=False)
    check_number(agree_share, "agree_share", low=0.0, high=1.0, low_inclusive=False)
    check_number(standout, "standout", low=1.0)
    check_number(time_budget, "time_budget", low=0.0, allow_none=True)
    check_number(random_state, "random_state", integer=True)
    judge = None
    if judge_pairs is not None:
        judge = check_pairs(judge_pairs, Xt.shape[0], Yt.shape[0]).to(Xt.device)
        if judge.shape[0] < 2:
            raise ValueError(
                f"judge_pairs must hold at least 2 known pairs to judge the starts, got {judge.shape[0]}; pass "
                "more pairs, or judge_pairs=None to judge the starts by their unsupervised score."
            )
    began = time.perf_counter()
    A, B = normalize_rows(Xt), normalize_rows(Yt)
    starts = candidate_starts(
        A, B, init=init, n_init=n_init, init_size=init_size, csls_k=csls_k, random_state=random_state
    )
    identity_pending = with_identity  # screened after the n_init starts, unless they confirmed their best
    first_extra = len(starts) + int(with_identity)
    most = max(int(n_init), int(max_starts or n_init)) + int(with_identity)
    settings: dict[str, Any] = {"csls_k": csls_k, "tol": tol}
    slow_patience = 2 * int(patience) if extra_patience is None else int(extra_patience)
    slow_screen_iter = max(1, round(int(screen_iter) * slow_patience / int(patience)))
    chosen_patience = int(patience)
    restarts: list[dict[str, Any]] = []
    confirmed = firm = False  # a single start has nothing to confirm it
    rows, cols = starts[0][0], starts[0][1]
    seed, p = int(random_state), float(keep_prob)
    n_judging = 0 if judge is None else judge.shape[0]
    if len(starts) > 1 or with_identity:
        best: UnsupervisedFit | None = None
        maps: list[torch.Tensor] = []
        dictionaries: list[torch.Tensor] = []
        i = 0
        while i < len(starts):
            r, c, info = starts[i]
            # the extra starts explore longer: they are screened only where the first ones left their best
            # unconfirmed, where the right map's basin may be narrow
            start_patience = slow_patience if i >= first_extra else int(patience)
            trial = self_learning_map(
                A,
                B,
                r,
                c,
                vocab_cutoff=min(screen_size, vocab_cutoff),
                keep_prob=keep_prob,
                patience=start_patience,
                max_iter=slow_screen_iter if i >= first_extra else screen_iter,
                random_state=int(random_state) + i,
                **settings,
            )
            entry = {
                "seed": int(random_state) + i,
                "score": trial.score,
                "n_iter": trial.n_iter,
                "patience": start_patience,
                "chosen": False,
            }
            if judge is not None:
                entry["pair_hits"], entry["pair_mrr"] = pair_retrieval(A, B, trial.W, judge)
            restarts.append({**entry, **info})
            if on_start is not None:
                on_start(restarts[-1])
            maps.append(trial.W)
            dictionaries.append(screened_dictionary(A, B, trial.W, n=min(screen_size, vocab_cutoff), csls_k=csls_k))
            if best is None or _ranking(restarts[-1], n_judging) > _ranking(
                restarts[seed - int(random_state)], n_judging
            ):
                best, seed, chosen_patience = trial, int(random_state) + i, start_patience
            i += 1
            chosen = seed - int(random_state)
            gaps = [map_change(best.W, W) for W in maps]
            shares = [dictionary_agreement(dictionaries[chosen], found) for found in dictionaries]
            agree = [gap < agree_tol or share >= agree_share for gap, share in zip(gaps, shares)]
            others = sorted(r["score"] for r, same in zip(restarts, agree) if not same)
            # confirmed: found again by another start, or a score that stands out of the others' (on
            # MiniLM-L6 vs L3 words the good map scored 0.55 and five failed starts 0.25-0.26 each)
            confirmed = sum(agree) > 1 or (len(others) > 0 and best.score >= standout * others[len(others) // 2])
            settled = firm = confirmed
            if judge is not None:
                # the known pairs, which no start saw, must agree: half of them at rank 1 on their own, or
                # two of them for a start confirmed as above (a failed start can hit one or two by chance)
                hits = restarts[chosen]["pair_hits"]
                by_pairs = hits >= pairs_needed(judge.shape[0])
                # A map that puts only some of the pairs first may be partly right: screening goes on
                # until it is also confirmed as above or puts every pair first (on a planted 16-d
                # problem with disjoint free rows, the first start with 6 of 12 pairs first reached 0.46
                # R@1; a later one with all 12, and a higher score, 1.00).
                settled = (by_pairs and confirmed) or hits == judge.shape[0]
                # confirmed by the pairs alone (no other start, no standout score) is not firm: among many
                # screened starts, a partly right map can put half of a few pairs first by chance
                firm = (confirmed and hits >= 2) or hits == judge.shape[0]
                confirmed = by_pairs or (confirmed and hits >= 2)
            spent = time_budget is not None and time.perf_counter() - began > time_budget
            if i == len(starts) and identity_pending and not settled:
                identity_pending = False
                m = int(min(init_size or 4000, A.shape[0], B.shape[0]))
                id_rows, id_cols = identity_dictionary(A, B, n=m, csls_k=csls_k)
                starts.append((id_rows, id_cols, {"start": f"identity (shared coordinates), first {m} rows", "n": m}))
            elif i == len(starts) and i < most and not settled and not spent:
                if (i - first_extra) % 2 == 0 and init != "gw":
                    # the first start again with another induction seed: on those words, success rests
                    # on the stochastic rounds' seed at least as much as on the start
                    first = {
                        **starts[0][2],
                        "start": f"{starts[0][2]['start']}, induction seed {int(random_state) + i}",
                    }
                    starts.append((starts[0][0], starts[0][1], first))
                else:
                    starts.append(
                        extra_start(
                            A, B, init=init, index=i, init_size=init_size, csls_k=csls_k, random_state=random_state
                        )
                    )
        assert best is not None  # at least one start was screened
        for entry, gap, share in zip(restarts, gaps, shares):
            entry["gap"], entry["agreement"] = gap, share
        restarts[seed - int(random_state)]["chosen"] = True
        if judge is not None and not confirmed:
            warnings.warn(
                f"{label}: none of the {len(restarts)} screened starts' maps put {pairs_needed(judge.shape[0])} of "
                f"the {judge.shape[0]} known pairs at rank 1, or 2 of them with a map found again by another start "
                f"(rank-1 hits per start: {[e['pair_hits'] for e in restarts]}): no start found a map the pairs "
                "confirm. Raise max_starts or time_budget, or fit with the pairs (OTAligner(method='self-learning')).",
                ConvergenceWarning,
                stacklevel=2,
            )
        elif most > first_extra and not confirmed:
            warnings.warn(
                f"{label}: none of the {len(restarts)} screened starts confirmed the chosen one (closest other "
                f"map at a relative distance of {sorted(gaps)[1]:.2f} > agree_tol={agree_tol:g}, at most "
                f"{sorted(shares)[-2]:.0%} of its mutual matches found again < agree_share={agree_share:g}, and "
                f"its score does not stand out: scores {[round(e['score'], 3) for e in restarts]}): the map may "
                "be a local optimum. Raise max_starts or time_budget, or pass a few known pairs (OTAligner).",
                ConvergenceWarning,
                stacklevel=2,
            )
        rows, cols, p = best.rows, best.cols, best.history[-1]["keep_prob"]
    else:
        restarts.append({"seed": seed, "patience": int(patience), "chosen": True, **starts[0][2]})
    fit = self_learning_map(
        A,
        B,
        rows,
        cols,
        vocab_cutoff=vocab_cutoff,
        keep_prob=p,
        patience=chosen_patience,
        max_iter=max_iter,
        random_state=seed,
        on_round=on_round,
        **settings,
    )
    if len(starts) == 1:
        restarts[0].update(score=fit.score, n_iter=fit.n_iter)
    fit.restarts = restarts
    fit.confirmed = confirmed
    fit.firmly_confirmed = confirmed and firm
    if not fit.converged:
        last = fit.history[-1]
        warnings.warn(
            f"{label} stopped after max_iter={max_iter} rounds without converging: the relative change of the "
            f"map ||W_t - W_(t-1)||_F / ||W_t||_F was {last['map_change']:.2e} > tol={tol:.1e} in the last round "
            f"(keep_prob reached {last['keep_prob']:.2f}). Increase max_iter, or lower patience so that keep_prob "
            "reaches 1 sooner, or raise tol; the history has the per-round log.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return fit
