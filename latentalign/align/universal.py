"""A universal space for N models, by generalised Procrustes analysis (GPA).

Every model embeds the same ``n`` anchor items. GPA (Gower, 1975) finds one rotation per model so that
all rotated anchor sets agree as well as possible:

1. preprocess each model's anchors (its own steps, fitted and saved per model; centring by default) and
   zero-pad them to the largest dimension ``D``;
2. start from the first model's anchors as the mean shape; repeat: rotate every model onto the mean shape
   (orthogonal Procrustes), replace the mean shape by the mean of the rotated sets, until the mean shape
   changes by less than ``tol`` (relative Frobenius norm) or ``max_iter`` rounds have run
   (:class:`~latentalign.exceptions.ConvergenceWarning`);
3. optionally reduce the shared space to ``dim`` coordinates (PCA of the mean shape), or pad it to ``dim``.

The result is stored per model as one ``(d_k, dim)`` matrix ``W_k`` (padding, rotation and PCA basis
combined) and a scale ``s_k`` (1 unless ``scale=True``): ``to_universal(X, k) = s_k prep_k(X) W_k``.
Because every model is rotated onto the *same* shape, translation between any two models passes through
the shared space and cycles a -> b -> c -> a are the identity whenever no dimension is lost (each ``W_k``
has orthonormal rows), which pairwise Procrustes fits do not guarantee.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from latentalign._array import ArrayLike, check_same_backend, restore
from latentalign._validation import check_array, check_choice, check_is_fitted, check_n_features, check_number
from latentalign.base import BaseEstimator
from latentalign.functional.gpa import generalized_procrustes, procrustes_onto
from latentalign.persistence import Persistable
from latentalign.preprocessing import make_preprocessor

__all__ = ["UniversalSpace"]

_F64 = torch.float64


class UniversalSpace(Persistable, BaseEstimator):
    """One shared space for several models, fitted by generalised Procrustes analysis on shared anchors.

    Parameters
    ----------
    method : {"gpa"}, default "gpa"
        Generalised Procrustes analysis (the only method for now).
    dim : int, optional
        Dimension of the universal space. None: the largest model dimension (smaller models are
        zero-padded). Smaller: PCA of the mean shape keeps its ``dim`` main directions (translation then
        loses what the dropped directions held). Larger: zero-padded.
    preprocess : str or list of str, default "center"
        Steps (see :func:`latentalign.preprocessing.make_preprocessor`) fitted on each model's anchors
        separately and saved with it; GPA assumes centred data, so keep ``"center"`` in the chain.
    scale : bool, default False
        Also fit one isotropic scale per model.
    max_iter : int, default 100
        Most GPA rounds.
    tol : float, default 1e-10
        Stop when the mean shape moves by less than ``tol`` relative to its norm.

    Attributes
    ----------
    names_ : list of str
        Model names, in fitting order (then in the order :meth:`add` was called).
    weights_ : dict of str -> torch.Tensor of shape ``(d_k, dim_)``, float64
    scales_ : dict of str -> float
    preprocessors_ : dict of str -> Chain
    n_features_ : dict of str -> int
    mean_shape_ : torch.Tensor of shape ``(n_anchors, dim_)``, float64
        The consensus of the anchors in the universal space (used by :meth:`add`).
    dim_ : int
    history_ : list of float
        Relative change of the mean shape in each GPA round.
    converged_ : bool
    n_iter_ : int

    Examples
    --------
    Three rotated copies of one anchor set land on the same universal coordinates:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(50, 4))
    >>> rot = lambda: np.linalg.qr(rng.normal(size=(4, 4)))[0]
    >>> space = UniversalSpace().fit({"a": A, "b": A @ rot(), "c": A @ rot()})
    >>> Za, Zc = space.to_universal(A, "a"), space.to_universal(space.translate(A, "a", "c"), "c")
    >>> bool(np.allclose(Za, Zc)), round(space.cycle_consistency(A, ["a", "b", "c"]), 8)
    (True, 1.0)
    """

    def __init__(
        self,
        *,
        method: str = "gpa",
        dim: int | None = None,
        preprocess: str | Sequence[str] | None = "center",
        scale: bool = False,
        max_iter: int = 100,
        tol: float = 1e-10,
    ) -> None:
        self.method = method
        self.dim = dim
        self.preprocess = preprocess
        self.scale = scale
        self.max_iter = max_iter
        self.tol = tol

    def _check_params(self) -> None:
        check_choice(self.method, "method", ["gpa"])
        check_number(self.dim, "dim", integer=True, low=1, allow_none=True)
        check_choice(self.scale, "scale", [True, False])
        check_number(self.max_iter, "max_iter", integer=True, low=1)
        check_number(self.tol, "tol", low=0.0)

    # -- fitting ------------------------------------------------------------------------------------
    def _prepare(self, name: str, X: Any, n_rows: int | None) -> tuple[torch.Tensor, Any, Any]:
        t, spec = check_array(X, f"embeddings[{name!r}]", min_rows=2)
        if n_rows is not None and t.shape[0] != n_rows:
            raise ValueError(
                f"embeddings[{name!r}] has {t.shape[0]} rows, but the anchors have {n_rows}: every model "
                "must embed the same anchor items, in the same order."
            )
        prep = make_preprocessor(self.preprocess).fit(t)
        return prep._forward(t.to(_F64)), prep, spec

    def fit(self, embeddings: Mapping[str, ArrayLike]) -> UniversalSpace:
        """Fit the universal space from ``{model name: anchor embeddings}``.

        Parameters
        ----------
        embeddings : dict of str -> array of shape (n_anchors, d_k)
            At least two models; row ``i`` of every array embeds the same anchor item. Dimensions may
            differ.

        Returns
        -------
        self
        """
        self._check_params()
        if not isinstance(embeddings, Mapping):
            raise TypeError(
                f"embeddings must be a dict mapping model names to arrays, got {type(embeddings).__name__}. "
                "Pass e.g. {'model_a': Xa, 'model_b': Xb}."
            )
        if len(embeddings) < 2:
            raise ValueError(
                f"embeddings has {len(embeddings)} model(s); a universal space needs at least 2 "
                "(use Procrustes for a single pair)."
            )
        bad = [k for k in embeddings if not isinstance(k, str)]
        if bad:
            raise TypeError(f"Model names must be strings, got {bad!r}.")
        check_same_backend(**{f"embeddings[{k!r}]": v for k, v in embeddings.items()})
        names = list(embeddings)
        data, preps, n_rows = {}, {}, None
        for name in names:
            data[name], preps[name], _ = self._prepare(name, embeddings[name], n_rows)
            n_rows = data[name].shape[0]
        devices = {str(t.device) for t in data.values()}
        if len(devices) > 1:
            raise ValueError(f"The embeddings are on several devices ({sorted(devices)}); move them to one device.")
        gpa = generalized_procrustes(
            [data[k] for k in names],
            scale=bool(self.scale),
            max_iter=self.max_iter,
            tol=self.tol,
            label="UniversalSpace (GPA)",
        )
        rotations, mean, width = dict(zip(names, gpa.rotations)), gpa.mean_shape, gpa.mean_shape.shape[1]
        dim = width if self.dim is None else int(self.dim)
        if dim < width:
            centred = mean - mean.mean(0)
            _, _, Vh = torch.linalg.svd(centred, full_matrices=False)
            basis = Vh[:dim].T  # (width, dim)
        else:
            basis = torch.eye(width, dim, dtype=_F64, device=mean.device)
        self.names_ = names
        self.weights_ = {k: (rotations[k] @ basis)[: data[k].shape[1]].contiguous() for k in names}
        self.scales_ = dict(zip(names, gpa.scales))
        self.preprocessors_ = preps
        self.n_features_ = {k: int(data[k].shape[1]) for k in names}
        self.mean_shape_ = mean @ basis
        self.dim_ = dim
        self.history_ = gpa.history
        self.converged_ = gpa.converged
        self.n_iter_ = gpa.n_iter
        return self

    def add(self, name: str, X_anchors: ArrayLike) -> UniversalSpace:
        """Add one model by a single Procrustes fit of its anchors onto the stored mean shape.

        The other models and the mean shape are left as they are (no refit of all). ``X_anchors`` must
        embed the same anchor items, in the same order, as in :meth:`fit`.

        Returns
        -------
        self
        """
        check_is_fitted(self, ["mean_shape_"])
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}.")
        if name in self.names_:
            raise ValueError(
                f"A model named {name!r} is already in the universal space ({self.names_}); pick another name."
            )
        t, prep, _ = self._prepare(name, X_anchors, int(self.mean_shape_.shape[0]))
        target = self.mean_shape_.to(device=t.device)
        R, s = procrustes_onto(t, target, bool(self.scale))
        self.names_ = [*self.names_, name]
        self.weights_ = {**self.weights_, name: R}
        self.scales_ = {**self.scales_, name: float(s)}
        self.preprocessors_ = {**self.preprocessors_, name: prep}
        self.n_features_ = {**self.n_features_, name: int(t.shape[1])}
        return self

    # -- mapping ------------------------------------------------------------------------------------
    def _model(self, name: str) -> None:
        check_is_fitted(self, ["weights_"])
        if name not in self.weights_:
            raise ValueError(f"Unknown model {name!r}; the universal space holds {self.names_}.")

    def to_universal(self, X: ArrayLike, name: str) -> ArrayLike:
        """Map embeddings of model ``name`` into the universal space.

        Parameters
        ----------
        X : array of shape (n, d_name)
        name : str

        Returns
        -------
        array of shape (n, dim_)
            Same kind, dtype and device as ``X``.
        """
        self._model(name)
        t, spec = check_array(X, "X")
        check_n_features(t, self.n_features_[name], f"UniversalSpace (model {name!r})")
        return restore(self._to_universal(t.to(spec.compute_dtype), name), spec)

    def from_universal(self, Z: ArrayLike, name: str) -> ArrayLike:
        """Map universal coordinates into model ``name``'s space (exact inverse when ``d_name <= dim_``).

        Parameters
        ----------
        Z : array of shape (n, dim_)
        name : str

        Returns
        -------
        array of shape (n, d_name)
        """
        self._model(name)
        t, spec = check_array(Z, "Z")
        check_n_features(t, self.dim_, "UniversalSpace (universal side)", "Z")
        return restore(self._from_universal(t.to(spec.compute_dtype), name), spec)

    def translate(self, X: ArrayLike, src: str, dst: str) -> ArrayLike:
        """Map embeddings of model ``src`` into model ``dst``'s space through the universal space."""
        self._model(src)
        self._model(dst)
        t, spec = check_array(X, "X")
        check_n_features(t, self.n_features_[src], f"UniversalSpace (model {src!r})")
        t = t.to(spec.compute_dtype)
        return restore(self._from_universal(self._to_universal(t, src), dst), spec)

    def to_module(
        self,
        *,
        src: str | None = None,
        dst: str | None = None,
        trainable: bool = False,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.nn.Module:
        """A ``torch.nn.Module`` of one model's map into, out of, or through the universal space.

        ``src`` alone: :meth:`to_universal` of model ``src``; ``dst`` alone: :meth:`from_universal` into
        model ``dst``; both: :meth:`translate` from ``src`` to ``dst``, with the two linear maps fused into
        one ``(d_src, d_dst)`` matrix computed in float64 (so the module runs one matrix product between
        the two models' preprocessing steps). The maps live in buffers (parameters with
        ``trainable=True``; preprocessing statistics stay buffers): see
        :meth:`latentalign.align.base.Aligner.to_module` for what the module supports.

        Parameters
        ----------
        src, dst : str, optional
            Model names (at least one).
        trainable : bool, default False
        dtype : torch.dtype, optional
            Default ``torch.get_default_dtype()``.
        device : torch.device or str, optional

        Returns
        -------
        torch.nn.Module

        Examples
        --------
        >>> import numpy as np, torch
        >>> rng = np.random.default_rng(0)
        >>> A = rng.normal(size=(30, 3))
        >>> space = UniversalSpace().fit({"a": A, "b": A @ np.linalg.qr(rng.normal(size=(3, 3)))[0]})
        >>> m = space.to_module(src="a", dst="b", dtype=torch.float64)
        >>> bool(torch.allclose(m(torch.from_numpy(A)), torch.from_numpy(space.translate(A, "a", "b"))))
        True
        """
        from latentalign.align.modules import (
            LinearMap,
            finalize_module,
            preprocessor_module,
            sandwich,
        )

        if src is None and dst is None:
            raise ValueError(
                "UniversalSpace.to_module needs a model name: src='a' (into the universal space), dst='b' "
                "(out of it), or both (translation)."
            )
        for name in (src, dst):
            if name is not None:
                self._model(name)
        if dst is not None and self.scales_[dst] == 0:
            raise ValueError(f"Model {dst!r} has a zero scale, so from_universal cannot invert it.")
        F64 = torch.float64
        W = torch.eye(self.dim_, dtype=F64, device=self.mean_shape_.device)
        before: torch.nn.Module = torch.nn.Sequential()
        after: torch.nn.Module = torch.nn.Sequential()
        if src is not None:
            before = preprocessor_module(self.preprocessors_[src])
            W = self.scales_[src] * self.weights_[src].to(F64)
        if dst is not None:
            after = preprocessor_module(self.preprocessors_[dst], inverse=True)
            W_dst = self.weights_[dst].to(device=W.device, dtype=F64)
            W = W @ W_dst.T / self.scales_[dst]
        core = LinearMap(W.T, torch.zeros(W.shape[1], dtype=F64, device=W.device), trainable=bool(trainable))
        return finalize_module(sandwich(before, core, after), dtype=dtype, device=device)

    def _to_universal(self, X: torch.Tensor, name: str) -> torch.Tensor:
        Xp = self.preprocessors_[name]._forward(X)
        W = self.weights_[name].to(device=X.device, dtype=X.dtype)
        return (self.scales_[name] * Xp) @ W

    def _from_universal(self, Z: torch.Tensor, name: str) -> torch.Tensor:
        s = self.scales_[name]
        if s == 0:
            raise ValueError(f"Model {name!r} has a zero scale, so from_universal cannot invert it.")
        W = self.weights_[name].to(device=Z.device, dtype=Z.dtype)
        return self.preprocessors_[name]._backward((Z @ W.T) / s)

    def cycle_consistency(self, X: ArrayLike, cycle: Sequence[str]) -> float:
        """How well a round trip through several models returns to the start (1.0 is perfect).

        ``X`` (embeddings of model ``cycle[0]``) is translated ``cycle[0] -> cycle[1] -> ... -> cycle[-1]
        -> cycle[0]``; the score is ``1 - ||X_back - X||^2 / ||X - mean(X)||^2`` (an R^2, float64).

        Parameters
        ----------
        X : array of shape (n, d_cycle[0])
            At least two rows that are not all equal.
        cycle : sequence of str
            At least two model names; the return to ``cycle[0]`` is added.

        Returns
        -------
        float
        """
        names = list(cycle)
        if len(names) < 2:
            raise ValueError(f"cycle must name at least 2 models, got {names}.")
        for name in names:
            self._model(name)
        t, _ = check_array(X, "X", min_rows=2)
        check_n_features(t, self.n_features_[names[0]], f"UniversalSpace (model {names[0]!r})")
        start = t.to(_F64)
        current = start
        for src, dst in zip(names, [*names[1:], names[0]]):
            current = self._from_universal(self._to_universal(current, src), dst)
        total = float((start - start.mean(0)).pow(2).sum())
        if total == 0:
            raise ValueError("X has zero variance; the cycle-consistency R^2 is undefined. Pass distinct rows.")
        return 1.0 - float((current - start).pow(2).sum()) / total
