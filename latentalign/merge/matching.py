"""Matching the units of two models of one architecture: from their weights or from their activations.

* :func:`weight_matching` -- coordinate ascent over the permutations of a spec (Ainsworth et al.,
  "Git Re-Basin", ICLR 2023): the objective is the sum over all weights of ``<W_a, P(W_b)>``; with every
  other permutation fixed it is linear in one permutation, whose best value is a linear assignment
  (:func:`scipy.optimize.linear_sum_assignment`) on the sum, over the axes it acts on, of the products
  of the weights unfolded along that axis. Each update keeps the objective from decreasing.
* :func:`activation_matching` -- correlation of the units' outputs on a batch of inputs (forward hooks
  on the layers that produce each permutation's units), one linear assignment per permutation.

Both return a :class:`MatchResult`: ``perms`` maps every permutation name to the index array that
reorders model B onto model A (``apply_permutation(state_b, spec, perms)``; see
:mod:`latentalign.merge.spec` for the convention), ``objective`` logs the objective per iteration.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from latentalign.exceptions import ConvergenceWarning
from latentalign.merge.checks import check_same_architecture, check_same_device
from latentalign.merge.spec import PermutationSpec, check_spec

__all__ = ["MatchResult", "weight_matching", "activation_matching", "matching_objective"]

logger = logging.getLogger(__name__)

_UNIT_AXIS_LAST = (nn.Linear,)
_UNIT_AXIS_ONE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class MatchResult:
    """Permutations that reorder model B's units onto model A's, and the objective's history.

    Attributes
    ----------
    perms : dict of str to ndarray
        One index array per permutation name.
    objective : list of float
        Weight matching: ``sum <W_a, P(W_b)>`` after each sweep (index 0: before any update).
        Activation matching: the summed correlation of matched units (one entry).
    converged : bool
        Whether the method stopped because no permutation improved.
    """

    perms: dict[str, np.ndarray]
    objective: list[float] = field(default_factory=list)
    converged: bool = True


def _float_entries(model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(model, nn.Module):
        return {k: v.detach() for k, v in model.named_parameters()}
    if isinstance(model, Mapping):
        return {k: v.detach() for k, v in model.items() if torch.is_tensor(v) and v.is_floating_point()}
    raise TypeError(
        f"Expected an nn.Module or a state_dict (mapping of names to tensors); received {type(model).__name__}."
    )


def _permute(
    tensor: torch.Tensor, axes: tuple[str | None, ...], perms: Mapping[str, torch.Tensor], skip: int | None = None
) -> torch.Tensor:
    for axis, perm in enumerate(axes):
        if perm is not None and axis != skip:
            tensor = tensor.index_select(axis, perms[perm])
    return tensor


def matching_objective(
    params_a: Mapping[str, torch.Tensor],
    params_b: Mapping[str, torch.Tensor],
    spec: PermutationSpec,
    perms: Mapping[str, object],
) -> float:
    """``sum over entries of <W_a, P(W_b)>``: the quantity :func:`weight_matching` maximizes.

    Examples
    --------
    >>> spec = PermutationSpec.from_axes({"w": ("p", None)})
    >>> a = {"w": torch.tensor([[1.0, 0.0], [0.0, 2.0]])}
    >>> b = {"w": torch.tensor([[0.0, 2.0], [1.0, 0.0]])}
    >>> matching_objective(a, b, spec, {"p": [0, 1]}), matching_objective(a, b, spec, {"p": [1, 0]})
    (0.0, 5.0)
    """
    index = {k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in perms.items()}
    total = 0.0
    for key, wa in params_a.items():
        wb = _permute(params_b[key], spec.axes_to_perm[key], {k: v.to(wa.device) for k, v in index.items()})
        total += float(torch.sum(wa.detach().double() * wb.detach().double()))
    return total


def weight_matching(
    params_a: nn.Module | Mapping[str, torch.Tensor],
    params_b: nn.Module | Mapping[str, torch.Tensor],
    spec: PermutationSpec,
    *,
    max_iter: int = 100,
    seed: int | None = 0,
    tol: float = 1e-12,
) -> MatchResult:
    """Match the units of B to those of A from their weights alone (Git Re-Basin weight matching).

    Parameters
    ----------
    params_a, params_b : nn.Module or mapping of str to Tensor
        Two models of one architecture. For a module, its parameters enter the objective (not its
        buffers such as batch-norm running statistics); for a mapping, every floating-point entry.
    spec : PermutationSpec
    max_iter : int, default 100
        Sweeps over the permutations (each in a random order drawn from ``seed``).
    seed : int or None, default 0
    tol : float, default 1e-12
        Relative improvement below which a permutation is left unchanged; the method stops after a
        sweep that changes nothing.

    Returns
    -------
    MatchResult
        ``objective[i]``: the objective after sweep ``i`` (``objective[0]``: identity permutations).
        It never decreases.

    Warns
    -----
    ConvergenceWarning
        When ``max_iter`` sweeps all still improved the objective.

    Examples
    --------
    A model and a copy of it with its hidden units shuffled: the shuffle is recovered.

    >>> from latentalign.merge.architectures import MLP
    >>> from latentalign.merge.spec import mlp_spec, random_permutations, permute_model
    >>> torch.manual_seed(0) and None
    >>> model_a, spec = MLP(20, [16, 16], 4), mlp_spec(2)
    >>> planted = random_permutations(spec, model_a, seed=1)
    >>> model_b = permute_model(model_a, spec, planted)
    >>> result = weight_matching(model_a, model_b, spec)
    >>> all((result.perms[k] == np.argsort(planted[k])).all() for k in planted)
    True
    >>> bool(np.all(np.diff(result.objective) >= 0))
    True
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1; received {max_iter}.")
    state_a, state_b = _float_entries(params_a), _float_entries(params_b)
    check_same_architecture([state_a, state_b], ["params_a", "params_b"])
    check_same_device([state_a, state_b], ["params_a", "params_b"])
    sizes = check_spec(state_a, spec, partial=True)
    missing = [p for p in spec.names if p not in sizes]
    if missing:
        raise ValueError(
            f"Permutations {missing[:5]} act on no entry of params_a, so weight matching cannot size them; pass "
            "the model (or a state_dict holding the weights those permutations act on)."
        )
    a = {k: v.double() for k, v in state_a.items()}
    b = {k: v.double() for k, v in state_b.items()}
    device = next(iter(a.values())).device
    perms = {p: torch.arange(n, device=device) for p, n in sizes.items()}
    # a weight with one permutation on two of its axes makes the objective quadratic in it: then an
    # assignment step is accepted only if the exact objective does not decrease
    coupled = any(
        len([x for x in axes if x is not None]) != len({x for x in axes if x is not None})
        for axes in spec.axes_to_perm.values()
    )
    rng = np.random.default_rng(seed)
    history = [matching_objective(a, b, spec, perms)]
    converged = False
    for sweep in range(max_iter):
        changed = False
        for p in rng.permutation(list(sizes)):
            n = sizes[p]
            gain = torch.zeros(n, n, dtype=torch.float64, device=device)
            for key, axis in spec.perm_to_axes[p]:
                if key not in a:
                    continue
                wa = a[key].movedim(axis, 0).reshape(n, -1)
                wb = _permute(b[key], spec.axes_to_perm[key], perms, skip=axis).movedim(axis, 0).reshape(n, -1)
                gain += wa @ wb.T
            gain_np = gain.cpu().numpy()
            _, columns = linear_sum_assignment(gain_np, maximize=True)
            rows = np.arange(n)
            old = float(gain_np[rows, perms[p].cpu().numpy()].sum())
            new = float(gain_np[rows, columns].sum())
            if new > old + tol * max(1.0, abs(old)):
                previous = perms[p]
                perms[p] = torch.as_tensor(columns, device=device)
                if coupled and matching_objective(a, b, spec, perms) < history[-1]:
                    perms[p] = previous
                    continue
                changed = True
        history.append(matching_objective(a, b, spec, perms))
        logger.debug("weight matching sweep %d: objective %.6g", sweep, history[-1])
        if not changed:
            converged = True
            break
    if not converged:
        warnings.warn(
            f"weight_matching still improved after max_iter={max_iter} sweeps (objective {history[-1]:.6g}); "
            "raise max_iter to reach a fixed point.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return MatchResult({p: v.cpu().numpy() for p, v in perms.items()}, history, converged)


def _producers(model: nn.Module, spec: PermutationSpec) -> dict[str, list[tuple[str, nn.Module]]]:
    """For every permutation, the modules whose outputs are its units (Linear, Conv, BatchNorm rows)."""
    found: dict[str, list[tuple[str, nn.Module]]] = {}
    modules = dict(model.named_modules())
    for perm, axes in spec.perm_to_axes.items():
        for key, axis in axes:
            name, _, leaf = key.rpartition(".")
            module = modules.get(name)
            if axis == 0 and leaf == "weight" and isinstance(module, _UNIT_AXIS_LAST + _UNIT_AXIS_ONE):
                found.setdefault(perm, []).append((name, module))
    missing = [p for p in spec.names if p not in found]
    if missing:
        raise ValueError(
            f"activation_matching finds no Linear, Conv or BatchNorm layer producing the units of {missing[:5]} "
            "(it hooks the modules whose weight rows a permutation reorders). Use weight_matching for these "
            "models, or declare the spec on such layers."
        )
    return found


def _batches(inputs: torch.Tensor | Iterable[object]) -> Iterable[torch.Tensor]:
    if torch.is_tensor(inputs):
        yield inputs
        return
    for batch in inputs:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        if not torch.is_tensor(batch):
            raise TypeError(
                f"inputs must be a tensor or an iterable of tensors (or of (x, y) pairs); received a batch of type {type(batch).__name__}."
            )
        yield batch


class _Moments:
    """Running sums for the correlation between the units of A and of B at one layer."""

    def __init__(self) -> None:
        self.count = 0
        self.sum_a: torch.Tensor | float = 0.0
        self.sum_b: torch.Tensor | float = 0.0
        self.sq_a: torch.Tensor | float = 0.0
        self.sq_b: torch.Tensor | float = 0.0
        self.cross: torch.Tensor | float = 0.0

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.count += a.shape[0]
        self.sum_a = self.sum_a + a.sum(0)
        self.sum_b = self.sum_b + b.sum(0)
        self.sq_a = self.sq_a + (a * a).sum(0)
        self.sq_b = self.sq_b + (b * b).sum(0)
        self.cross = self.cross + a.T @ b

    def correlation(self) -> torch.Tensor:
        n = self.count
        mean_a, mean_b = torch.as_tensor(self.sum_a) / n, torch.as_tensor(self.sum_b) / n
        std_a = (torch.as_tensor(self.sq_a) / n - mean_a**2).clamp_min(0).sqrt()
        std_b = (torch.as_tensor(self.sq_b) / n - mean_b**2).clamp_min(0).sqrt()
        cov = torch.as_tensor(self.cross) / n - mean_a[:, None] * mean_b[None, :]
        return cov / (std_a[:, None] * std_b[None, :] + 1e-12)


def _units(output: torch.Tensor, module: nn.Module) -> torch.Tensor:
    if isinstance(module, _UNIT_AXIS_ONE):
        output = output.movedim(1, -1)
    return output.reshape(-1, output.shape[-1]).double()


@torch.no_grad()
def activation_matching(
    model_a: nn.Module,
    model_b: nn.Module,
    spec: PermutationSpec,
    inputs: torch.Tensor | Iterable[object],
) -> MatchResult:
    """Match the units of B to those of A by the correlation of their outputs on ``inputs``.

    For every permutation, forward hooks record the outputs of the layers that produce its units (the
    Linear, Conv and BatchNorm modules whose weight rows it reorders; every spatial position counts as a
    sample), the Pearson correlation between each unit of A and each unit of B is summed over those
    layers, and a linear assignment picks the pairing of largest total correlation. The models run in
    eval mode; their mode is restored afterwards.

    Parameters
    ----------
    model_a, model_b : nn.Module
        Two models of one architecture, on one device.
    spec : PermutationSpec
    inputs : Tensor or iterable of Tensor or of (Tensor, target)
        Batches fed to both models (moved to the models' device).

    Returns
    -------
    MatchResult
        ``objective``: one entry, the summed correlation of the matched units over all permutations.

    Examples
    --------
    >>> from latentalign.merge.architectures import MLP
    >>> from latentalign.merge.spec import mlp_spec, random_permutations, permute_model
    >>> torch.manual_seed(0) and None
    >>> model_a, spec = MLP(20, [16, 16], 4), mlp_spec(2)
    >>> planted = random_permutations(spec, model_a, seed=1)
    >>> model_b = permute_model(model_a, spec, planted)
    >>> result = activation_matching(model_a, model_b, spec, torch.randn(256, 20))
    >>> all((result.perms[k] == np.argsort(planted[k])).all() for k in planted)
    True
    """
    for label, model in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"{label} must be an nn.Module (activation matching runs it); received {type(model).__name__}."
            )
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    check_same_architecture([state_a, state_b], ["model_a", "model_b"])
    device = check_same_device([state_a, state_b], ["model_a", "model_b"])
    check_spec(state_a, spec)
    producers_a, producers_b = _producers(model_a, spec), _producers(model_b, spec)
    moments = {(p, name): _Moments() for p, mods in producers_a.items() for name, _ in mods}
    outputs: dict[tuple[str, str], torch.Tensor] = {}

    def recorder(tag: tuple[str, str], module: nn.Module):  # noqa: ANN202 - torch hook signature
        def hook(_module: nn.Module, _args: object, output: torch.Tensor) -> None:
            outputs[tag] = _units(output, module)

        return hook

    handles = []
    for side, producers in (("a", producers_a), ("b", producers_b)):
        for mods in producers.values():
            for name, module in mods:
                handles.append(module.register_forward_hook(recorder((side, name), module)))
    modes = (model_a.training, model_b.training)
    model_a.eval()
    model_b.eval()
    try:
        seen = False
        for batch in _batches(inputs):
            seen = True
            batch = batch.to(device)
            outputs.clear()
            model_a(batch)
            model_b(batch)
            for p, name in moments:
                moments[(p, name)].update(outputs[("a", name)], outputs[("b", name)])
        if not seen:
            raise ValueError("inputs yielded no batch; pass at least one batch of inputs.")
    finally:
        for handle in handles:
            handle.remove()
        model_a.train(modes[0])
        model_b.train(modes[1])
    perms: dict[str, np.ndarray] = {}
    total = 0.0
    for p, mods in producers_a.items():
        corr = sum(moments[(p, name)].correlation() for name, _ in mods)
        corr_np = torch.as_tensor(corr).cpu().numpy()
        rows, columns = linear_sum_assignment(corr_np, maximize=True)
        perms[p] = columns
        total += float(corr_np[rows, columns].sum())
    return MatchResult(perms, [total], True)
