"""Stitching: run one model's representation through another model, through a fitted or trained map.

Two granularities:

- :class:`Stitcher` composes model A's final embedding, a map and model B's decoder or classifier head
  (zero-shot: the map is fitted on paired anchors, the head trained on B's own embeddings).
- :class:`LayerStitcher` cuts A and B at any depth: A's first blocks, a map on the states at the cut,
  then B's remaining blocks. The map is an aligner fitted on the two layers' states
  (:func:`fit_layer_stitcher`) or a stitching layer trained on the task loss with both models frozen
  (:func:`train_stitching_layer`).

Both are ``torch.nn.Module`` objects with ``state_dict``, ``.to()`` and ``save`` / ``load``.
"""

from latentalign.stitching.layers import (
    LayerStitcher,
    cut_names,
    fit_layer_stitcher,
    layer_states,
    random_stitching_map,
)
from latentalign.stitching.stitcher import Stitcher, apply_head, map_embeddings, map_module
from latentalign.stitching.training import train_stitching_layer

__all__ = [
    "Stitcher",
    "apply_head",
    "map_embeddings",
    "map_module",
    "LayerStitcher",
    "cut_names",
    "layer_states",
    "fit_layer_stitcher",
    "random_stitching_map",
    "train_stitching_layer",
]
