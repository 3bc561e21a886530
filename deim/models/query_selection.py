"""Encoder-side query selection shared by the D-FINE and RT-DETRv2 decoders.

Every position of the flattened multi-scale memory ``[B, N, D]`` gets a fixed anchor box
(its grid-cell centre, side ``0.05 * 2**level``), a class score and a box offset; the
``num_queries`` best-scoring positions become the decoder's initial queries and
reference boxes. Anchors live in logit space (``inverse sigmoid`` of cxcywh normalised);
positions whose anchor touches the border (a coordinate within ``eps`` of 0 or 1) are
invalid: their anchor row is ``+inf`` and the decoder zeroes their memory.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from deim.models.dfine_layers import bias_for_prior

QUERY_SELECT_METHODS = ("default", "one2many", "agnostic")
# Side of a level-0 anchor box (normalised); level l uses ANCHOR_SIZE * 2**l.
ANCHOR_SIZE = 0.05

LevelShapes = tuple[tuple[int, int], ...]


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``log(x / (1 - x))`` with ``x`` clipped to [0, 1] and both terms to at least ``eps``."""
    x = x.clip(min=0.0, max=1.0)
    return torch.log(x.clip(min=eps) / (1 - x).clip(min=eps))


def generate_anchors(
    level_shapes: Sequence[tuple[int, int]],
    eps: float,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor logits and their validity for feature maps of the given ``[(H_l, W_l)]``.

    Returns:
        ``anchors [1, N, 4]`` (logits of cxcywh normalised, ``+inf`` rows where invalid) and
        ``valid_mask [1, N, 1]`` bool, ``N = sum_l H_l * W_l``, level-major then row-major.
    """
    per_level = []
    for level, (h, w) in enumerate(level_shapes):
        grid_y, grid_x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        centres = (torch.stack([grid_x, grid_y], dim=-1).unsqueeze(0) + 0.5) / torch.tensor([w, h], dtype=dtype)
        sides = torch.ones_like(centres) * ANCHOR_SIZE * (2.0 ** level)
        per_level.append(torch.cat([centres, sides], dim=-1).reshape(-1, h * w, 4))
    anchors = torch.cat(per_level, dim=1).to(device)
    valid_mask = ((anchors > eps) * (anchors < 1 - eps)).all(-1, keepdim=True)
    anchors = torch.log(anchors / (1 - anchors))
    return torch.where(valid_mask, anchors, torch.inf), valid_mask


class AnchorCache:
    """Anchors per set of level shapes and device, generated once and reused.

    Tensors returned by :meth:`for_level_shapes` are shared between calls: treat them as
    read-only. :meth:`for_image_size` returns fresh copies, safe to register as buffers.
    """

    def __init__(self, feat_strides: Sequence[int], eps: float = 1e-2) -> None:
        if not feat_strides or min(feat_strides) <= 0:
            raise ValueError(f"feat_strides must be positive, got {list(feat_strides)}")
        self.feat_strides = [int(s) for s in feat_strides]
        self.eps = eps
        self._cache: dict[tuple[LevelShapes, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def level_shapes(self, image_size: Sequence[int]) -> list[tuple[int, int]]:
        """``(H, W)`` of the input image -> ``[(H // s, W // s)]`` per stride (the official rounding)."""
        if len(image_size) != 2:
            raise ValueError(f"image_size must be (H, W), got {image_size}")
        h, w = image_size
        return [(int(h / s), int(w / s)) for s in self.feat_strides]

    def for_level_shapes(self, shapes: Sequence[tuple[int, int]],
                         device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``(anchors [1, N, 4], valid_mask [1, N, 1])`` for these level shapes, cached."""
        if len(shapes) != len(self.feat_strides):
            raise ValueError(f"expected {len(self.feat_strides)} level shapes, got {list(shapes)}")
        key = (tuple((int(h), int(w)) for h, w in shapes), torch.device(device))
        if key not in self._cache:
            self._cache[key] = generate_anchors(key[0], self.eps, device=key[1])
        return self._cache[key]

    def for_image_size(self, image_size: Sequence[int],
                       device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Anchors for an ``(H, W)`` input; fresh copies of the cached tensors."""
        anchors, valid_mask = self.for_level_shapes(self.level_shapes(image_size), device=device)
        return anchors.clone(), valid_mask.clone()


def build_enc_output(hidden_dim: int) -> nn.Sequential:
    """The projection applied to the memory before scoring: ``Linear`` then ``LayerNorm``
    (state-dict names ``proj`` / ``norm``)."""
    return nn.Sequential(OrderedDict([
        ("proj", nn.Linear(hidden_dim, hidden_dim)),
        ("norm", nn.LayerNorm(hidden_dim)),
    ]))


def topk_indices(logits: torch.Tensor, k: int, method: str = "default") -> torch.Tensor:
    """Indices ``[B, k]`` of the selected memory positions.

    ``"default"``: the ``k`` positions with the highest max-over-classes logit.
    ``"one2many"``: the ``k`` highest (position, class) logits; a position may repeat.
    ``"agnostic"``: ``logits`` has a single class; the ``k`` highest.
    """
    if method not in QUERY_SELECT_METHODS:
        raise ValueError(f"unknown query selection method {method!r}; expected one of {QUERY_SELECT_METHODS}")
    num_positions, num_classes = logits.shape[1], logits.shape[2]
    if not 0 < k <= num_positions:
        raise ValueError(f"cannot select k={k} queries from {num_positions} memory positions")
    if method == "default":
        return torch.topk(logits.max(-1).values, k, dim=-1).indices
    if method == "one2many":
        return torch.topk(logits.flatten(1), k, dim=-1).indices // num_classes
    if num_classes != 1:
        raise ValueError(f"method 'agnostic' needs one score per position, got {num_classes}")
    return torch.topk(logits.squeeze(-1), k, dim=-1).indices


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x [B or 1, N, C]``, ``index [B, k]`` -> ``[B, k, C]``."""
    x = x.expand(index.shape[0], -1, -1)
    return x.gather(dim=1, index=index.unsqueeze(-1).repeat(1, 1, x.shape[-1]))


def select_topk_queries(
    memory: torch.Tensor,
    logits: torch.Tensor,
    anchors: torch.Tensor,
    k: int,
    method: str = "default",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the ``k`` best-scoring memory positions (see :func:`topk_indices`).

    Args:
        memory: ``[B, N, D]`` (the projected memory).
        logits: ``[B, N, C]`` encoder class logits.
        anchors: ``[B or 1, N, 4]`` per-position boxes in logit space (the anchors, or
            RT-DETRv2's ``enc_bbox_head(memory) + anchors``).
        k: number of queries.
        method: ``"default"``, ``"one2many"`` or ``"agnostic"``.

    Returns:
        ``(memory [B, k, D], logits [B, k, C], anchors [B, k, 4])`` of the selected positions.
    """
    index = topk_indices(logits, k, method)
    return _gather_rows(memory, index), _gather_rows(logits, index), _gather_rows(anchors, index)


class AnchoredQueries:
    """Mixin of both decoders: anchors and valid mask as buffers for ``eval_spatial_size`` (the
    official state-dict entries), and computed-and-cached anchors for any other input size."""

    def _init_anchors(self, feat_strides: Sequence[int], eps: float,
                      eval_spatial_size: Sequence[int] | None) -> None:
        self.anchor_cache = AnchorCache(feat_strides, eps)
        self.eval_spatial_size = None if eval_spatial_size is None else tuple(eval_spatial_size)
        if self.eval_spatial_size is not None:
            anchors, valid_mask = self.anchor_cache.for_image_size(self.eval_spatial_size)
            self.register_buffer("anchors", anchors)
            self.register_buffer("valid_mask", valid_mask)

    def _anchors_for(self, shapes: list[tuple[int, int]], memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor logits ``[1, N, 4]`` and valid mask ``[1, N, 1]`` for these level shapes."""
        if not self.training and self.eval_spatial_size is not None:
            if shapes == self.anchor_cache.level_shapes(self.eval_spatial_size):
                return self.anchors, self.valid_mask
        return self.anchor_cache.for_level_shapes(shapes, device=memory.device)

    def _decoder_queries(self, topk_memory: torch.Tensor, boxes_unact: torch.Tensor, dn
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Decoder inputs: content ``[B, n_dn + Q, D]`` (the selected memory, detached, or learned
        embeddings), reference boxes in logit space ``[B, n_dn + Q, 4]`` (detached) and the
        self-attention mask; denoising queries (``dn``, or ``None``) come first."""
        if self.learn_query_content:
            content = self.tgt_embed.weight.unsqueeze(0).tile([topk_memory.shape[0], 1, 1])
        else:
            content = topk_memory.detach()
        ref_unact = boxes_unact.detach()
        if dn is None:
            return content, ref_unact, None
        return (torch.cat([dn.query_content, content], dim=1), torch.cat([dn.ref_points_unact, ref_unact], dim=1),
                dn.attn_mask)

    def _init_heads(self, box_heads: list[nn.Module], class_prior: float = 0.01) -> None:
        """The official initialisation of the query heads: class biases at the prior
        ``log(p / (1 - p))``, zero last layers of the box heads (boxes start at the anchors or
        references), Xavier for the memory projection, learned content and query position head."""
        cls_bias = bias_for_prior(class_prior)
        nn.init.constant_(self.enc_score_head.bias, cls_bias)
        for score_head in self.dec_score_head:
            nn.init.constant_(score_head.bias, cls_bias)
        for box_head in box_heads:
            nn.init.constant_(box_head.layers[-1].weight, 0.0)
            nn.init.constant_(box_head.layers[-1].bias, 0.0)
        nn.init.xavier_uniform_(self.enc_output.proj.weight)
        if self.learn_query_content:
            nn.init.xavier_uniform_(self.tgt_embed.weight)
        nn.init.xavier_uniform_(self.query_pos_head.layers[0].weight)
        nn.init.xavier_uniform_(self.query_pos_head.layers[1].weight)
