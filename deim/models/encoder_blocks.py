"""Convolutional blocks of the hybrid encoder's CCFF (the FPN/PAN fusion), all ``[B, C, H, W]``.

* :class:`ConvNormLayer`: conv -> BatchNorm -> activation; fuses into a single biased conv.
* :class:`SCDown`: 1x1 conv then a stride-``s`` depthwise conv (D-FINE's downsampling).
* :class:`VGGBlock`: RepVGG block, ``act(BN(conv3x3(x)) + BN(conv1x1(x)))``; fuses into one 3x3 conv.
* :class:`CSPLayer`: the cross-stage-partial block of RT-DETRv2 (``CSPRep``), VGG bottlenecks.
* :class:`RepNCSPELAN4`: the CSP-ELAN block of D-FINE, built from two ``CSPLayer`` branches.

Parameter names follow the official checkpoints. ``convert_to_deploy()`` re-parameterises a
block for inference (BatchNorm running statistics are folded into the convolutions); it may be
called more than once, and in any order on nested blocks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deim.models.mlp import get_activation


def fold_batch_norm(weight: torch.Tensor, bias: torch.Tensor | None,
                    norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of the single conv equal to ``norm(conv(x))`` in eval mode.

    ``weight [C_out, C_in / groups, k, k]``, ``bias [C_out]`` or ``None`` -> the same shapes.
    """
    std = (norm.running_var + norm.eps).sqrt()
    scale = norm.weight / std
    kernel = weight * scale.reshape(-1, 1, 1, 1)
    if bias is None:
        return kernel, norm.bias - norm.running_mean * norm.weight / std
    return kernel, norm.bias + (bias - norm.running_mean) * norm.weight / std


def _biased_conv_like(conv: nn.Conv2d, kernel: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A conv with ``conv``'s geometry (stride, padding, groups) holding ``kernel`` and ``bias``."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, kernel.shape[-2:], conv.stride, conv.padding,
                      groups=conv.groups, bias=True, device=kernel.device, dtype=kernel.dtype)
    with torch.no_grad():
        fused.weight.copy_(kernel)
        fused.bias.copy_(bias)
    return fused


class ConvNormLayer(nn.Module):
    """``act(norm(conv(x)))``: ``[B, ch_in, H, W] -> [B, ch_out, H', W']`` with ``H' = ceil(H / stride)``
    for odd kernels (padding ``(kernel_size - 1) // 2`` unless given).

    After :meth:`convert_to_deploy`, ``conv`` is a biased conv with the norm folded in and ``norm``
    is ``nn.Identity``.
    """

    def __init__(self, ch_in: int, ch_out: int, kernel_size: int, stride: int, groups: int = 1,
                 padding: int | None = None, bias: bool = False, act: str | None = None) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 if padding is None else padding
        self.conv = nn.Conv2d(ch_in, ch_out, kernel_size, stride, padding=padding, groups=groups, bias=bias)
        self.norm: nn.Module = nn.BatchNorm2d(ch_out)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))

    @property
    def is_fused(self) -> bool:
        return not isinstance(self.norm, nn.BatchNorm2d)

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(kernel, bias)`` of the one conv that equals ``norm(conv(x))`` in eval mode."""
        if self.is_fused:
            return self.conv.weight.detach().clone(), self.conv.bias.detach().clone()
        return fold_batch_norm(self.conv.weight, self.conv.bias, self.norm)

    def convert_to_deploy(self) -> None:
        """Fold the BatchNorm into the conv (inference only; a no-op when already fused)."""
        if self.is_fused:
            return
        self.conv = _biased_conv_like(self.conv, *self.equivalent_kernel_bias())
        self.norm = nn.Identity()


class SCDown(nn.Module):
    """Spatial-channel decoupled downsampling: 1x1 conv to ``c2`` channels, then a depthwise
    ``k x k`` conv with stride ``s``; BatchNorm after each, no activation.
    ``[B, c1, H, W] -> [B, c2, ceil(H / s), ceil(W / s)]`` (odd ``k``)."""

    def __init__(self, c1: int, c2: int, k: int, s: int) -> None:
        super().__init__()
        self.cv1 = ConvNormLayer(c1, c2, 1, 1)
        self.cv2 = ConvNormLayer(c2, c2, k, s, groups=c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x))


class VGGBlock(nn.Module):
    """RepVGG block ``act(BN(conv3x3(x)) + BN(conv1x1(x)))``, ``[B, ch_in, H, W] -> [B, ch_out, H, W]``.

    :meth:`convert_to_deploy` replaces both branches by one biased 3x3 conv ``conv``.
    """

    def __init__(self, ch_in: int, ch_out: int, act: str | None = "relu") -> None:
        super().__init__()
        self.conv1 = ConvNormLayer(ch_in, ch_out, 3, 1, padding=1)
        self.conv2 = ConvNormLayer(ch_in, ch_out, 1, 1, padding=0)
        self.act = get_activation(act)
        self.conv: nn.Conv2d | None = None  # the fused conv, set by convert_to_deploy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x) + self.conv2(x) if self.conv is None else self.conv(x)
        return self.act(y)

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(kernel [ch_out, ch_in, 3, 3], bias [ch_out])`` of the one 3x3 conv equal to the sum of
        both branches in eval mode (the 1x1 kernel zero-padded to the centre of a 3x3 one)."""
        kernel3, bias3 = self.conv1.equivalent_kernel_bias()
        kernel1, bias1 = self.conv2.equivalent_kernel_bias()
        return kernel3 + F.pad(kernel1, [1, 1, 1, 1]), bias3 + bias1

    def convert_to_deploy(self) -> None:
        """Merge the two branches into ``conv`` (inference only; a no-op when already merged)."""
        if self.conv is not None:
            return
        self.conv = _biased_conv_like(self.conv1.conv, *self.equivalent_kernel_bias())
        del self.conv1, self.conv2


class CSPLayer(nn.Module):
    """Cross-stage-partial block: ``conv3(bottlenecks(conv1(x)) + conv2(x))``.

    ``conv1``/``conv2`` are 1x1 convs to ``hidden = int(out_channels * expansion)`` channels, the
    bottlenecks are ``num_blocks`` :class:`VGGBlock`; ``conv3`` (1x1) maps back to ``out_channels``
    and is ``nn.Identity`` when ``hidden == out_channels``.
    ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 3, expansion: float = 1.0,
                 bias: bool = False, act: str | None = "silu") -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvNormLayer(in_channels, hidden, 1, 1, bias=bias, act=act)
        self.conv2 = ConvNormLayer(in_channels, hidden, 1, 1, bias=bias, act=act)
        self.bottlenecks = nn.Sequential(*[VGGBlock(hidden, hidden, act=act) for _ in range(num_blocks)])
        self.conv3: nn.Module = (nn.Identity() if hidden == out_channels
                                 else ConvNormLayer(hidden, out_channels, 1, 1, bias=bias, act=act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # conv2 first, as in the official code: the order in which autograd sums the gradients
        # reaching ``x`` then matches it bitwise.
        shortcut = self.conv2(x)
        return self.conv3(self.bottlenecks(self.conv1(x)) + shortcut)


class RepNCSPELAN4(nn.Module):
    """CSP-ELAN block (from YOLOv9, as used by D-FINE).

    ``cv1`` (1x1) maps to ``c3`` channels, split into two halves ``a, b``; ``b1 = cv2(b)`` and
    ``b2 = cv3(b1)``, each a ``CSPLayer`` (``n`` VGG bottlenecks, ``c4`` channels) followed by a 3x3
    conv; ``cv4`` (1x1) maps ``cat(a, b, b1, b2)`` (``c3 + 2 * c4`` channels) to ``c2``.
    ``[B, c1, H, W] -> [B, c2, H, W]``.
    """

    def __init__(self, c1: int, c2: int, c3: int, c4: int, n: int = 3, bias: bool = False,
                 act: str | None = "silu") -> None:
        super().__init__()
        if c3 % 2:
            raise ValueError(f"RepNCSPELAN4 splits c3 into two halves; c3 must be even, got {c3}")
        self.half = c3 // 2
        self.cv1 = ConvNormLayer(c1, c3, 1, 1, bias=bias, act=act)
        self.cv2 = self._branch(self.half, c4, n, bias, act)
        self.cv3 = self._branch(c4, c4, n, bias, act)
        self.cv4 = ConvNormLayer(c3 + 2 * c4, c2, 1, 1, bias=bias, act=act)

    @staticmethod
    def _branch(ch_in: int, ch_out: int, n: int, bias: bool, act: str | None) -> nn.Sequential:
        return nn.Sequential(CSPLayer(ch_in, ch_out, n, 1.0, bias=bias, act=act),
                             ConvNormLayer(ch_out, ch_out, 3, 1, bias=bias, act=act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.half, self.half), dim=1)
        b1 = self.cv2(b)
        b2 = self.cv3(b1)
        return self.cv4(torch.cat([a, b, b1, b2], dim=1))
