"""The D-FINE decoder (``DFINETransformer`` in the official code), as used by DEIM-D-FINE.

Pipeline, for multi-scale features ``feats`` (``[B, C_l, H_l, W_l]`` per level):

1. project each level to ``hidden_dim`` and flatten into the memory ``[B, N, D]``;
2. query selection: score every memory position (``enc_output`` + ``enc_score_head``),
   keep the top ``num_queries``, and predict their boxes relative to fixed anchors;
3. (training) prepend contrastive denoising queries built from the targets;
4. run the FDR layer stack (:mod:`deim.models.dfine_refinement`);
5. assemble the output dict the criterion consumes.

Boxes are cxcywh normalised to [0, 1] everywhere.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from deim.models.denoising import build_denoising_queries
from deim.models.dfine_refinement import DecoderHeads, FDRDecoder, RefinementOutput
from deim.models.mlp import MLP
from deim.models.query_selection import AnchoredQueries, build_enc_output, select_topk_queries

# Prior probability of an object used to initialise the classification biases.
_CLS_PRIOR = 0.01


class DFineDecoder(AnchoredQueries, nn.Module):
    """D-FINE decoder: query selection, denoising, FDR layers and prediction heads.

    Constructor arguments match the official ``DFINETransformer`` config fields; see
    :mod:`deim.presets.models` for the per-size presets. Differences from the official code:
    ``num_levels`` must equal ``len(feat_channels)`` (true for every official config),
    ``layer_scale`` must be 1 (ditto), ``box_noise_scale`` is honoured (the official
    code passes 1.0 whatever the config says), and eval works at any input size (the
    anchors of ``eval_spatial_size`` are a buffer; other sizes are generated and cached).

    ``reg_scale`` keeps its Python type in the ``reg_scale`` tensor: an ``int`` gives an
    int64 tensor like the official YAML configs, a ``float`` a float32 one. Both decode
    identically.
    """

    def __init__(
        self,
        num_classes: int = 80,
        hidden_dim: int = 256,
        num_queries: int = 300,
        feat_channels: Sequence[int] = (256, 256, 256),
        feat_strides: Sequence[int] = (8, 16, 32),
        num_levels: int = 3,
        num_points: int | Sequence[int] = (3, 6, 3),
        nhead: int = 8,
        num_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        activation: str = "relu",
        num_denoising: int = 100,
        label_noise_ratio: float = 0.5,
        box_noise_scale: float = 1.0,
        learn_query_content: bool = False,
        eval_spatial_size: Sequence[int] | None = (640, 640),
        eval_idx: int = -1,
        eps: float = 1e-2,
        aux_loss: bool = True,
        cross_attn_method: str = "default",
        query_select_method: str = "default",
        reg_max: int = 32,
        reg_scale: int | float = 4,
        layer_scale: float = 1,
        mlp_act: str = "relu",
    ) -> None:
        super().__init__()
        if len(feat_channels) != num_levels or len(feat_strides) != num_levels:
            raise ValueError(
                f"need one channel count and one stride per level: num_levels={num_levels}, "
                f"feat_channels={list(feat_channels)}, feat_strides={list(feat_strides)}"
            )
        if layer_scale != 1:
            raise ValueError(f"only layer_scale=1 is supported (every official config), got {layer_scale}")
        if query_select_method not in ("default", "one2many", "agnostic"):
            raise ValueError(f"unknown query_select_method {query_select_method!r}")
        if hidden_dim % nhead != 0:
            raise ValueError(f"hidden_dim {hidden_dim} is not divisible by nhead {nhead}")
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.feat_strides = list(feat_strides)
        self.num_levels = num_levels
        self.num_layers = num_layers
        self.reg_max = reg_max
        self.eps = eps
        self.aux_loss = aux_loss
        self.query_select_method = query_select_method
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.learn_query_content = learn_query_content
        self.eval_idx = eval_idx % num_layers

        self.up = nn.Parameter(torch.tensor([0.5]), requires_grad=False)
        self.reg_scale = nn.Parameter(torch.tensor([reg_scale]), requires_grad=False)
        self._init_anchors(self.feat_strides, eps, eval_spatial_size)

        self.input_proj = nn.ModuleList(self._input_projection(c) for c in feat_channels)
        layer_kwargs = dict(
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            activation=activation,
            n_levels=num_levels,
            n_points=list(num_points) if isinstance(num_points, Sequence) else num_points,
            cross_attn_method=cross_attn_method,
        )
        self.decoder = FDRDecoder(
            hidden_dim, num_layers, nhead, reg_max, self.up, self.reg_scale, layer_kwargs, eval_idx, lqe_act=activation
        )
        if num_denoising > 0:
            self.denoising_class_embed = nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes)
        if learn_query_content:
            self.tgt_embed = nn.Embedding(num_queries, hidden_dim)
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, 2, act=mlp_act)

        self.enc_output = build_enc_output(hidden_dim)
        self.enc_score_head = nn.Linear(hidden_dim, 1 if query_select_method == "agnostic" else num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3, act=mlp_act)

        self.dec_score_head = nn.ModuleList(nn.Linear(hidden_dim, num_classes) for _ in range(num_layers))
        self.pre_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3, act=mlp_act)
        self.dec_bbox_head = nn.ModuleList(
            MLP(hidden_dim, hidden_dim, 4 * (reg_max + 1), 3, act=mlp_act) for _ in range(num_layers)
        )
        self._reset_parameters()

    def convert_to_deploy(self) -> None:
        """Drop what inference never runs, as the official deploy does: the layers and box heads
        after ``eval_idx``, the score heads and LQE before it. In place; inference only afterwards."""
        keep = self.eval_idx
        self.decoder.layers = self.decoder.layers[: keep + 1]
        self.decoder.lqe_layers = nn.ModuleList([nn.Identity()] * keep + [self.decoder.lqe_layers[keep]])
        self.dec_score_head = nn.ModuleList([nn.Identity()] * keep + [self.dec_score_head[keep]])
        self.dec_bbox_head = nn.ModuleList(
            head if i <= keep else nn.Identity() for i, head in enumerate(self.dec_bbox_head)
        )

    def _input_projection(self, in_channels: int) -> nn.Module:
        if in_channels == self.hidden_dim:
            return nn.Identity()
        conv = nn.Conv2d(in_channels, self.hidden_dim, 1, bias=False)
        nn.init.xavier_uniform_(conv.weight)
        return nn.Sequential(OrderedDict([("conv", conv), ("norm", nn.BatchNorm2d(self.hidden_dim))]))

    def _reset_parameters(self) -> None:
        self._init_heads([self.enc_bbox_head, self.pre_bbox_head, *self.dec_bbox_head], _CLS_PRIOR)

    def _flatten_features(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Per level ``[B, C_l, H_l, W_l]`` -> memory ``[B, sum H_l W_l, D]`` and ``[(H_l, W_l)]``."""
        if len(feats) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} feature levels, got {len(feats)}")
        flat, shapes = [], []
        for proj, feat in zip(self.input_proj, feats):
            feat = proj(feat)
            shapes.append((feat.shape[2], feat.shape[3]))
            flat.append(feat.flatten(2).permute(0, 2, 1))
        return torch.cat(flat, dim=1), shapes

    def forward(self, feats: Sequence[torch.Tensor], targets: list[dict] | None = None) -> dict:
        """
        Args:
            feats: per level ``[B, C_l, H_l, W_l]`` (the encoder outputs, strides ``feat_strides``).
            targets: training only, for denoising: per image ``{"labels": [n] int64,
                "boxes": [n, 4] cxcywh normalised}``.

        Returns:
            eval: ``{"pred_logits": [B, Q, C], "pred_boxes": [B, Q, 4]}`` (layer ``eval_idx``).
            train: additionally ``pred_corners [B, Q, 4 * (reg_max + 1)]``, ``ref_points [B, Q, 4]``,
            ``up``, ``reg_scale`` and, with ``aux_loss``, ``aux_outputs`` (layers 0..L-2, each with
            ``teacher_corners`` / ``teacher_logits`` of the last layer), ``pre_outputs``,
            ``enc_aux_outputs``, ``enc_meta`` and, with denoising, ``dn_outputs`` (all layers),
            ``dn_pre_outputs``, ``dn_meta``.
        """
        memory, shapes = self._flatten_features(feats)
        anchors, valid_mask = self._anchors_for(shapes, memory)

        dn = None
        if self.training and self.num_denoising > 0:
            if targets is None:
                raise ValueError("targets are required in training when num_denoising > 0")
            dn = build_denoising_queries(
                targets,
                self.num_classes,
                self.num_queries,
                self.denoising_class_embed,
                num_denoising=self.num_denoising,
                label_noise_ratio=self.label_noise_ratio,
                box_noise_scale=self.box_noise_scale,
            )

        # only query selection sees the masked memory; the decoder samples the unmasked one
        output_memory = self.enc_output(valid_mask.to(memory.dtype) * memory)
        enc_logits = self.enc_score_head(output_memory)
        topk_memory, topk_logits, topk_anchors = select_topk_queries(
            output_memory, enc_logits, anchors, self.num_queries, self.query_select_method
        )
        enc_boxes_unact = self.enc_bbox_head(topk_memory) + topk_anchors

        content, ref_unact, attn_mask = self._decoder_queries(topk_memory, enc_boxes_unact, dn)

        heads = DecoderHeads(self.query_pos_head, self.pre_bbox_head, self.dec_bbox_head, self.dec_score_head)
        result = self.decoder(content, ref_unact, memory, shapes, heads, attn_mask=attn_mask)

        if not self.training:
            return {"pred_logits": result.logits[-1], "pred_boxes": result.boxes[-1]}
        enc = {"pred_logits": topk_logits, "pred_boxes": torch.sigmoid(enc_boxes_unact)}
        return self._training_outputs(result, enc, dn)

    def _training_outputs(self, result: RefinementOutput, enc: dict, dn) -> dict:
        dn_result = None
        if dn is not None:
            dn_result, result = _split_queries(result, dn.meta["dn_num_split"])
        last = _layer_output(result, -1)
        out = {key: last[key] for key in ("pred_logits", "pred_boxes", "pred_corners", "ref_points")}
        out["up"], out["reg_scale"] = self.up, self.reg_scale
        if not self.aux_loss:
            return out
        out["aux_outputs"] = [_layer_output(result, i) for i in range(result.logits.shape[0] - 1)]
        out["enc_aux_outputs"] = [enc]
        out["pre_outputs"] = {"pred_logits": result.pre_logits, "pred_boxes": result.pre_boxes}
        out["enc_meta"] = {"class_agnostic": self.query_select_method == "agnostic"}
        if dn_result is not None:
            out["dn_outputs"] = [_layer_output(dn_result, i) for i in range(dn_result.logits.shape[0])]
            out["dn_pre_outputs"] = {"pred_logits": dn_result.pre_logits, "pred_boxes": dn_result.pre_boxes}
            out["dn_meta"] = dn.meta
        return out


def _split_queries(result: RefinementOutput, split: list[int]) -> tuple[RefinementOutput, RefinementOutput]:
    """Split every tensor along the query dim into (denoising, matching) parts."""
    dn_parts, match_parts = {}, {}
    for name in ("boxes", "logits", "corners", "ref_points", "pre_boxes", "pre_logits"):
        tensor = getattr(result, name)
        dn_parts[name], match_parts[name] = torch.split(tensor, split, dim=tensor.dim() - 2)
    return RefinementOutput(**dn_parts), RefinementOutput(**match_parts)


def _layer_output(result: RefinementOutput, layer: int) -> dict:
    """The criterion's dict for one layer; the last layer is the distillation teacher (DDF)."""
    return {
        "pred_logits": result.logits[layer],
        "pred_boxes": result.boxes[layer],
        "pred_corners": result.corners[layer],
        "ref_points": result.ref_points[layer],
        "teacher_corners": result.corners[-1],
        "teacher_logits": result.logits[-1],
    }
