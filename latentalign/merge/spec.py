"""Permutation specs: which axes of which weights each unit permutation acts on.

Two networks trained from different seeds often compute the same hidden features in a different order.
Reordering the hidden units of a layer (the rows of the weights that produce them and the columns of the
weights that read them) leaves the function unchanged, so the units of two networks can be matched and
their weights compared or averaged. A :class:`PermutationSpec` is that symmetry written as data: for
every permutation, the ``(name, axis)`` pairs of the ``state_dict`` entries it reorders, and for every
entry, the permutation acting on each of its axes (``None`` where an axis is not permuted).

Builders cover the reference architectures of :mod:`latentalign.merge.architectures`
(:func:`mlp_spec`, :func:`cnn_spec`, :func:`resnet_spec`, :func:`transformer_block_spec`); any other
model gets a spec from a small declaration, one tuple per ``state_dict`` entry
(:meth:`PermutationSpec.from_axes`). :func:`check_spec` compares a spec with a model and
:func:`apply_permutation` reorders a ``state_dict``.

Conventions
-----------
``perms[name]`` is an index array ``p`` such that the permuted tensor is ``w.index_select(axis, p)``:
unit ``i`` of the permuted model is unit ``p[i]`` of the original. Matching model B onto model A returns
the ``p`` that makes B's unit ``p[i]`` play the role of A's unit ``i``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch
from torch import nn

__all__ = [
    "PermutationSpec",
    "check_spec",
    "apply_permutation",
    "permute_model",
    "random_permutations",
    "state_dict_of",
    "mlp_spec",
    "cnn_spec",
    "resnet_spec",
    "transformer_block_spec",
]

_BN_ENTRIES = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class PermutationSpec:
    """Unit permutations of a model, as data.

    Parameters
    ----------
    axes_to_perm : mapping of str to tuple of (str or None)
        For every ``state_dict`` entry, the permutation acting on each of its axes (``None``: the axis
        is not permuted). A 0-d entry (such as batch norm's ``num_batches_tracked``) maps to ``()``.

    Attributes
    ----------
    perm_to_axes : mapping of str to tuple of (str, int)
        The inverse view: for every permutation, the ``(entry, axis)`` pairs it reorders.

    Examples
    --------
    A two-layer perceptron has one hidden permutation, on the rows of the first layer and the columns
    of the second:

    >>> spec = PermutationSpec.from_axes({
    ...     "fc1.weight": ("h", None), "fc1.bias": ("h",),
    ...     "fc2.weight": (None, "h"), "fc2.bias": (None,),
    ... })
    >>> spec.perm_to_axes["h"]
    (('fc1.weight', 0), ('fc1.bias', 0), ('fc2.weight', 1))
    >>> spec.names
    ('h',)
    """

    axes_to_perm: Mapping[str, tuple[str | None, ...]]
    perm_to_axes: Mapping[str, tuple[tuple[str, int], ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        axes: dict[str, tuple[str | None, ...]] = {}
        for key, value in dict(self.axes_to_perm).items():
            if not isinstance(key, str):
                raise TypeError(f"axes_to_perm keys must be state_dict names (str); received {key!r}.")
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise TypeError(
                    f"axes_to_perm[{key!r}] must be a tuple with one permutation name (or None) per axis; "
                    f"received {value!r}. Write ('h',) for a 1-d entry, not 'h'."
                )
            axes[key] = tuple(value)
        perm_to_axes: dict[str, list[tuple[str, int]]] = {}
        for key, value in axes.items():
            for axis, perm in enumerate(value):
                if perm is not None:
                    perm_to_axes.setdefault(perm, []).append((key, axis))
        object.__setattr__(self, "axes_to_perm", MappingProxyType(axes))
        object.__setattr__(self, "perm_to_axes", MappingProxyType({p: tuple(v) for p, v in perm_to_axes.items()}))

    @classmethod
    def from_axes(cls, axes_to_perm: Mapping[str, Sequence[str | None]]) -> PermutationSpec:
        """Build a spec from one tuple per ``state_dict`` entry (see the class docstring)."""
        return cls({k: tuple(v) for k, v in axes_to_perm.items()})

    @property
    def names(self) -> tuple[str, ...]:
        """The permutation names, in the order they first appear."""
        return tuple(self.perm_to_axes)

    def sizes(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """Number of units each permutation reorders, read from ``state_dict``."""
        sizes: dict[str, int] = {}
        for perm, axes in self.perm_to_axes.items():
            for key, axis in axes:
                if key in state_dict:
                    sizes[perm] = int(state_dict[key].shape[axis])
                    break
        return sizes

    def __or__(self, other: PermutationSpec) -> PermutationSpec:
        """Union of two specs over disjoint entries (for models built of several parts)."""
        shared = sorted(set(self.axes_to_perm) & set(other.axes_to_perm))
        if shared:
            raise ValueError(f"Cannot join specs that both declare {shared[:5]}; each entry must be declared once.")
        return PermutationSpec({**self.axes_to_perm, **other.axes_to_perm})


def state_dict_of(model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model's ``state_dict`` (detached), or a copy of the mapping given.

    Examples
    --------
    >>> sorted(state_dict_of(torch.nn.Linear(2, 3)))
    ['bias', 'weight']
    """
    if isinstance(model, nn.Module):
        return {k: v.detach() for k, v in model.state_dict().items()}
    if isinstance(model, Mapping):
        return dict(model)
    raise TypeError(
        f"Expected an nn.Module or a state_dict (mapping of names to tensors); received {type(model).__name__}."
    )


def check_spec(
    model: nn.Module | Mapping[str, torch.Tensor], spec: PermutationSpec, *, partial: bool = False
) -> dict[str, int]:
    """Check that ``spec`` describes ``model``; return the size of every permutation.

    Parameters
    ----------
    model : nn.Module or mapping of str to Tensor
        The model or its ``state_dict``.
    spec : PermutationSpec
    partial : bool, default False
        Allow entries of the spec that the state_dict lacks (for a subset such as the parameters
        without the buffers). Entries of the state_dict missing from the spec are always an error.

    Returns
    -------
    dict of str to int
        Units per permutation.

    Raises
    ------
    ValueError
        An entry is not covered by the spec, a spec name does not exist, an entry's number of axes
        differs from its declaration, or two axes under the same permutation have different sizes.

    Examples
    --------
    >>> from latentalign.merge.architectures import MLP
    >>> check_spec(MLP(4, [8, 6], 3), mlp_spec(2))
    {'h0': 8, 'h1': 6}
    >>> check_spec({"w": torch.zeros(2, 2)}, mlp_spec(1))
    Traceback (most recent call last):
    ...
    ValueError: The spec does not cover 1 entry of the state_dict: ['w']. ...
    """
    if not isinstance(spec, PermutationSpec):
        raise TypeError(f"spec must be a PermutationSpec; received {type(spec).__name__}.")
    state = state_dict_of(model)
    uncovered = [k for k in state if k not in spec.axes_to_perm]
    if uncovered:
        raise ValueError(
            f"The spec does not cover {len(uncovered)} entr{'y' if len(uncovered) == 1 else 'ies'} of the "
            f"state_dict: {uncovered[:5]}. Declare every entry (None on the axes that are not permuted), e.g. "
            f"PermutationSpec.from_axes({{{uncovered[0]!r}: (None,) * ndim, ...}})."
        )
    missing = [k for k in spec.axes_to_perm if k not in state]
    if missing and not partial:
        raise ValueError(
            f"The spec names {len(missing)} entr{'y' if len(missing) == 1 else 'ies'} that the state_dict "
            f"lacks: {missing[:5]}. Build the spec for this architecture (check the builder's arguments: "
            "depth, number of layers, prefix)."
        )
    sizes: dict[str, int] = {}
    source: dict[str, str] = {}
    for key, tensor in state.items():
        declared = spec.axes_to_perm[key]
        if len(declared) != tensor.dim():
            raise ValueError(
                f"{key!r} has {tensor.dim()} axes (shape {tuple(tensor.shape)}) but the spec declares "
                f"{len(declared)}: {declared}. Declare one permutation name or None per axis."
            )
        for axis, perm in enumerate(declared):
            if perm is None:
                continue
            size = int(tensor.shape[axis])
            if perm in sizes and sizes[perm] != size:
                raise ValueError(
                    f"Permutation {perm!r} acts on {source[perm]} of size {sizes[perm]} and on axis {axis} of "
                    f"{key!r} of size {size}; the axes of one permutation must have the same size. Check "
                    "the spec's declaration for these entries."
                )
            sizes.setdefault(perm, size)
            source.setdefault(perm, f"axis {axis} of {key!r}")
    return sizes


def _check_perms(perms: Mapping[str, object], sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
    unknown = sorted(set(perms) - set(sizes))
    if unknown:
        raise ValueError(f"perms names {unknown[:5]}, which the spec does not define; it defines {sorted(sizes)}.")
    out: dict[str, torch.Tensor] = {}
    for name, perm in perms.items():
        index = torch.as_tensor(np.asarray(perm), dtype=torch.long).reshape(-1)
        n = sizes[name]
        if index.numel() != n or not torch.equal(torch.sort(index).values, torch.arange(n)):
            raise ValueError(
                f"perms[{name!r}] must be a permutation of range({n}); received {index.numel()} indices "
                f"{index[:8].tolist()}{'...' if index.numel() > 8 else ''}. Use the output of a matching function."
            )
        out[name] = index
    return out


def apply_permutation(
    state_dict: Mapping[str, torch.Tensor] | nn.Module,
    spec: PermutationSpec,
    perms: Mapping[str, Sequence[int] | np.ndarray | torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Reorder the units of a ``state_dict``: every axis under ``perms[p]`` becomes ``w.index_select(axis, perms[p])``.

    Permutations missing from ``perms`` are left as the identity. The permuted weights define the same
    function as the original ones (a model loaded with them gives the same outputs).

    Parameters
    ----------
    state_dict : mapping of str to Tensor, or nn.Module
    spec : PermutationSpec
        Must cover every entry (see :func:`check_spec`; entries of the spec absent from the
        ``state_dict`` are allowed).
    perms : mapping of str to index array
        One permutation of ``range(n_units)`` per permutation name.

    Returns
    -------
    dict of str to Tensor
        A new state_dict; the input is not modified.

    Examples
    --------
    >>> from latentalign.merge.architectures import MLP
    >>> torch.manual_seed(0) and None
    >>> model = MLP(4, [8], 3).eval()
    >>> perms = random_permutations(mlp_spec(1), model, seed=0)
    >>> permuted = permute_model(model, mlp_spec(1), perms)
    >>> x = torch.randn(5, 4)
    >>> bool(torch.allclose(model(x), permuted(x), atol=1e-6))
    True
    >>> bool(torch.equal(permuted.layers[0].weight, model.layers[0].weight[perms["h0"]]))
    True
    """
    state = state_dict_of(state_dict)
    sizes = check_spec(state, spec, partial=True)
    index = _check_perms(perms, sizes)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        for axis, perm in enumerate(spec.axes_to_perm[key]):
            if perm is not None and perm in index:
                tensor = tensor.index_select(axis, index[perm].to(tensor.device))
        out[key] = tensor
    return out


def permute_model(
    model: nn.Module, spec: PermutationSpec, perms: Mapping[str, Sequence[int] | np.ndarray | torch.Tensor]
) -> nn.Module:
    """A new model of the same class with its units reordered by ``perms`` (see :func:`apply_permutation`).

    Examples
    --------
    >>> from latentalign.merge.architectures import MLP
    >>> model = MLP(4, [8], 3)
    >>> permute_model(model, mlp_spec(1), {"h0": list(range(8))[::-1]}) is model
    False
    """
    new = copy.deepcopy(model)
    new.load_state_dict(apply_permutation(model, spec, perms))
    return new


def random_permutations(
    spec: PermutationSpec, model: nn.Module | Mapping[str, torch.Tensor], *, seed: int | None = None
) -> dict[str, np.ndarray]:
    """One random permutation per name of ``spec``, sized from ``model`` (planted truth for tests).

    Examples
    --------
    >>> from latentalign.merge.architectures import MLP
    >>> perms = random_permutations(mlp_spec(2), MLP(4, [8, 6], 3), seed=0)
    >>> {k: sorted(v.tolist()) == list(range(len(v))) for k, v in perms.items()}
    {'h0': True, 'h1': True}
    """
    rng = np.random.default_rng(seed)
    sizes = check_spec(model, spec, partial=True)
    return {name: rng.permutation(n) for name, n in sizes.items()}


# --------------------------------------------------------------------------- builders


def _bn(prefix: str, perm: str | None) -> dict[str, tuple[str | None, ...]]:
    axes: dict[str, tuple[str | None, ...]] = {f"{prefix}.{e}": (perm,) for e in _BN_ENTRIES}
    axes[f"{prefix}.num_batches_tracked"] = ()
    return axes


def mlp_spec(num_hidden: int, *, prefix: str = "layers") -> PermutationSpec:
    """Spec of a multilayer perceptron whose linear layers are ``{prefix}.0`` to ``{prefix}.{num_hidden}``.

    Hidden layer ``i`` gets permutation ``"h{i}"``: the rows of layer ``i`` (weight and bias) and the
    columns of layer ``i + 1``. Inputs and outputs are not permuted. Matches
    :class:`~latentalign.merge.architectures.MLP`.

    Examples
    --------
    >>> spec = mlp_spec(2)
    >>> spec.axes_to_perm["layers.1.weight"]
    ('h1', 'h0')
    >>> spec.axes_to_perm["layers.2.weight"]
    (None, 'h1')
    """
    if num_hidden < 1:
        raise ValueError(
            f"num_hidden must be at least 1 (a model without hidden units has nothing to permute); received {num_hidden}."
        )
    axes: dict[str, tuple[str | None, ...]] = {}
    for i in range(num_hidden + 1):
        out_perm = f"h{i}" if i < num_hidden else None
        in_perm = f"h{i - 1}" if i > 0 else None
        axes[f"{prefix}.{i}.weight"] = (out_perm, in_perm)
        axes[f"{prefix}.{i}.bias"] = (out_perm,)
    return PermutationSpec(axes)


def cnn_spec(num_blocks: int, *, prefix: str = "blocks", head: str = "head") -> PermutationSpec:
    """Spec of a plain (VGG-like) CNN of conv + batch norm blocks followed by a linear head.

    Block ``i`` (``{prefix}.{i}.conv`` and ``{prefix}.{i}.bn``) gets permutation ``"c{i}"`` on its output
    channels: the conv weight's axis 0 and bias, every batch-norm entry (weight, bias, running mean and
    variance), and the input channels (axis 1) of the next conv, or the columns of ``{head}.weight``
    after the last block (the head reads globally pooled channels). Matches
    :class:`~latentalign.merge.architectures.VGGLike`.

    Examples
    --------
    >>> spec = cnn_spec(2)
    >>> spec.axes_to_perm["blocks.1.conv.weight"]
    ('c1', 'c0', None, None)
    >>> spec.axes_to_perm["blocks.0.bn.running_var"]
    ('c0',)
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be at least 1; received {num_blocks}.")
    axes: dict[str, tuple[str | None, ...]] = {}
    for i in range(num_blocks):
        perm, previous = f"c{i}", (f"c{i - 1}" if i > 0 else None)
        axes[f"{prefix}.{i}.conv.weight"] = (perm, previous, None, None)
        axes[f"{prefix}.{i}.conv.bias"] = (perm,)
        axes.update(_bn(f"{prefix}.{i}.bn", perm))
    axes[f"{head}.weight"] = (None, f"c{num_blocks - 1}")
    axes[f"{head}.bias"] = (None,)
    return PermutationSpec(axes)


def resnet_spec(blocks_per_stage: Sequence[int] | int = 3, *, num_stages: int = 3) -> PermutationSpec:
    """Spec of a ResNet of basic residual blocks (ResNet-20 style, :class:`~latentalign.merge.architectures.ResNet`).

    The residual stream of stage ``s`` carries ONE permutation ``"stream{s}"``, shared by every tensor
    that writes into it or reads from it: the stem (``conv1``, ``bn1``) for stage 0, the second conv and
    batch norm of every block of the stage, its shortcut projection (``shortcut.0`` conv rows and
    ``shortcut.1`` batch norm), the first conv of every block of the stage (columns), and the head
    (``linear`` columns) after the last stage. The projection of the first block of stage ``s > 0`` reads
    ``"stream{s-1}"``. Inside block ``b`` of stage ``s``, ``"s{s}b{b}"`` reorders the hidden channels
    between its two convs.

    Parameters
    ----------
    blocks_per_stage : int or sequence of int, default 3
        Blocks in each stage (3 for ResNet-20: depth = 6 * blocks + 2).
    num_stages : int, default 3
        Used when ``blocks_per_stage`` is an int.

    Examples
    --------
    >>> spec = resnet_spec(1)
    >>> spec.axes_to_perm["stages.1.0.shortcut.0.weight"]
    ('stream1', 'stream0', None, None)
    >>> spec.axes_to_perm["stages.1.0.conv2.weight"]
    ('stream1', 's1b0', None, None)
    """
    blocks = (
        [int(blocks_per_stage)] * num_stages
        if isinstance(blocks_per_stage, int)
        else [int(b) for b in blocks_per_stage]
    )
    if not blocks or min(blocks) < 1:
        raise ValueError(f"blocks_per_stage must give at least one block per stage; received {blocks_per_stage!r}.")
    axes: dict[str, tuple[str | None, ...]] = {"conv1.weight": ("stream0", None, None, None)}
    axes.update(_bn("bn1", "stream0"))
    for s, count in enumerate(blocks):
        stream = f"stream{s}"
        for b in range(count):
            prefix, inner = f"stages.{s}.{b}", f"s{s}b{b}"
            reads = f"stream{s - 1}" if (b == 0 and s > 0) else stream
            axes[f"{prefix}.conv1.weight"] = (inner, reads, None, None)
            axes.update(_bn(f"{prefix}.bn1", inner))
            axes[f"{prefix}.conv2.weight"] = (stream, inner, None, None)
            axes.update(_bn(f"{prefix}.bn2", stream))
            if b == 0 and s > 0:
                axes[f"{prefix}.shortcut.0.weight"] = (stream, reads, None, None)
                axes.update(_bn(f"{prefix}.shortcut.1", stream))
    axes["linear.weight"] = (None, f"stream{len(blocks) - 1}")
    axes["linear.bias"] = (None,)
    return PermutationSpec(axes)


def transformer_block_spec(*, attention: str = "heads", prefix: str = "") -> PermutationSpec:
    """Spec of one pre-norm transformer encoder block (:class:`~latentalign.merge.architectures.TransformerBlock`).

    What is permuted:

    * ``"mlp"`` -- the hidden units of the feed-forward part: rows of ``mlp.fc1`` (weight and bias) and
      columns of ``mlp.fc2``. Always.
    * ``"heads"`` -- whole attention heads: axis 0 of the query, key and value projections (stored
      per head, shape ``(heads, head_dim, width)``) and axis 1 of ``attn.out_weight`` (shape
      ``(width, heads, head_dim)``). With ``attention="heads"`` or ``"both"``.
    * ``"value_dims"`` and ``"qk_dims"`` -- the dimensions inside a head, the same reordering in every
      head: value dims (value projection axis 1 and ``attn.out_weight`` axis 2) and query/key dims
      (axis 1 of both, jointly, which keeps every dot product). With ``attention="dims"`` or ``"both"``.

    The residual stream (block input and output, the layer norms, ``mlp.fc2`` rows and ``attn.out``
    rows) is not permuted: it is shared with whatever comes before and after the block.

    Parameters
    ----------
    attention : {"heads", "dims", "both", "none"}, default "heads"
    prefix : str, default ""
        Prepended (with a dot) to every name, for a block inside a larger model.

    Examples
    --------
    >>> spec = transformer_block_spec(attention="both")
    >>> spec.axes_to_perm["attn.v_weight"]
    ('heads', 'value_dims', None)
    >>> spec.axes_to_perm["attn.out_weight"]
    (None, 'heads', 'value_dims')
    """
    choices = ("heads", "dims", "both", "none")
    if attention not in choices:
        raise ValueError(f"attention must be one of {choices}; received {attention!r}.")
    heads = "heads" if attention in ("heads", "both") else None
    dims = attention in ("dims", "both")
    qk = "qk_dims" if dims else None
    value = "value_dims" if dims else None
    axes: dict[str, tuple[str | None, ...]] = {
        "ln1.weight": (None,),
        "ln1.bias": (None,),
        "attn.q_weight": (heads, qk, None),
        "attn.q_bias": (heads, qk),
        "attn.k_weight": (heads, qk, None),
        "attn.k_bias": (heads, qk),
        "attn.v_weight": (heads, value, None),
        "attn.v_bias": (heads, value),
        "attn.out_weight": (None, heads, value),
        "attn.out_bias": (None,),
        "ln2.weight": (None,),
        "ln2.bias": (None,),
        "mlp.fc1.weight": ("mlp", None),
        "mlp.fc1.bias": ("mlp",),
        "mlp.fc2.weight": (None, "mlp"),
        "mlp.fc2.bias": (None,),
    }
    if prefix:
        axes = {f"{prefix}.{k}": v for k, v in axes.items()}
    return PermutationSpec(axes)
