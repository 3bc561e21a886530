"""The RT-DETRv2 decoder (as used by DEIM-RT-DETRv2): query selection from the encoder memory,
contrastive denoising, and decoder layers that refine boxes iteratively.

Per image: the encoder memory (``[B, sum H_l W_l, D]``, all levels flattened) gets a class
score and a box (offset to a fixed anchor) per position; the top ``num_queries`` positions become
the queries. Each decoder layer (self-attention, multi-scale deformable cross-attention, FFN,
post-norm) predicts a box delta in logit space on top of the previous layer's box. Boxes are
``cxcywh`` normalised. The blocks shared with the D-FINE decoder (MLP, deformable attention,
anchors and query selection, denoising) live in their own modules.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from deim.models.deformable_attention import MSDeformableAttention
from deim.models.denoising import build_denoising_queries
from deim.models.mlp import MLP, get_activation
from deim.models.query_selection import AnchoredQueries, build_enc_output, inverse_sigmoid, select_topk_queries

_CLS_PRIOR = 0.01


class RTDETRv2DecoderLayer(nn.Module):
    """Self-attention, deformable cross-attention and FFN, each ``x + sublayer(x)`` then LayerNorm.
    ``[B, Q, D] -> [B, Q, D]``; the query position embedding is added to queries and keys."""

    def __init__(self, d_model: int, n_head: int, dim_feedforward: int, dropout: float, activation: str,
                 n_levels: int, n_points: int | Sequence[int], cross_attn_method: str) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_head, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformableAttention(d_model, n_head, n_levels, n_points, method=cross_attn_method,
                                                dfine_mode=False)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = get_activation(activation)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        nn.init.xavier_uniform_(self.linear1.weight)
        nn.init.xavier_uniform_(self.linear2.weight)

    def forward(self, target: torch.Tensor, reference_points: torch.Tensor, memory: torch.Tensor,
                spatial_shapes: Sequence[tuple[int, int]], attn_mask: torch.Tensor | None = None,
                pos: torch.Tensor | None = None) -> torch.Tensor:
        q = k = target if pos is None else target + pos
        attended, _ = self.self_attn(q, k, value=target, attn_mask=attn_mask)
        target = self.norm1(target + self.dropout1(attended))
        query = target if pos is None else target + pos
        sampled = self.cross_attn(query, reference_points, memory, spatial_shapes)
        target = self.norm2(target + self.dropout2(sampled))
        ffn = self.linear2(self.dropout3(self.activation(self.linear1(target))))
        return self.norm3(target + self.dropout4(ffn))


class RTDETRv2Decoder(AnchoredQueries, nn.Module):
    """RT-DETRv2 transformer decoder with its input projection and heads.

    Arguments are those of the official ``RTDETRTransformerv2`` (see ``deim.presets.models``);
    ``query_pos_method="as_reg"`` (DEIM) makes the query position head a 3-layer MLP of width
    ``hidden_dim`` (the baselines: 2 layers of width ``2 * hidden_dim``). ``value_shape`` exists
    for config compatibility and must be ``"reshape"``, the official default.

    With the same seed, initial weights, outputs and gradients equal the official ones bit for bit.
    Differences: eval at a size other than ``eval_spatial_size`` computes anchors for the actual
    feature maps (the official reuses the stored ones), and the constructor does not append to
    the caller's ``feat_strides``.
    """

    def __init__(self, num_classes: int = 80, hidden_dim: int = 256, num_queries: int = 300,
                 feat_channels: Sequence[int] = (512, 1024, 2048), feat_strides: Sequence[int] = (8, 16, 32),
                 num_levels: int = 3, num_points: int | Sequence[int] = 4, nhead: int = 8, num_layers: int = 6,
                 dim_feedforward: int = 1024, dropout: float = 0.0, activation: str = "relu",
                 num_denoising: int = 100, label_noise_ratio: float = 0.5, box_noise_scale: float = 1.0,
                 learn_query_content: bool = False, eval_spatial_size: Sequence[int] | None = None,
                 eval_idx: int = -1, eps: float = 1e-2, aux_loss: bool = True, cross_attn_method: str = "default",
                 query_select_method: str = "default", value_shape: str = "reshape", mlp_act: str = "relu",
                 query_pos_method: str = "default") -> None:
        super().__init__()
        if len(feat_channels) > num_levels or len(feat_strides) != len(feat_channels):
            raise ValueError(f"feat_channels {list(feat_channels)} and feat_strides {list(feat_strides)} must have "
                             f"the same length, at most num_levels={num_levels}")
        if query_select_method not in ("default", "one2many", "agnostic"):
            raise ValueError(f"unknown query_select_method {query_select_method!r}")
        if query_pos_method not in ("default", "as_reg"):
            raise ValueError(f"unknown query_pos_method {query_pos_method!r}; expected 'default' or 'as_reg'")
        if not -num_layers <= eval_idx < num_layers:
            raise ValueError(f"eval_idx {eval_idx} out of range for {num_layers} layers")
        if value_shape != "reshape":
            raise ValueError(f"value_shape {value_shape!r} is not supported: only 'reshape' (the official "
                             f"decoder fails on its flattened value with 'default')")
        strides = list(feat_strides)
        while len(strides) < num_levels:  # extra levels downsample the last feature map
            strides.append(strides[-1] * 2)
        self.hidden_dim, self.num_classes, self.num_queries = hidden_dim, num_classes, num_queries
        self.num_levels, self.feat_strides, self.eps = num_levels, strides, eps
        self.num_layers, self.eval_idx = num_layers, eval_idx % num_layers
        self.aux_loss, self.query_select_method = aux_loss, query_select_method
        self.num_denoising, self.label_noise_ratio, self.box_noise_scale = num_denoising, label_noise_ratio, box_noise_scale
        self.learn_query_content = learn_query_content

        self.num_feats = len(feat_channels)
        self.input_proj = nn.ModuleList(self._projection(c, 1) for c in feat_channels)
        in_channels = feat_channels[-1]
        for _ in range(num_levels - len(feat_channels)):
            self.input_proj.append(self._projection(in_channels, 3))
            in_channels = hidden_dim
        points = list(num_points) if isinstance(num_points, Sequence) else num_points
        # every layer starts as a copy of one initialised layer, as in the official code
        layer = RTDETRv2DecoderLayer(hidden_dim, nhead, dim_feedforward, dropout, activation, num_levels, points,
                                     cross_attn_method)
        self.decoder = nn.Module()  # holds ``layers`` so that parameter names match the official ones
        self.decoder.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        if num_denoising > 0:
            self.denoising_class_embed = nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes)
            nn.init.normal_(self.denoising_class_embed.weight[:-1])
        if learn_query_content:
            self.tgt_embed = nn.Embedding(num_queries, hidden_dim)
        self.query_pos_head = (MLP(4, hidden_dim, hidden_dim, 3, act=mlp_act) if query_pos_method == "as_reg"
                               else MLP(4, 2 * hidden_dim, hidden_dim, 2, act=mlp_act))
        self.enc_output = build_enc_output(hidden_dim)
        self.enc_score_head = nn.Linear(hidden_dim, 1 if query_select_method == "agnostic" else num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3, act=mlp_act)
        self.dec_score_head = nn.ModuleList(nn.Linear(hidden_dim, num_classes) for _ in range(num_layers))
        self.dec_bbox_head = nn.ModuleList(MLP(hidden_dim, hidden_dim, 4, 3, act=mlp_act) for _ in range(num_layers))

        self._init_anchors(self.feat_strides, eps, eval_spatial_size)
        self._reset_parameters()

    def _projection(self, in_channels: int, kernel: int) -> nn.Module:
        conv = nn.Conv2d(in_channels, self.hidden_dim, kernel, stride=1 if kernel == 1 else 2,
                         padding=(kernel - 1) // 2, bias=False)
        return nn.Sequential(OrderedDict([("conv", conv), ("norm", nn.BatchNorm2d(self.hidden_dim))]))

    def _reset_parameters(self) -> None:
        self._init_heads([self.enc_bbox_head, *self.dec_bbox_head], _CLS_PRIOR)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj.conv.weight)

    def _flatten(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Project each level (adding extra downsampled levels) -> ``[B, sum H_l W_l, D]`` and shapes."""
        if len(feats) != self.num_feats:
            raise ValueError(f"expected {self.num_feats} feature levels (feat_channels), got {len(feats)}")
        projected = [self.input_proj[i](feat) for i, feat in enumerate(feats)]
        for i in range(self.num_feats, self.num_levels):
            projected.append(self.input_proj[i](feats[-1] if i == self.num_feats else projected[-1]))
        shapes = [(f.shape[2], f.shape[3]) for f in projected]
        return torch.cat([f.flatten(2).permute(0, 2, 1) for f in projected], dim=1), shapes

    def forward(self, feats: Sequence[torch.Tensor], targets: list[dict] | None = None) -> dict:
        """
        Args:
            feats: per level ``[B, C_l, H_l, W_l]`` (the encoder outputs).
            targets: training only, for denoising: per image ``labels [n]`` and ``boxes [n, 4]`` (cxcywh).

        Returns:
            eval: ``{"pred_logits": [B, Q, C], "pred_boxes": [B, Q, 4]}`` of layer ``eval_idx``.
            train: the last layer's ``pred_logits`` / ``pred_boxes`` and, with ``aux_loss``,
            ``aux_outputs`` (the other layers), ``enc_aux_outputs``, ``enc_meta`` and, with
            denoising, ``dn_outputs`` (every layer) and ``dn_meta``.
        """
        memory, shapes = self._flatten(feats)
        anchors, valid_mask = self._anchors_for(shapes, memory)
        dn = None
        if self.training and self.num_denoising > 0:
            if targets is None:
                raise ValueError("targets are required in training when num_denoising > 0")
            dn = build_denoising_queries(targets, self.num_classes, self.num_queries, self.denoising_class_embed,
                                         num_denoising=self.num_denoising, label_noise_ratio=self.label_noise_ratio,
                                         box_noise_scale=self.box_noise_scale)

        # query selection sees the masked memory; the decoder samples the unmasked one
        output_memory = self.enc_output(valid_mask.to(memory.dtype) * memory)
        enc_logits = self.enc_score_head(output_memory)
        enc_boxes_unact = self.enc_bbox_head(output_memory) + anchors
        topk_memory, topk_logits, topk_boxes_unact = select_topk_queries(
            output_memory, enc_logits, enc_boxes_unact, self.num_queries, self.query_select_method)
        content, ref_unact, attn_mask = self._decoder_queries(topk_memory, topk_boxes_unact, dn)

        boxes, logits = self._decode(content, ref_unact, memory, shapes, attn_mask)
        if not self.training:
            return {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if dn is not None:
            dn_boxes, boxes = torch.split(boxes, dn.meta["dn_num_split"], dim=2)
            dn_logits, logits = torch.split(logits, dn.meta["dn_num_split"], dim=2)
        out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.aux_loss:
            out["aux_outputs"] = _pairs(logits[:-1], boxes[:-1])
            out["enc_aux_outputs"] = [{"pred_logits": topk_logits, "pred_boxes": torch.sigmoid(topk_boxes_unact)}]
            out["enc_meta"] = {"class_agnostic": self.query_select_method == "agnostic"}
            if dn is not None:
                out["dn_outputs"] = _pairs(dn_logits, dn_boxes)
                out["dn_meta"] = dn.meta
        return out

    def _decode(self, target: torch.Tensor, ref_unact: torch.Tensor, memory: torch.Tensor,
                shapes: list[tuple[int, int]], attn_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Iterative refinement. Returns boxes ``[L', B, Q, 4]`` and logits ``[L', B, Q, C]``: every
        layer in training, only layer ``eval_idx`` in eval. Every layer is fed detached reference
        boxes; in training, layer ``i > 0``'s output box is built on layer ``i - 1``'s *undetached*
        box, so its loss also trains layer ``i - 1``'s box head (one step back, no further)."""
        out_boxes, out_logits = [], []
        ref_detached = torch.sigmoid(ref_unact)
        ref = ref_detached
        for i, layer in enumerate(self.decoder.layers):
            pos = self.query_pos_head(ref_detached)
            target = layer(target, ref_detached.unsqueeze(2), memory, shapes, attn_mask, pos)
            delta = self.dec_bbox_head[i](target)
            new_ref = torch.sigmoid(delta + inverse_sigmoid(ref_detached))
            if self.training:
                out_logits.append(self.dec_score_head[i](target))
                if i == 0:
                    out_boxes.append(new_ref)
                else:  # a second head call, as the official: gradients then agree with it bit for bit
                    out_boxes.append(torch.sigmoid(self.dec_bbox_head[i](target) + inverse_sigmoid(ref)))
            elif i == self.eval_idx:
                out_logits.append(self.dec_score_head[i](target))
                out_boxes.append(new_ref)
                break
            ref, ref_detached = new_ref, new_ref.detach()
        return torch.stack(out_boxes), torch.stack(out_logits)


def _pairs(logits: torch.Tensor, boxes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    return [{"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(logits, boxes)]
