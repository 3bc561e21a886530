"""ResNet-vd (PResNet), the RT-DETRv2 backbone: a three-conv stem, max-pool, four residual stages.

``PResNet(depth)`` for depths 18, 34 (basic blocks) and 50, 101 (bottlenecks). Variant ``d``
downsamples shortcuts with a 2x2 average pool before the 1x1 conv. ``forward([B, 3, H, W])``
returns the outputs of the stages in ``return_idx`` (strides 4, 8, 16, 32). Parameter names
equal the official checkpoints (``conv1.conv1_1.conv.weight``, ``res_layers.1.blocks.0.short.conv.norm.weight``, ...).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deim.models.backbone_blocks import ConvNormAct, freeze_batch_norm, freeze_parameters
from deim.models.mlp import get_activation

#: depth -> blocks per stage
DEPTHS: dict[int, tuple[int, int, int, int]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3),
                                                101: (3, 4, 23, 3)}
_WIDTHS = (64, 128, 256, 512)


def _shortcut(in_channels: int, out_channels: int, stride: int, variant: str) -> nn.Module:
    """Projection shortcut; variant ``d`` average-pools first instead of a strided 1x1 conv."""
    if variant == "d" and stride == 2:
        return nn.Sequential(OrderedDict([("pool", nn.AvgPool2d(2, 2, 0, ceil_mode=True)),
                                          ("conv", ConvNormAct(in_channels, out_channels, 1, 1))]))
    return ConvNormAct(in_channels, out_channels, 1, stride)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus the shortcut, then the activation (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, identity: bool, act: str, variant: str) -> None:
        super().__init__()
        self.shortcut = identity
        if not identity:
            self.short = _shortcut(in_channels, width, stride, variant)
        self.branch2a = ConvNormAct(in_channels, width, 3, stride, act=act)
        self.branch2b = ConvNormAct(width, width, 3, 1)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch2b(self.branch2a(x))
        return self.act(out + (x if self.shortcut else self.short(x)))


class BottleNeck(nn.Module):
    """1x1 -> 3x3 (strided, variant b/c/d) -> 1x1 (x4 channels) plus the shortcut (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, identity: bool, act: str, variant: str) -> None:
        super().__init__()
        stride1, stride2 = (stride, 1) if variant == "a" else (1, stride)
        out_channels = width * self.expansion
        self.branch2a = ConvNormAct(in_channels, width, 1, stride1, act=act)
        self.branch2b = ConvNormAct(width, width, 3, stride2, act=act)
        self.branch2c = ConvNormAct(width, out_channels, 1, 1)
        self.shortcut = identity
        if not identity:
            self.short = _shortcut(in_channels, out_channels, stride, variant)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch2c(self.branch2b(self.branch2a(x)))
        return self.act(out + (x if self.shortcut else self.short(x)))


class Blocks(nn.Module):
    """One stage: the first block projects (stride 2 except in the first stage), the rest are identity."""

    def __init__(self, block: type[BasicBlock] | type[BottleNeck], in_channels: int, width: int, count: int,
                 first_stage: bool, act: str, variant: str) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for i in range(count):
            stride = 2 if i == 0 and not first_stage else 1
            self.blocks.append(block(in_channels, width, stride, identity=i > 0, act=act, variant=variant))
            in_channels = width * block.expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class PResNet(nn.Module):
    """ResNet-vd backbone.

    Args:
        depth: 18, 34, 50 or 101.
        variant: ``d`` (the paper's; 3-conv stem, avg-pool shortcuts), ``c``, ``b`` or ``a``.
        num_stages: residual stages built (4).
        return_idx: stages whose outputs are returned (``[1, 2, 3]`` = strides 8, 16, 32).
        act: activation name.
        freeze_at: ``>= 0`` freezes the stem and stages ``0 .. freeze_at - 1``.
        freeze_norm: replace BatchNorm by :class:`~deim.models.backbone_blocks.FrozenBatchNorm2d`.
    """

    def __init__(self, depth: int = 50, variant: str = "d", num_stages: int = 4,
                 return_idx: Sequence[int] = (1, 2, 3), act: str = "relu", freeze_at: int = -1,
                 freeze_norm: bool = False) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"unknown ResNet depth {depth}; choose from {sorted(DEPTHS)}")
        if variant not in ("a", "b", "c", "d"):
            raise ValueError(f"variant must be one of a, b, c, d, got {variant!r}")
        if not 1 <= num_stages <= 4 or not return_idx or any(not 0 <= i < num_stages for i in return_idx):
            raise ValueError(f"return_idx {list(return_idx)} must index the {num_stages} stages")
        stem = ([(3, 32, 3, 2, "conv1_1"), (32, 32, 3, 1, "conv1_2"), (32, 64, 3, 1, "conv1_3")]
                if variant in ("c", "d") else [(3, 64, 7, 2, "conv1_1")])
        self.conv1 = nn.Sequential(OrderedDict(
            (name, ConvNormAct(cin, cout, k, s, act=act)) for cin, cout, k, s, name in stem))
        block = BottleNeck if depth >= 50 else BasicBlock
        channels = [w * block.expansion for w in _WIDTHS]
        self.res_layers = nn.ModuleList()
        in_channels = 64
        for i in range(num_stages):
            self.res_layers.append(Blocks(block, in_channels, _WIDTHS[i], DEPTHS[depth][i], i == 0, act, variant))
            in_channels = channels[i]
        self.return_idx = list(return_idx)
        self.out_channels = [channels[i] for i in self.return_idx]
        self.out_strides = [(4, 8, 16, 32)[i] for i in self.return_idx]
        if freeze_at >= 0:
            freeze_parameters(self.conv1)
            for stage in self.res_layers[:min(freeze_at, num_stages)]:
                freeze_parameters(stage)
        if freeze_norm:
            freeze_batch_norm(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)
        outs = []
        for i, stage in enumerate(self.res_layers):
            x = stage(x)
            if i in self.return_idx:
                outs.append(x)
        return outs
