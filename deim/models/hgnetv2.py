"""HGNetv2 (PP-HGNetV2), the D-FINE backbone: a stem, then four stages of HG blocks.

``HGNetv2(name)`` for ``B0`` ... ``B6``. ``forward([B, 3, H, W])`` returns the outputs of the
stages in ``return_idx`` (strides 4, 8, 16, 32 for stages 0..3). Parameter names equal the
official checkpoints (``stem.stem1.conv.weight``, ``stages.2.blocks.1.layers.0.conv1.bn.weight``, ...).
No pretrained weights are downloaded: load official checkpoints with ``deim.load_checkpoint``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deim.models.backbone_blocks import LearnableAffineBlock, freeze_batch_norm, freeze_parameters


@dataclass(frozen=True)
class StageSpec:
    """One stage: channels in/mid/out, HG blocks, layers per block, kernel, downsample, light."""

    in_channels: int
    mid_channels: int
    out_channels: int
    num_blocks: int
    downsample: bool
    light: bool
    kernel_size: int
    num_layers: int


def _stages(*rows: tuple) -> tuple[StageSpec, ...]:
    return tuple(StageSpec(*row) for row in rows)


#: name -> (stem channels (in, mid, out), stage specs); the official architecture table
ARCHS: dict[str, tuple[tuple[int, int, int], tuple[StageSpec, ...]]] = {
    "B0": ((3, 16, 16), _stages((16, 16, 64, 1, False, False, 3, 3), (64, 32, 256, 1, True, False, 3, 3),
                                (256, 64, 512, 2, True, True, 5, 3), (512, 128, 1024, 1, True, True, 5, 3))),
    "B1": ((3, 24, 32), _stages((32, 32, 64, 1, False, False, 3, 3), (64, 48, 256, 1, True, False, 3, 3),
                                (256, 96, 512, 2, True, True, 5, 3), (512, 192, 1024, 1, True, True, 5, 3))),
    "B2": ((3, 24, 32), _stages((32, 32, 96, 1, False, False, 3, 4), (96, 64, 384, 1, True, False, 3, 4),
                                (384, 128, 768, 3, True, True, 5, 4), (768, 256, 1536, 1, True, True, 5, 4))),
    "B3": ((3, 24, 32), _stages((32, 32, 128, 1, False, False, 3, 5), (128, 64, 512, 1, True, False, 3, 5),
                                (512, 128, 1024, 3, True, True, 5, 5), (1024, 256, 2048, 1, True, True, 5, 5))),
    "B4": ((3, 32, 48), _stages((48, 48, 128, 1, False, False, 3, 6), (128, 96, 512, 1, True, False, 3, 6),
                                (512, 192, 1024, 3, True, True, 5, 6), (1024, 384, 2048, 1, True, True, 5, 6))),
    "B5": ((3, 32, 64), _stages((64, 64, 128, 1, False, False, 3, 6), (128, 128, 512, 2, True, False, 3, 6),
                                (512, 256, 1024, 5, True, True, 5, 6), (1024, 512, 2048, 2, True, True, 5, 6))),
    "B6": ((3, 48, 96), _stages((96, 96, 192, 2, False, False, 3, 6), (192, 192, 512, 3, True, False, 3, 6),
                                (512, 384, 1024, 6, True, True, 5, 6), (1024, 768, 2048, 3, True, True, 5, 6))),
}


class ConvBNAct(nn.Module):
    """``conv -> bn -> ReLU -> lab`` (act and lab optional); symmetric padding ``(k - 1) // 2``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 use_act: bool = True, use_lab: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU() if use_act else nn.Identity()
        self.lab = LearnableAffineBlock() if use_act and use_lab else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lab(self.act(self.bn(self.conv(x))))


class LightConvBNAct(nn.Module):
    """Pointwise ``conv1`` (no act) then depthwise ``conv2`` (with act)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, use_lab: bool = False) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, out_channels, 1, use_act=False, use_lab=use_lab)
        self.conv2 = ConvBNAct(out_channels, out_channels, kernel_size, groups=out_channels, use_lab=use_lab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class StemBlock(nn.Module):
    """Stride-4 stem: conv s2, then a 2x2-conv branch and a 2x2 max-pool branch, concatenated."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, use_lab: bool = False) -> None:
        super().__init__()
        self.stem1 = ConvBNAct(in_channels, mid_channels, 3, stride=2, use_lab=use_lab)
        self.stem2a = ConvBNAct(mid_channels, mid_channels // 2, 2, use_lab=use_lab)
        self.stem2b = ConvBNAct(mid_channels // 2, mid_channels, 2, use_lab=use_lab)
        self.stem3 = ConvBNAct(mid_channels * 2, mid_channels, 3, stride=2, use_lab=use_lab)
        self.stem4 = ConvBNAct(mid_channels, out_channels, 1, use_lab=use_lab)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.stem1(x), (0, 1, 0, 1))
        branch = self.stem2b(F.pad(self.stem2a(x), (0, 1, 0, 1)))
        x = torch.cat([self.pool(x), branch], dim=1)
        return self.stem4(self.stem3(x))


class HGBlock(nn.Module):
    """``num_layers`` convs whose outputs (and the input) are concatenated and aggregated by a
    squeeze (to ``out/2``) and an excitation (to ``out``) 1x1 conv; residual after the first block."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, num_layers: int, kernel_size: int,
                 residual: bool, light: bool, use_lab: bool) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList()
        for i in range(num_layers):
            cin = in_channels if i == 0 else mid_channels
            if light:
                self.layers.append(LightConvBNAct(cin, mid_channels, kernel_size, use_lab=use_lab))
            else:
                self.layers.append(ConvBNAct(cin, mid_channels, kernel_size, use_lab=use_lab))
        total = in_channels + num_layers * mid_channels
        self.aggregation = nn.Sequential(ConvBNAct(total, out_channels // 2, 1, use_lab=use_lab),
                                         ConvBNAct(out_channels // 2, out_channels, 1, use_lab=use_lab))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features[-1]))
        out = self.aggregation(torch.cat(features, dim=1))
        return out + x if self.residual else out


class HGStage(nn.Module):
    """Optional depthwise stride-2 ``downsample`` conv, then ``num_blocks`` HG blocks."""

    def __init__(self, spec: StageSpec, use_lab: bool) -> None:
        super().__init__()
        c = spec.in_channels
        self.downsample = (ConvBNAct(c, c, 3, stride=2, groups=c, use_act=False, use_lab=use_lab)
                           if spec.downsample else nn.Identity())
        self.blocks = nn.Sequential(*(
            HGBlock(c if i == 0 else spec.out_channels, spec.mid_channels, spec.out_channels, spec.num_layers,
                    spec.kernel_size, residual=i > 0, light=spec.light, use_lab=use_lab)
            for i in range(spec.num_blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class HGNetv2(nn.Module):
    """HGNetv2 backbone.

    Args:
        name: architecture, ``B0`` ... ``B6`` (the paper uses B0 for N/S, B2 for M, B4 for L, B5 for X).
        use_lab: learnable affine blocks after each activation (N, S, M).
        return_idx: stages whose outputs are returned (``[1, 2, 3]`` = strides 8, 16, 32).
        freeze_at: ``>= 0`` freezes the stem (and, unless ``freeze_stem_only``, stages ``0..freeze_at``).
        freeze_norm: replace BatchNorm by :class:`~deim.models.backbone_blocks.FrozenBatchNorm2d`.
        freeze_stem_only: see ``freeze_at``.
    """

    def __init__(self, name: str = "B0", use_lab: bool = False, return_idx: Sequence[int] = (1, 2, 3),
                 freeze_at: int = -1, freeze_norm: bool = False, freeze_stem_only: bool = True) -> None:
        super().__init__()
        if name not in ARCHS:
            raise ValueError(f"unknown HGNetv2 architecture {name!r}; choose from {sorted(ARCHS)}")
        if not return_idx or any(not 0 <= i < 4 for i in return_idx):
            raise ValueError(f"return_idx must hold stage indices in 0..3, got {list(return_idx)}")
        stem, stages = ARCHS[name]
        self.return_idx = list(return_idx)
        self.stem = StemBlock(*stem, use_lab=use_lab)
        self.stages = nn.ModuleList(HGStage(spec, use_lab) for spec in stages)
        self.out_channels = [stages[i].out_channels for i in self.return_idx]
        self.out_strides = [(4, 8, 16, 32)[i] for i in self.return_idx]
        if freeze_at >= 0:
            freeze_parameters(self.stem)
            if not freeze_stem_only:
                for stage in self.stages[:freeze_at + 1]:
                    freeze_parameters(stage)
        if freeze_norm:
            freeze_batch_norm(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.return_idx:
                outs.append(x)
        return outs
