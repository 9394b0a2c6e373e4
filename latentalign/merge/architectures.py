"""Small reference models whose parameter names the spec builders of :mod:`latentalign.merge.spec` match.

* :class:`MLP` -- linear layers ``layers.0`` ... with ReLU between (:func:`~latentalign.merge.spec.mlp_spec`).
* :class:`VGGLike` -- conv + batch norm + ReLU + max-pool blocks, global average pool, linear head
  (:func:`~latentalign.merge.spec.cnn_spec`).
* :class:`ResNet` -- CIFAR-style ResNet (ResNet-20 at ``depth=20``) with a width multiplier, basic
  blocks, 1x1 conv + batch norm shortcut projections (:func:`~latentalign.merge.spec.resnet_spec`).
* :class:`TransformerBlock` -- one pre-norm encoder block with per-head attention projections
  (:func:`~latentalign.merge.spec.transformer_block_spec`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MLP", "VGGLike", "ResNet", "TransformerBlock"]


class MLP(nn.Module):
    """Multilayer perceptron: hidden ``Linear`` + ``ReLU`` layers, then a ``Linear`` head; inputs are flattened.

    Examples
    --------
    >>> MLP(784, [32, 32], 10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int) -> None:
        super().__init__()
        widths = [in_features, *hidden, out_features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class ConvBN(nn.Module):
    """``Conv2d(3x3) -> BatchNorm2d -> ReLU``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class VGGLike(nn.Module):
    """Plain CNN: ``ConvBN`` blocks (a 2x2 max-pool after each while the map is at least 2x2), global
    average pool, linear head.

    Examples
    --------
    >>> VGGLike(1, [8, 16], 10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, in_channels: int, widths: Sequence[int], num_classes: int) -> None:
        super().__init__()
        channels = [in_channels, *widths]
        self.blocks = nn.ModuleList(ConvBN(a, b) for a, b in zip(channels[:-1], channels[1:]))
        self.head = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
            if min(x.shape[-2:]) >= 2:
                x = F.max_pool2d(x, 2)
        return self.head(x.mean(dim=(-2, -1)))


class BasicBlock(nn.Module):
    """Two 3x3 conv + batch norm layers with a residual connection (1x1 conv + BN projection when the
    shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: stem, three stages of basic blocks (widths 16w, 32w, 64w), linear head.

    Parameters
    ----------
    depth : int, default 20
        ``6 * blocks_per_stage + 2`` (20 -> 3 blocks per stage; 8 -> 1).
    width : int, default 1
        Width multiplier.
    num_classes : int, default 10
    in_channels : int, default 3

    Examples
    --------
    >>> model = ResNet(depth=8, width=1, num_classes=10, in_channels=1)
    >>> model(torch.zeros(2, 1, 16, 16)).shape
    torch.Size([2, 10])
    """

    def __init__(self, depth: int = 20, width: int = 1, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6 * n + 2 with n >= 1 (8, 14, 20, 32, ...); received {depth}.")
        self.blocks_per_stage = (depth - 2) // 6
        widths = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        previous = widths[0]
        for s, w in enumerate(widths):
            blocks = []
            for b in range(self.blocks_per_stage):
                blocks.append(BasicBlock(previous, w, stride=2 if (s > 0 and b == 0) else 1))
                previous = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.linear = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        for stage in self.stages:
            x = stage(x)
        return self.linear(x.mean(dim=(-2, -1)))


class MultiHeadAttention(nn.Module):
    """Self-attention with per-head projections stored as ``(heads, head_dim, width)`` tensors."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width ({width}) must be a multiple of heads ({heads}).")
        head_dim = width // heads
        bound = 1 / math.sqrt(width)

        def weight(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        self.q_weight, self.q_bias = weight(heads, head_dim, width), weight(heads, head_dim)
        self.k_weight, self.k_bias = weight(heads, head_dim, width), weight(heads, head_dim)
        self.v_weight, self.v_bias = weight(heads, head_dim, width), weight(heads, head_dim)
        self.out_weight, self.out_bias = weight(width, heads, head_dim), weight(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, tokens, width) -> q, k, v: (batch, heads, tokens, head_dim)
        q = torch.einsum("btw,hdw->bhtd", x, self.q_weight) + self.q_bias[:, None, :]
        k = torch.einsum("btw,hdw->bhtd", x, self.k_weight) + self.k_bias[:, None, :]
        v = torch.einsum("btw,hdw->bhtd", x, self.v_weight) + self.v_bias[:, None, :]
        attended = F.scaled_dot_product_attention(q, k, v)
        return torch.einsum("bhtd,ohd->bto", attended, self.out_weight) + self.out_bias


class FeedForward(nn.Module):
    """``Linear -> GELU -> Linear``."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``.

    Examples
    --------
    >>> TransformerBlock(width=16, heads=4, mlp_hidden=32)(torch.zeros(2, 5, 16)).shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, width: int, heads: int, mlp_hidden: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = MultiHeadAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = FeedForward(width, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))
