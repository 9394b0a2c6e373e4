"""Scale-out on Ray (the ``dist`` extra: ``pip install 'latentalign[dist]'``).

* :func:`embed_distributed`: run an encoder over a sequence or a ``ray.data.Dataset`` with a Ray Data actor
  pool (each actor builds the encoder once from an :class:`EncoderSpec`), writing the store format of
  :mod:`latentalign.store` (workers write shard files, the driver alone commits the manifest; resumable,
  interchangeable with :func:`latentalign.store.embed`).
* :func:`fit_distributed` / :func:`partial_fit_distributed`: fit Procrustes or Affine over two stores, the
  per-shard sufficient statistics computed in Ray tasks and merged on the driver
  (:func:`paired_stats_distributed`).

Ray is imported only when one of these functions runs; without it they raise
:class:`~latentalign.exceptions.MissingDependencyError` naming the extra. They use the running Ray instance:
call ``ray.init(address="auto")`` first to use a cluster (otherwise Ray starts a local one).
"""

from __future__ import annotations

from latentalign.dist.embed import EncoderSpec, embed_distributed
from latentalign.dist.fit import (
    fit_distributed,
    paired_stats_distributed,
    partial_fit_distributed,
)

__all__ = [
    "EncoderSpec",
    "embed_distributed",
    "fit_distributed",
    "paired_stats_distributed",
    "partial_fit_distributed",
]
