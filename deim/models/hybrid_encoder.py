"""The hybrid encoder of RT-DETR / D-FINE / DEIM: AIFI + CCFF.

``feats`` (one ``[B, C_i, H_i, W_i]`` map per backbone level, strides ``feat_strides``) are
projected to ``hidden_dim`` channels (1x1 conv + BN). AIFI (attention-based intra-scale feature
interaction) runs a post-norm transformer encoder over the levels in ``use_encoder_idx`` (the
coarsest one in every preset), with a 2-D sin-cos position embedding added to queries and keys.
CCFF (CNN-based cross-scale feature fusion) then fuses the levels top-down (FPN) and bottom-up
(PAN). The output is one ``[B, hidden_dim, H_i, W_i]`` map per level.

``version="dfine"``: RepNCSPELAN4 fusion blocks, SCDown downsampling, lateral convs without
activation. ``version="rt_detrv2"``: CSPLayer (CSPRep) fusion blocks, a stride-2 3x3 conv for
downsampling, lateral convs with ``act``.

Unlike the official code, which stores the position embedding of ``eval_spatial_size`` only, the
embedding is computed for the actual feature size (and cached per size, device and dtype), so
any input size can be evaluated; at the official size the values are identical.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deim.models.encoder_blocks import CSPLayer, ConvNormLayer, RepNCSPELAN4, SCDown
from deim.models.mlp import get_activation

VERSIONS = ("dfine", "rt_detrv2")


def sincos_position_embedding(height: int, width: int, embed_dim: int = 256,
                              temperature: float = 10000.0) -> torch.Tensor:
    """2-D sin-cos position embedding ``[1, height * width, embed_dim]`` (float32), positions in the
    row-major order of ``x.flatten(2)`` for ``x [B, C, height, width]``.

    With ``d = embed_dim // 4`` and ``omega_i = temperature ** (-i / d)``, the position at row ``y``,
    column ``x`` gets ``[sin(y * omega), cos(y * omega), sin(x * omega), cos(x * omega)]``.
    For square maps this equals the official embedding exactly.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for a 2-D sin-cos embedding, got {embed_dim}")
    if height < 1 or width < 1:
        raise ValueError(f"feature map size must be positive, got {height}x{width}")
    pos_dim = embed_dim // 4
    omega = 1.0 / temperature ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim)
    rows = torch.arange(height, dtype=torch.float32).repeat_interleave(width)
    cols = torch.arange(width, dtype=torch.float32).repeat(height)
    out_y = rows[:, None] * omega[None]
    out_x = cols[:, None] * omega[None]
    return torch.cat([out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()], dim=1)[None]


class TransformerEncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (AIFI): ``[B, N, C] -> [B, N, C]``.

    ``x = norm1(x + attn(x + pos, x + pos, x))``, then ``x = norm2(x + linear2(act(linear1(x))))``.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu") -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = get_activation(activation)

    def forward(self, src: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        """``src [B, N, C]``, ``pos_embed [1 or B, N, C]`` (added to queries and keys only)."""
        q = k = src if pos_embed is None else src + pos_embed
        # need_weights=True (the nn default, as in the official call) keeps the explicit
        # softmax(QK^T)V kernel, so the result is bitwise the official one.
        attn, _ = self.self_attn(q, k, value=src, need_weights=True)
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class TransformerEncoder(nn.Module):
    """``num_layers`` :class:`TransformerEncoderLayer` applied in turn (``layers.{i}``)."""

    def __init__(self, layers: Sequence[TransformerEncoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, src: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, pos_embed=pos_embed)
        return src


class HybridEncoder(nn.Module):
    """AIFI + CCFF: ``list of [B, in_channels[i], H_i, W_i] -> list of [B, hidden_dim, H_i, W_i]``.

    Args:
        in_channels, feat_strides: channels and strides of the backbone levels (fine to coarse).
        hidden_dim, nhead, dim_feedforward, dropout, enc_act: the AIFI transformer layers.
        use_encoder_idx: levels that get AIFI; num_encoder_layers: layers per such level.
        pe_temperature: temperature of the sin-cos position embedding.
        expansion, depth_mult: width (hidden channels) and depth (bottlenecks ``round(3 * depth_mult)``)
            of the fusion blocks; act: their activation.
        version: ``"dfine"`` or ``"rt_detrv2"`` (see the module docstring).
        eval_spatial_size: ``(H, W)`` the official code precomputes embeddings for; kept for the
            official interface only, since embeddings are computed for the actual input size.
    """

    def __init__(self, in_channels: Sequence[int] = (512, 1024, 2048), feat_strides: Sequence[int] = (8, 16, 32),
                 hidden_dim: int = 256, nhead: int = 8, dim_feedforward: int = 1024, dropout: float = 0.0,
                 enc_act: str = "gelu", use_encoder_idx: Sequence[int] = (2,), num_encoder_layers: int = 1,
                 pe_temperature: float = 10000, expansion: float = 1.0, depth_mult: float = 1.0,
                 act: str = "silu", version: str = "dfine",
                 eval_spatial_size: Sequence[int] | None = None) -> None:
        super().__init__()
        _check_arguments(in_channels, feat_strides, hidden_dim, use_encoder_idx, num_encoder_layers, version)
        self.in_channels = list(in_channels)
        self.feat_strides = list(feat_strides)
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = list(use_encoder_idx)
        self.num_encoder_layers = num_encoder_layers
        self.pe_temperature = pe_temperature
        self.version = version
        self.eval_spatial_size = None if eval_spatial_size is None else tuple(eval_spatial_size)
        self.out_channels = [hidden_dim] * len(in_channels)
        self.out_strides = list(feat_strides)
        self._pos_cache: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}

        self.input_proj = nn.ModuleList(
            nn.Sequential(OrderedDict([("conv", nn.Conv2d(c, hidden_dim, kernel_size=1, bias=False)),
                                       ("norm", nn.BatchNorm2d(hidden_dim))]))
            for c in in_channels)
        self.encoder = nn.ModuleList(
            TransformerEncoder([TransformerEncoderLayer(hidden_dim, nhead, dim_feedforward, dropout, enc_act)
                                for _ in range(num_encoder_layers)])
            for _ in use_encoder_idx)

        num_fusions = len(in_channels) - 1
        dfine = version == "dfine"
        self.lateral_convs = nn.ModuleList(
            ConvNormLayer(hidden_dim, hidden_dim, 1, 1, act=None if dfine else act) for _ in range(num_fusions))
        self.fpn_blocks = nn.ModuleList(self._fusion_block(expansion, depth_mult, act) for _ in range(num_fusions))
        self.downsample_convs = nn.ModuleList(
            nn.Sequential(SCDown(hidden_dim, hidden_dim, 3, 2)) if dfine
            else ConvNormLayer(hidden_dim, hidden_dim, 3, 2, act=act)
            for _ in range(num_fusions))
        self.pan_blocks = nn.ModuleList(self._fusion_block(expansion, depth_mult, act) for _ in range(num_fusions))

    def _fusion_block(self, expansion: float, depth_mult: float, act: str) -> nn.Module:
        """``[B, 2 * hidden_dim, H, W] -> [B, hidden_dim, H, W]`` (the official width/depth rounding)."""
        h, depth = self.hidden_dim, round(3 * depth_mult)
        if self.version == "dfine":
            return RepNCSPELAN4(h * 2, h, h * 2, round(expansion * h // 2), depth, act=act)
        return CSPLayer(h * 2, h, depth, expansion=expansion, act=act)

    def position_embedding(self, height: int, width: int, device: torch.device,
                           dtype: torch.dtype) -> torch.Tensor:
        """The ``[1, height * width, hidden_dim]`` sin-cos embedding, cached per size/device/dtype
        (treat it as read-only)."""
        key = (int(height), int(width), torch.device(device), dtype)
        if key not in self._pos_cache:
            pos = sincos_position_embedding(key[0], key[1], self.hidden_dim, self.pe_temperature)
            self._pos_cache[key] = pos.to(device=device, dtype=dtype)
        return self._pos_cache[key]

    def _encode(self, encoder: TransformerEncoder, feat: torch.Tensor) -> torch.Tensor:
        """AIFI on one projected level ``[B, C, H, W]`` -> ``[B, C, H, W]``."""
        height, width = feat.shape[2:]
        src = feat.flatten(2).permute(0, 2, 1)
        pos = self.position_embedding(height, width, src.device, src.dtype)
        memory = encoder(src, pos_embed=pos)
        return memory.permute(0, 2, 1).reshape(-1, self.hidden_dim, height, width).contiguous()

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``feats``: one ``[B, in_channels[i], H_i, W_i]`` per level -> one ``[B, hidden_dim, H_i, W_i]``
        per level. Each level should be about twice the size of the next (any input size works: the
        top-down path upsamples to the finer level's exact size)."""
        if len(feats) != len(self.in_channels):
            raise ValueError(f"expected {len(self.in_channels)} feature maps, got {len(feats)}")
        proj = [project(feat) for project, feat in zip(self.input_proj, feats)]
        if self.num_encoder_layers > 0:
            for encoder, level in zip(self.encoder, self.use_encoder_idx):
                proj[level] = self._encode(encoder, proj[level])

        # top-down (FPN): coarse to fine
        num_fusions = len(self.in_channels) - 1
        inner = [proj[-1]]
        for i in range(num_fusions):
            high = self.lateral_convs[i](inner[0])
            inner[0] = high
            low = proj[num_fusions - 1 - i]
            upsampled = F.interpolate(high, size=low.shape[2:], mode="nearest")
            inner.insert(0, self.fpn_blocks[i](torch.cat([upsampled, low], dim=1)))

        # bottom-up (PAN): fine to coarse
        outs = [inner[0]]
        for i in range(num_fusions):
            down = self.downsample_convs[i](outs[-1])
            outs.append(self.pan_blocks[i](torch.cat([down, inner[i + 1]], dim=1)))
        return outs

    def convert_to_deploy(self) -> None:
        """Fuse every re-parameterisable block (conv + BN, RepVGG branches) for inference."""
        self.eval()
        for module in list(self.modules()):
            if module is not self and hasattr(module, "convert_to_deploy"):
                module.convert_to_deploy()


def _check_arguments(in_channels: Sequence[int], feat_strides: Sequence[int], hidden_dim: int,
                     use_encoder_idx: Sequence[int], num_encoder_layers: int, version: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"unknown encoder version {version!r}; expected one of {VERSIONS}")
    if len(in_channels) != len(feat_strides) or not in_channels:
        raise ValueError(f"in_channels {list(in_channels)} and feat_strides {list(feat_strides)} "
                         "must be non-empty and of the same length")
    if hidden_dim % 4:
        raise ValueError(f"hidden_dim must be divisible by 4 (sin-cos position embedding), got {hidden_dim}")
    bad = [i for i in use_encoder_idx if not 0 <= i < len(in_channels)]
    if bad:
        raise ValueError(f"use_encoder_idx {list(use_encoder_idx)} has levels outside 0..{len(in_channels) - 1}")
    if num_encoder_layers < 0:
        raise ValueError(f"num_encoder_layers must be >= 0, got {num_encoder_layers}")
