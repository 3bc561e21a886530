"""Multi-scale deformable attention (Deformable DETR), in the two variants DEIM uses.

Each query predicts, per head, a few sampling points on every feature level and one
attention weight per point (softmax over all points of the head, all levels together);
the output is the weighted sum of the values bilinearly sampled at those points.

* D-FINE mode (``dfine_mode=True``): no value / output projection; the value arrives
  already split per level and per head (``[B, n_head, D / n_head, H_l * W_l]``).
* RT-DETRv2 mode (``dfine_mode=False``): ``value_proj`` on the flattened memory
  ``[B, N, D]`` (optionally masked), ``output_proj`` on the result.

Reference points are normalised to [0, 1] (top-left (0, 0)). With boxes (cxcywh,
last dim 4), point ``p`` of a level with ``n`` points lands at
``centre + offset_p / n * wh * offset_scale``; with points (last dim 2), at
``point + offset_p / (W_l, H_l)``, i.e. offsets in pixels of that level.

``method="default"`` samples bilinearly (``grid_sample``, zero padding,
``align_corners=False``); ``method="discrete"`` reads the value at the grid point
nearest ``location * (W_l, H_l)`` (clamped into the map) and freezes the sampling
offsets, as the official code does.

The float operations follow the official code in the same order, so outputs agree with
it bit for bit. Differences: point reference points (last dim 2) work (the official v2
code broadcasts them wrongly), and discrete sampling clamps x to ``W_l - 1`` (the
official clamps both axes to ``H_l - 1``, wrong for non-square maps).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SAMPLING_METHODS = ("default", "discrete")


def split_value_levels(value: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]],
                       num_heads: int) -> list[torch.Tensor]:
    """Flattened memory ``[B, sum H_l W_l, D]`` -> per level ``[B, num_heads, D / num_heads, H_l * W_l]``."""
    batch, length, dim = value.shape
    sizes = [int(h) * int(w) for h, w in spatial_shapes]
    if sum(sizes) != length:
        raise ValueError(f"value has {length} positions but spatial_shapes {list(spatial_shapes)} "
                         f"cover {sum(sizes)}")
    value = value.reshape(batch, length, num_heads, dim // num_heads)
    return list(value.permute(0, 2, 3, 1).split(sizes, dim=-1))


def deformable_sampling(
    value: Sequence[torch.Tensor],
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    num_points: Sequence[int],
    method: str = "default",
) -> torch.Tensor:
    """The multi-scale sampling core shared by both modes.

    Args:
        value: per level ``[B, n_head, c, H_l * W_l]`` (any tensor that reshapes to
            ``[B * n_head, c, H_l, W_l]``).
        spatial_shapes: ``[(H_l, W_l)]``.
        sampling_locations: ``[B, Q, n_head, P, 2]`` as (x, y) in [0, 1], the points of
            level 0 first, then level 1, ...; ``P = sum(num_points)``.
        attention_weights: ``[B, Q, n_head, P]`` (already normalised).
        num_points: points per level.
        method: ``"default"`` (bilinear) or ``"discrete"`` (nearest grid point).

    Returns:
        ``[B, Q, n_head * c]``, heads concatenated.
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"unknown sampling method {method!r}; expected one of {SAMPLING_METHODS}")
    batch, num_queries, num_heads, total_points, _ = sampling_locations.shape
    channels = value[0].shape[-2]
    grids = 2 * sampling_locations - 1 if method == "default" else sampling_locations
    grids = grids.permute(0, 2, 1, 3, 4).flatten(0, 1)  # [B * n_head, Q, P, 2]
    per_level = []
    for (h, w), value_l, grid_l in zip(spatial_shapes, value, grids.split(list(num_points), dim=-2)):
        value_l = value_l.reshape(batch * num_heads, channels, h, w)
        if method == "default":
            sampled = F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
        else:
            sampled = _sample_nearest(value_l, grid_l)
        per_level.append(sampled)  # [B * n_head, c, Q, P_l]
    weights = attention_weights.permute(0, 2, 1, 3).reshape(batch * num_heads, 1, num_queries, total_points)
    output = (torch.cat(per_level, dim=-1) * weights).sum(-1).reshape(batch, num_heads * channels, num_queries)
    return output.permute(0, 2, 1)


def _sample_nearest(value: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """value ``[N, c, H, W]``, locations ``[N, Q, P, 2]`` (x, y) in [0, 1] -> ``[N, c, Q, P]``."""
    n, channels, h, w = value.shape
    _, num_queries, num_points, _ = locations.shape
    size = torch.tensor([[w, h]], device=value.device)
    coords = (locations * size + 0.5).to(torch.int64)
    x = coords[..., 0].clamp(0, w - 1).reshape(n, -1)
    y = coords[..., 1].clamp(0, h - 1).reshape(n, -1)
    rows = torch.arange(n, device=value.device).unsqueeze(-1).expand_as(x)
    sampled = value[rows, :, y, x]  # [N, Q * P, c]
    return sampled.permute(0, 2, 1).reshape(n, channels, num_queries, num_points)


class MSDeformableAttention(nn.Module):
    """Multi-scale deformable attention; parameter names follow the official release.

    Args:
        embed_dim: ``D``, divisible by ``num_heads``.
        num_points: points per level, an int (same for every level) or one per level.
        method: ``"default"`` or ``"discrete"`` (see the module docstring).
        dfine_mode: True for the D-FINE layer (no projections), False for RT-DETRv2.
        offset_scale: box-relative offset scale (0.5 in every official config).
    """

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int | Sequence[int] = 4,
        method: str = "default",
        dfine_mode: bool = True,
        offset_scale: float = 0.5,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        if method not in SAMPLING_METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {SAMPLING_METHODS}")
        points = [int(num_points)] * num_levels if isinstance(num_points, int) else [int(n) for n in num_points]
        if len(points) != num_levels or min(points) < 1:
            raise ValueError(f"num_points must be a positive int or one positive int per level "
                             f"({num_levels} levels), got {num_points}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points_list = points
        self.method = method
        self.dfine_mode = dfine_mode
        self.offset_scale = offset_scale
        self.head_dim = embed_dim // num_heads
        total = num_heads * sum(points)

        self.register_buffer(
            "num_points_scale", torch.tensor([1 / n for n in points for _ in range(n)], dtype=torch.float32)
        )
        self.sampling_offsets = nn.Linear(embed_dim, total * 2)
        self.attention_weights = nn.Linear(embed_dim, total)
        if not dfine_mode:
            self.value_proj = nn.Linear(embed_dim, embed_dim)
            self.output_proj = nn.Linear(embed_dim, embed_dim)
        self._reset_parameters()
        if method == "discrete":
            self.sampling_offsets.requires_grad_(False)

    def _reset_parameters(self) -> None:
        """Offsets start on rays at angles ``2 pi k / n_head``, point ``i`` of a level at distance
        ``i + 1`` (max-norm); attention starts uniform."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        directions = directions.reshape(self.num_heads, 1, 2).tile([1, sum(self.num_points_list), 1])
        distance = torch.cat([torch.arange(1, n + 1) for n in self.num_points_list]).reshape(1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_((directions * distance).flatten())
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        if not self.dfine_mode:
            for proj in (self.value_proj, self.output_proj):
                nn.init.xavier_uniform_(proj.weight)
                nn.init.constant_(proj.bias, 0.0)

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, num_points={self.num_points_list}, "
                f"method={self.method!r}, dfine_mode={self.dfine_mode}")

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor | Sequence[torch.Tensor],
        spatial_shapes: Sequence[tuple[int, int]],
        value_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            query: ``[B, Q, D]``.
            reference_points: ``[B, Q, 1 or L, 4]`` boxes (cxcywh) or ``[B, Q, 1 or L, 2]``
                points (x, y), normalised; one per level or one shared by all levels.
            value: RT-DETRv2 mode: ``[B, sum H_l W_l, D]``. D-FINE mode: the same, or already
                split as per level ``[B, n_head, D / n_head, H_l * W_l]``.
            spatial_shapes: ``[(H_l, W_l)]`` per level.
            value_mask: RT-DETRv2 mode only: ``[B, sum H_l W_l]`` bool, False zeroes that value.

        Returns:
            ``[B, Q, D]``.
        """
        if len(spatial_shapes) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} spatial shapes, got {list(spatial_shapes)}")
        batch, num_queries = query.shape[:2]
        values = self._values(value, spatial_shapes, value_mask)

        offsets = self.sampling_offsets(query).reshape(batch, num_queries, self.num_heads, -1, 2)
        weights = self.attention_weights(query).reshape(batch, num_queries, self.num_heads, -1)
        weights = F.softmax(weights, dim=-1)
        locations = self._sampling_locations(reference_points, offsets, spatial_shapes)

        output = deformable_sampling(values, spatial_shapes, locations, weights, self.num_points_list, self.method)
        return output if self.dfine_mode else self.output_proj(output)

    def _values(self, value: torch.Tensor | Sequence[torch.Tensor], spatial_shapes: Sequence[tuple[int, int]],
                value_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """The value per level, ``[B, n_head, D / n_head, H_l * W_l]`` (projected and masked in RT-DETRv2 mode)."""
        if self.dfine_mode:
            if value_mask is not None:
                raise ValueError("value_mask is only supported with dfine_mode=False")
            if isinstance(value, torch.Tensor):
                return split_value_levels(value, spatial_shapes, self.num_heads)
            if len(value) != self.num_levels:
                raise ValueError(f"expected value for {self.num_levels} levels, got {len(value)}")
            return list(value)
        if not isinstance(value, torch.Tensor) or value.dim() != 3:
            raise ValueError("with dfine_mode=False, value must be the flattened memory [B, N, D]")
        value = self.value_proj(value)
        if value_mask is not None:
            value = value * value_mask.to(value.dtype).unsqueeze(-1)
        return split_value_levels(value, spatial_shapes, self.num_heads)

    def _sampling_locations(self, reference_points: torch.Tensor, offsets: torch.Tensor,
                            spatial_shapes: Sequence[tuple[int, int]]) -> torch.Tensor:
        """reference ``[B, Q, 1 or L, 2 or 4]``, offsets ``[B, Q, n_head, P, 2]`` -> ``[B, Q, n_head, P, 2]``."""
        if reference_points.dim() != 4 or reference_points.shape[2] not in (1, self.num_levels):
            raise ValueError(f"reference_points must be [B, Q, 1 or {self.num_levels}, 2 or 4], "
                             f"got {list(reference_points.shape)}")
        ref = reference_points[:, :, None]  # [B, Q, 1, 1 or L, d]
        if ref.shape[3] > 1:  # one reference per level: repeat it for each point of the level
            counts = torch.tensor(self.num_points_list, device=ref.device)
            ref = ref.repeat_interleave(counts, dim=3)
        if reference_points.shape[-1] == 4:
            scale = self.num_points_scale.to(dtype=offsets.dtype).unsqueeze(-1)
            return ref[..., :2] + offsets * scale * ref[..., 2:] * self.offset_scale
        if reference_points.shape[-1] == 2:
            normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=offsets.dtype, device=offsets.device)
            counts = torch.tensor(self.num_points_list, device=offsets.device)
            return ref + offsets / normalizer.repeat_interleave(counts, dim=0)
        raise ValueError(f"last dim of reference_points must be 2 or 4, got {reference_points.shape[-1]}")
