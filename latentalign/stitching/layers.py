"""Stitching at any depth: model A's first blocks, a map on the states at the cut, model B's remaining blocks.

:class:`LayerStitcher` is the module; :func:`fit_layer_stitcher` builds one with a zero-shot map (any
latentalign aligner fitted on the two layers' states); :func:`random_stitching_map` is the randomly
initialised stitching layer that :func:`~latentalign.stitching.train_stitching_layer` trains from scratch.
Which models can be cut, and what the cut names are, is described in :mod:`latentalign.stitching.cuts`.

The map acts on the feature axis: the channel axis of a convolutional feature map ``(n, c, h, w)`` (the
same matrix at every spatial position, i.e. a 1x1 convolution), the last axis of token states
``(n, tokens, d)`` (the same matrix for every token) and of vectors ``(n, d)``. A per-position map needs
A's and B's feature maps to have the same spatial size; :func:`fit_layer_stitcher` refuses cuts where they
differ unless ``resize=True``, which resizes A's feature maps to B's size (bilinear, antialiased) before
the map, both when fitting and in ``forward``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from latentalign.exceptions import PersistenceError
from latentalign.stitching.cuts import (
    CutPoint,
    cut_names,
    layer_states,
    resolve_cut,
    run_back,
    run_front,
    sequence_slice,
)
from latentalign.stitching.stitcher import map_module

__all__ = [
    "LayerStitcher",
    "fit_layer_stitcher",
    "random_stitching_map",
    "apply_on_features",
    "feature_rows",
    "cut_names",
    "layer_states",
]

_FORMAT = "latentalign.LayerStitcher"
_FORMAT_VERSION = 1
_MAP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


def apply_on_features(mapping: nn.Module, state: torch.Tensor) -> torch.Tensor:
    """Apply ``mapping`` to the feature axis of ``state``: axis 1 of a 4-D feature map, else the last axis.

    Examples
    --------
    >>> import torch
    >>> conv1x1 = torch.nn.Linear(3, 2, bias=False)
    >>> x = torch.randn(4, 3, 5, 5)
    >>> ref = torch.nn.functional.conv2d(x, conv1x1.weight[:, :, None, None])
    >>> bool(torch.allclose(apply_on_features(conv1x1, x), ref, atol=1e-6))
    True
    """
    if state.ndim == 4:
        return mapping(state.movedim(1, -1)).movedim(-1, 1)
    if state.ndim in (2, 3):
        return mapping(state)
    raise ValueError(
        f"The state at the cut has {state.ndim} dimensions (shape {tuple(state.shape)}); a stitching map "
        "reads vectors (n, d), token states (n, tokens, d) or feature maps (n, c, h, w). Cut elsewhere."
    )


def feature_rows(state: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One row per position: ``(n*h*w, c)`` for a feature map, ``(n*tokens, d)`` for token states
    (only the tokens where ``mask`` is nonzero, when given), ``(n, d)`` for vectors.

    Examples
    --------
    >>> import torch
    >>> feature_rows(torch.zeros(2, 3, 4, 5)).shape, feature_rows(torch.zeros(2, 7, 3)).shape
    (torch.Size([40, 3]), torch.Size([14, 3]))
    """
    if state.ndim == 4:
        return state.movedim(1, -1).reshape(-1, state.shape[1])
    if state.ndim == 3:
        if mask is not None:
            return state[mask.to(state.device).bool()]
        return state.reshape(-1, state.shape[-1])
    if state.ndim == 2:
        return state
    raise ValueError(
        f"States of shape {tuple(state.shape)} cannot be fitted: expected (n, d), (n, tokens, d) or "
        "(n, c, h, w). Cut elsewhere."
    )


def random_stitching_map(
    in_features: int, out_features: int, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> nn.Module:
    """A trainable linear stitching layer (a 1x1 convolution on feature maps) with ``nn.Linear``'s random
    initialisation, drawn from ``seed``.

    Examples
    --------
    >>> m = random_stitching_map(8, 16, seed=1)
    >>> tuple(m.weight.shape), m.weight.requires_grad
    ((16, 8), True)
    >>> bool(torch.equal(m.weight, random_stitching_map(8, 16, seed=1).weight))
    True
    """
    from latentalign.align.modules import LinearMap

    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    weight = (torch.rand(out_features, in_features, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    bias = (torch.rand(out_features, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    return LinearMap(weight.to(dtype), bias.to(dtype), trainable=True)


def _first_tensor(module: nn.Module) -> torch.Tensor | None:
    first: torch.Tensor | None = next(module.parameters(), None)
    return first if first is not None else next(module.buffers(), None)


class LayerStitcher(nn.Module):
    """Model A up to ``cut_a``, a map on the states there, then model B from ``cut_b`` to its output.

    Supported models (see :mod:`latentalign.stitching.cuts` and :func:`cut_names`): ``nn.Sequential``
    models (cut after a named child; e.g. :class:`latentalign.experiments.small_cnns.SmallCNN`),
    timm/torchvision-style CNNs and other modules (cut at any submodule, with forward hooks), and Hugging
    Face transformer encoders (cut after the embeddings or after a block of ``encoder.layer``; the map acts
    on each token's state, so A and B must read the same tokens). An unknown cut name raises a ValueError
    that names it and lists the valid ones.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The two models. Their weights are part of this module (``state_dict``, ``.to()``); in a sequence
        only the blocks used (A's up to the cut, B's after it) are held.
    cut_a, cut_b : str
        Cut names, from :func:`cut_names`.
    map : fitted aligner, torch.nn.Module, or None
        The map from A's states to B's (on the feature axis; see the module docstring). A fitted aligner
        is turned into a module with ``to_module``; a module is used as it is (e.g.
        :func:`random_stitching_map`); ``None`` is the identity.
    size : tuple of int, optional
        Resize A's feature maps to this ``(h, w)`` (bilinear, antialiased) before the map.
    trainable_map : bool, default False
        Hold the map of an aligner as parameters (for :func:`~latentalign.stitching.train_stitching_layer`).
    dtype : torch.dtype, optional
        Dtype of the map built from an aligner; default: that of B's parameters.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> stitched = LayerStitcher(model, "1", model, "1")
    >>> x = torch.randn(5, 3)
    >>> bool(torch.equal(stitched(x), model(x)))
    True
    >>> sorted(stitched.state_dict())
    ['back_b.2.bias', 'back_b.2.weight', 'front_a.0.bias', 'front_a.0.weight']
    """

    _point_a: CutPoint
    _point_b: CutPoint
    #: set by :func:`~latentalign.stitching.train_stitching_layer`: losses per epoch and the epoch kept
    train_history_: dict[str, Any]

    def __init__(
        self,
        model_a: nn.Module,
        cut_a: str,
        model_b: nn.Module,
        cut_b: str,
        map: Any = None,  # noqa: A002 - the name the stitching literature uses
        *,
        size: tuple[int, int] | None = None,
        trainable_map: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for argument, model in (("model_a", model_a), ("model_b", model_b)):
            if not isinstance(model, nn.Module):
                raise TypeError(f"{argument} must be a torch.nn.Module, got {type(model).__name__}.")
        point_a = resolve_cut(model_a, cut_a, argument="cut_a")
        point_b = resolve_cut(model_b, cut_b, argument="cut_b")
        if size is not None and not (
            isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)
        ):
            raise ValueError(f"size must be None or a pair of positive ints (height, width), got {size!r}.")
        if point_a.kind == "sequential":
            self.front_a = sequence_slice(model_a, None, point_a.index + 1)
        else:
            self.model_a = model_a
        if point_b.kind == "sequential":
            self.back_b = sequence_slice(model_b, point_b.index + 1, None)
        else:
            self.model_b = model_b
        object.__setattr__(self, "_point_a", point_a)
        object.__setattr__(self, "_point_b", point_b)
        self.cut_a, self.cut_b = cut_a, cut_b
        self.size = None if size is None else (int(size[0]), int(size[1]))
        reference = _first_tensor(model_b)
        if dtype is None:
            dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
        device = reference.device if reference is not None else None
        module = map_module(map, trainable=trainable_map, dtype=dtype, device=device)
        if module is None:
            raise TypeError(
                f"map must be a fitted latentalign aligner (with to_module), a torch module or None, got "
                f"{type(map).__name__}."
            )
        self.map = module
        self.eval()

    def _a(self) -> nn.Module:
        return self.front_a if self._point_a.kind == "sequential" else self.model_a

    def _b(self) -> nn.Module:
        return self.back_b if self._point_b.kind == "sequential" else self.model_b

    def state_a(self, inputs: Any) -> torch.Tensor:
        """Model A's state at ``cut_a`` (resized to ``size`` when set), before the map."""
        point = self._point_a
        if point.kind == "sequential":
            state = self.front_a(inputs)
        else:
            state = run_front(self.model_a, point, inputs)
        if self.size is not None and state.ndim == 4 and tuple(state.shape[-2:]) != self.size:
            state = nn.functional.interpolate(state, size=self.size, mode="bilinear", antialias=True)
        return state

    def forward(self, inputs: Any) -> Any:
        """Model B's output when its state at ``cut_b`` is the map of model A's state at ``cut_a``."""
        state = self.state_a(inputs)
        ref = _first_tensor(self.map)
        if ref is not None and (state.dtype != ref.dtype or state.device != ref.device):
            state = state.to(dtype=ref.dtype, device=ref.device)
        mapped = apply_on_features(self.map, state)
        point = self._point_b
        if point.kind == "sequential":
            target = _first_tensor(self.back_b)
            if target is not None and target.is_floating_point() and mapped.dtype != target.dtype:
                mapped = mapped.to(dtype=target.dtype, device=target.device)
            return self.back_b(mapped)
        return run_back(self.model_b, point, mapped, inputs)

    @torch.no_grad()
    def predict(self, inputs: Any) -> np.ndarray:
        """Predicted class indices (``argmax`` of B's output), computed without gradients."""
        return self.forward(inputs).argmax(dim=-1).cpu().numpy()

    def extra_repr(self) -> str:
        return f"cut_a={self.cut_a!r}, cut_b={self.cut_b!r}" + (f", size={self.size}" if self.size else "")

    # -- persistence ----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save ``state_dict()`` (the map and the models' weights) to one checksummed safetensors file.

        The header names the cuts, the resize and the map module (rebuilt by :meth:`load` without the
        aligner). The models themselves are not described: pass them again to :meth:`load`.

        Parameters
        ----------
        path : str or path-like
            Destination; ``.safetensors`` is appended when it has no suffix.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        from safetensors.torch import safe_open, save_file, save_model

        from latentalign.align.modules import module_config
        from latentalign.persistence import content_digest

        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".safetensors")
        ref = _first_tensor(self.map)
        header = {
            "format": _FORMAT,
            "format_version": str(_FORMAT_VERSION),
            "map": json.dumps(module_config(self.map)),
            "map_dtype": str(ref.dtype).removeprefix("torch.") if ref is not None else "",
            "cuts": json.dumps({"cut_a": self.cut_a, "cut_b": self.cut_b, "size": self.size}),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_model(self, str(tmp), metadata=header)  # drops the aliases of shared tensors
        with safe_open(str(tmp), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
        header["checksum"] = content_digest(tensors, _described(header))
        save_file(tensors, str(tmp), metadata=header)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, model_a: nn.Module, model_b: nn.Module) -> LayerStitcher:
        """Rebuild a LayerStitcher saved with :meth:`save` around ``model_a`` and ``model_b``.

        The models (same architectures as when saved) receive the saved weights; the map is rebuilt from
        the file alone.

        Raises
        ------
        PersistenceError
            When the file is missing, not a saved LayerStitcher, damaged, or does not match the models.

        Examples
        --------
        >>> import tempfile, torch
        >>> from latentalign import Procrustes
        >>> def net():
        ...     return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        >>> a, b = net(), net()
        >>> s = fit_layer_stitcher(a, "1", b, "1", torch.randn(50, 3), Procrustes())
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     back = LayerStitcher.load(s.save(tmp + "/s"), model_a=net(), model_b=net())
        >>> x = torch.randn(4, 3)
        >>> bool(torch.equal(back(x), s(x)))
        True
        """
        from safetensors.torch import load_model

        from latentalign.align.modules import module_from_config
        from latentalign.persistence import (
            check_finite_tensors,
            content_digest,
            parse_format_version,
            read_safetensors,
        )

        path, header, tensors = read_safetensors(path, "LayerStitcher")
        source = repr(str(path))
        if header.get("format") != _FORMAT:
            raise PersistenceError(
                f"{source} was not written by LayerStitcher.save (header format {header.get('format')!r})."
            )
        parse_format_version(header.get("format_version"), source, newest=_FORMAT_VERSION)
        stored = header.get("checksum")
        if stored != content_digest(tensors, _described(header)):
            raise PersistenceError(
                f"{source} fails its integrity check: the checksum in its header ({stored!r}) does not match "
                "its contents, so the file was changed or damaged after it was saved. Save it again."
            )
        check_finite_tensors(tensors, source)
        map_dtype = header.get("map_dtype", "")
        try:
            if map_dtype and map_dtype not in _MAP_DTYPES:
                raise ValueError(f"unknown map_dtype {map_dtype!r}")
            cuts = json.loads(header["cuts"])
            size = cuts["size"]
            map_ = module_from_config(json.loads(header["map"]))
            if map_dtype:
                map_ = map_.to(_MAP_DTYPES[map_dtype])
            stitcher = cls(
                model_a, cuts["cut_a"], model_b, cuts["cut_b"], map_, size=None if size is None else tuple(size)
            )
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
            raise PersistenceError(
                f"{source} has a malformed header or does not fit these models ({exc}); pass the models it was "
                "saved with, or save it again."
            ) from None
        reference = _first_tensor(model_b)
        if reference is not None:
            stitcher.map.to(reference.device)
        try:
            load_model(stitcher, str(path), strict=True)
        except RuntimeError as exc:
            raise PersistenceError(
                f"{source} does not match these models ({exc}). Pass the model_a and model_b the "
                "LayerStitcher was saved with (same architectures)."
            ) from None
        return stitcher.eval()


def _described(header: Mapping[str, str]) -> str:
    return json.dumps([header.get(key, "") for key in ("map", "map_dtype", "cuts")])


def _make_aligner(aligner: Any) -> Any:
    if isinstance(aligner, str):
        from latentalign.align import make_aligner

        return make_aligner(aligner)
    if not hasattr(aligner, "fit"):
        raise TypeError(
            f"aligner must be an aligner name (e.g. 'procrustes', 'affine') or an unfitted latentalign aligner, "
            f"got {type(aligner).__name__}."
        )
    from sklearn.base import clone

    return clone(aligner)


def fit_layer_stitcher(
    model_a: nn.Module,
    cut_a: str,
    model_b: nn.Module,
    cut_b: str,
    inputs: Any,
    aligner: Any = "procrustes",
    *,
    resize: bool = False,
    max_rows: int | None = 50_000,
    seed: int = 0,
    batch_size: int | None = 512,
    trainable_map: bool = False,
) -> LayerStitcher:
    """A :class:`LayerStitcher` whose map is ``aligner`` fitted on A's and B's states at the cuts (zero-shot).

    Both models run on the same ``inputs``; each position (spatial location of a feature map, token of a
    sequence) of each input is one paired row, so a conv map is fitted on ``(n*h*w, c)`` rows.

    Parameters
    ----------
    model_a, cut_a, model_b, cut_b
        As for :class:`LayerStitcher`.
    inputs : torch.Tensor or mapping
        The inputs whose states pair the two layers (a mapping of keyword arguments, such as a tokenizer's
        output, for a transformer; its ``attention_mask`` then keeps only the real tokens).
    aligner : str or aligner, default "procrustes"
        A name of :func:`latentalign.list_aligners` or an unfitted aligner (cloned, then fitted).
    resize : bool, default False
        When A's and B's feature maps differ in spatial size, resize A's to B's (bilinear, antialiased);
        without it such cuts raise a ValueError.
    max_rows : int or None, default 50,000
        Fit on at most this many rows, drawn at random with ``seed``.
    seed : int, default 0
    batch_size : int or None, default 512
        Rows of ``inputs`` run at once to collect the states.
    trainable_map : bool, default False
        Build the map as parameters, as the starting point of
        :func:`~latentalign.stitching.train_stitching_layer`.

    Returns
    -------
    LayerStitcher
        In eval mode; the fitted aligner is its ``aligner_`` attribute.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0) and None
    >>> a = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    >>> x = torch.randn(100, 3, dtype=torch.float64)
    >>> stitched = fit_layer_stitcher(a, "1", a, "1", x, "procrustes")
    >>> bool(torch.allclose(stitched(x), a(x), atol=1e-10))
    True
    """
    point_a = resolve_cut(model_a, cut_a, argument="cut_a")
    point_b = resolve_cut(model_b, cut_b, argument="cut_b")
    states_a = layer_states(model_a, point_a.name, inputs, batch_size=batch_size)
    states_b = layer_states(model_b, point_b.name, inputs, batch_size=batch_size)
    if states_a.ndim != states_b.ndim or len(states_a) != len(states_b):
        raise ValueError(
            f"Model A's states at cut_a={cut_a!r} have shape {tuple(states_a.shape)} and model B's at "
            f"cut_b={cut_b!r} have shape {tuple(states_b.shape)}: a map needs states of the same kind "
            "(vectors, token states or feature maps) for the same inputs. Pick cuts of the same kind."
        )
    size: tuple[int, int] | None = None
    if states_a.ndim == 4 and states_a.shape[-2:] != states_b.shape[-2:]:
        size = (int(states_b.shape[-2]), int(states_b.shape[-1]))
        if not resize:
            h, w = states_a.shape[-2:]
            raise ValueError(
                f"Model A's feature maps at cut_a={cut_a!r} are {h}x{w} but model B's at cut_b={cut_b!r} are "
                f"{size[0]}x{size[1]}: a per-position (1x1) map needs equal spatial sizes. Pass resize=True "
                "to resize A's maps to B's size, or pick cuts with equal sizes."
            )
        states_a = nn.functional.interpolate(states_a, size=size, mode="bilinear", antialias=True)
    if states_a.ndim == 3 and states_a.shape[1] != states_b.shape[1]:
        raise ValueError(
            f"Model A has {states_a.shape[1]} tokens per input at cut_a={cut_a!r} and model B has "
            f"{states_b.shape[1]} at cut_b={cut_b!r}: token states pair only when both models read the same "
            "tokens (same tokenizer and padding)."
        )
    mask = inputs.get("attention_mask") if isinstance(inputs, Mapping) and states_a.ndim == 3 else None
    rows_a, rows_b = feature_rows(states_a, mask), feature_rows(states_b, mask)
    if max_rows is not None and len(rows_a) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows_a), max_rows, replace=False))
        index = torch.from_numpy(keep).to(rows_a.device)
        rows_a, rows_b = rows_a[index], rows_b[index]
    fitted = _make_aligner(aligner).fit(rows_a.double(), rows_b.double())
    stitcher = LayerStitcher(
        model_a, cut_a, model_b, cut_b, fitted, size=size if resize else None, trainable_map=trainable_map
    )
    stitcher.aligner_ = fitted
    return stitcher
