"""Fine-grained Distribution Refinement (FDR): the D-FINE decoder layer stack.

Every layer predicts, for each query, four distributions over ``reg_max + 1`` bins (one
per box edge). Layer ``i`` adds its logits to those of layer ``i - 1`` (residual
refinement of the distributions, not of the boxes), and all layers decode against the
same reference: the box predicted after layer 0 by ``pre_bbox_head``. Box of layer ``i``::

    corners_i = bbox_head_i(h_i + h_{i-1}.detach()) + corners_{i-1}
    box_i     = distance2bbox(ref_0, integral(corners_i, W), reg_scale)

The next layer samples around ``box_i.detach()``. Class logits come from
``score_head_i(h_i)`` plus the LQE term of ``corners_i``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deim.models.box_coder import distance2bbox, weighting_function
from deim.models.dfine_layers import LQE, DFineDecoderLayer, distribution_integral
from deim.models.query_selection import inverse_sigmoid

# Every official config uses LQE with the top-4 probabilities and a 2-layer MLP of width 64.
LQE_TOPK = 4
LQE_HIDDEN_DIM = 64
LQE_NUM_LAYERS = 2
# The positional embedding of the queries is clamped to this range.
QUERY_POS_CLAMP = 10.0


@dataclass
class DecoderHeads:
    """The prediction heads the refinement loop uses (they live on the outer decoder)."""

    query_pos_head: nn.Module  # [B, Q, 4] cxcywh -> [B, Q, D]
    pre_bbox_head: nn.Module  # [B, Q, D] -> [B, Q, 4] logit offsets for the layer-0 box
    bbox_heads: nn.ModuleList  # per layer: [B, Q, D] -> [B, Q, 4 * (reg_max + 1)]
    score_heads: nn.ModuleList  # per layer: [B, Q, D] -> [B, Q, C]


@dataclass
class RefinementOutput:
    """Per-layer predictions, stacked along a leading layer dimension ``L'``.

    ``L'`` is the number of layers in training and 1 (the ``eval_idx`` layer) in eval.
    """

    boxes: torch.Tensor  # [L', B, Q, 4] cxcywh normalised
    logits: torch.Tensor  # [L', B, Q, C]
    corners: torch.Tensor  # [L', B, Q, 4 * (reg_max + 1)]
    ref_points: torch.Tensor  # [L', B, Q, 4] the (detached) layer-0 box every layer decodes against
    pre_boxes: torch.Tensor  # [B, Q, 4] box of pre_bbox_head after layer 0
    pre_logits: torch.Tensor  # [B, Q, C] score_heads[0] after layer 0 (without LQE)


def split_value(memory: torch.Tensor, spatial_shapes: list[tuple[int, int]], num_heads: int) -> list[torch.Tensor]:
    """``[B, N, D]`` flattened multi-level memory -> per level ``[B, num_heads, D / num_heads, H_l * W_l]``."""
    batch, length, dim = memory.shape
    value = memory.reshape(batch, length, num_heads, dim // num_heads)
    return list(value.permute(0, 2, 3, 1).split([h * w for h, w in spatial_shapes], dim=-1))


class FDRDecoder(nn.Module):
    """The layer stack with FDR. Registered as ``decoder.decoder`` in the full model.

    Args:
        up, reg_scale: the weighting-function parameters, ``[1]`` non-trainable Parameters
            shared with (the very same objects as) the outer decoder's ``up`` / ``reg_scale``.
        eval_idx: layer whose prediction is returned in eval (negative counts from the end);
            eval stops after it.
        lqe_act: activation of the LQE MLP (the official code passes the layer activation).
    """

    def __init__(
        self,
        hidden_dim: int,
        num_layers: int,
        num_heads: int,
        reg_max: int,
        up: nn.Parameter,
        reg_scale: nn.Parameter,
        layer_kwargs: dict,
        eval_idx: int = -1,
        lqe_act: str = "relu",
    ) -> None:
        super().__init__()
        if not -num_layers <= eval_idx < num_layers:
            raise ValueError(f"eval_idx {eval_idx} out of range for {num_layers} layers")
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.reg_max = reg_max
        self.eval_idx = eval_idx % num_layers
        self.up = up
        self.reg_scale = reg_scale
        self.layers = nn.ModuleList(
            DFineDecoderLayer(hidden_dim, num_heads, **layer_kwargs) for _ in range(num_layers)
        )
        self.lqe_layers = nn.ModuleList(
            LQE(LQE_TOPK, LQE_HIDDEN_DIM, LQE_NUM_LAYERS, reg_max, act=lqe_act) for _ in range(num_layers)
        )

    def forward(
        self,
        target: torch.Tensor,
        ref_points_unact: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        heads: DecoderHeads,
        attn_mask: torch.Tensor | None = None,
    ) -> RefinementOutput:
        """
        Args:
            target: ``[B, Q, D]`` initial query content (denoising queries first, if any).
            ref_points_unact: ``[B, Q, 4]`` initial reference boxes, logits of cxcywh normalised.
            memory: ``[B, N, D]`` flattened encoder memory, ``N = sum_l H_l * W_l``.
            spatial_shapes: ``[(H_l, W_l)]`` per level.
            heads: the prediction heads.
            attn_mask: ``[Q, Q]`` bool self-attention mask (True = blocked), or None.
        """
        value = split_value(memory, spatial_shapes, self.num_heads)
        project = weighting_function(self.reg_max, self.up, self.reg_scale)

        boxes, logits, corners_out, refs = [], [], [], []
        output = target
        ref_points = torch.sigmoid(ref_points_unact)
        prev_output: torch.Tensor | None = None
        prev_corners: torch.Tensor | None = None
        for i, layer in enumerate(self.layers):
            query_pos = heads.query_pos_head(ref_points).clamp(min=-QUERY_POS_CLAMP, max=QUERY_POS_CLAMP)
            output = layer(output, ref_points.unsqueeze(2), value, spatial_shapes, attn_mask, query_pos)

            if i == 0:
                pre_boxes = torch.sigmoid(heads.pre_bbox_head(output) + inverse_sigmoid(ref_points))
                pre_logits = heads.score_heads[0](output)
                ref_initial = pre_boxes.detach()

            head_input = output if prev_output is None else output + prev_output
            corners = heads.bbox_heads[i](head_input)
            if prev_corners is not None:
                corners = corners + prev_corners
            box = distance2bbox(ref_initial, distribution_integral(corners, project), self.reg_scale)

            if self.training or i == self.eval_idx:
                scores = self.lqe_layers[i](heads.score_heads[i](output), corners)
                logits.append(scores)
                boxes.append(box)
                corners_out.append(corners)
                refs.append(ref_initial)
                if not self.training:
                    break

            prev_corners = corners
            ref_points = box.detach()
            prev_output = output.detach()

        return RefinementOutput(
            boxes=torch.stack(boxes),
            logits=torch.stack(logits),
            corners=torch.stack(corners_out),
            ref_points=torch.stack(refs),
            pre_boxes=pre_boxes,
            pre_logits=pre_logits,
        )
