"""Building blocks specific to the D-FINE decoder.

* :class:`Gate` -- the "gateway" that fuses the self-attention stream with the
  cross-attention output (instead of a plain residual add).
* :func:`distribution_integral` -- turns per-edge bin logits into edge distances,
  ``sum_n softmax(logits)_n * W(n)`` with the non-uniform weighting function ``W``.
* :class:`LQE` -- Localization Quality Estimation: adds to the class logits a score
  computed from the top-k probabilities of each edge distribution.
* :class:`DFineDecoderLayer` -- self-attention, deformable cross-attention with box
  reference points, gateway, feed-forward network.

Parameter names follow the official D-FINE / DEIM release so that checkpoints load
as they are (``layers.{l}.gateway.gate``, ``lqe_layers.{l}.reg_conf.layers.{i}``, ...).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deim.models.deformable_attention import MSDeformableAttention
from deim.models.mlp import MLP, get_activation

# LayerNorm input is clamped to the float16 range, so that mixed precision cannot overflow.
_FP16_MAX = 65504.0


def bias_for_prior(prior_prob: float) -> float:
    """Bias whose sigmoid equals ``prior_prob`` (``-log((1 - p) / p)``)."""
    if not 0.0 < prior_prob < 1.0:
        raise ValueError(f"prior_prob must lie in (0, 1), got {prior_prob}")
    return float(-math.log((1 - prior_prob) / prior_prob))


class Gate(nn.Module):
    """Gated fusion ``LayerNorm(g1 * x1 + g2 * x2)`` with ``[g1, g2] = sigmoid(W [x1, x2] + b)``.

    Initialised with ``W = 0, b = 0`` so both gates start at 0.5.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * d_model, 2 * d_model)
        self.norm = nn.LayerNorm(d_model)
        nn.init.constant_(self.gate.weight, 0.0)
        nn.init.constant_(self.gate.bias, bias_for_prior(0.5))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """x1, x2: ``[B, Q, D]`` -> ``[B, Q, D]``."""
        gates = torch.sigmoid(self.gate(torch.cat([x1, x2], dim=-1)))
        gate1, gate2 = gates.chunk(2, dim=-1)
        return self.norm(gate1 * x1 + gate2 * x2)


def distribution_integral(corners: torch.Tensor, project: torch.Tensor) -> torch.Tensor:
    """Expected edge distances of the four per-edge distributions.

    Args:
        corners: ``[..., 4 * (reg_max + 1)]`` bin logits, edges ordered (left, top, right, bottom).
        project: ``[reg_max + 1]`` values of the weighting function ``W(n)``.

    Returns:
        ``[..., 4]`` distances, in units of the weighting function (see ``distance2bbox``).
    """
    num_bins = project.shape[0]
    if corners.shape[-1] != 4 * num_bins:
        raise ValueError(f"corners last dim {corners.shape[-1]} != 4 * {num_bins} bins")
    prob = F.softmax(corners.reshape(-1, num_bins), dim=1)
    distances = F.linear(prob, project.to(prob.device)).reshape(-1, 4)
    return distances.reshape(list(corners.shape[:-1]) + [4])


class LQE(nn.Module):
    """Localization Quality Estimation: ``logits + MLP([top-k probs, their mean] per edge)``.

    The statistics of each edge distribution (its ``k`` largest probabilities and their
    mean, ``4 * (k + 1)`` numbers in all) feed a small MLP whose single output is added
    to every class logit. The last layer starts at zero, so LQE is initially a no-op.
    """

    def __init__(self, k: int, hidden_dim: int, num_layers: int, reg_max: int, act: str = "relu") -> None:
        super().__init__()
        self.k = k
        self.reg_max = reg_max
        self.reg_conf = MLP(4 * (k + 1), hidden_dim, 1, num_layers, act=act)
        nn.init.constant_(self.reg_conf.layers[-1].weight, 0.0)
        nn.init.constant_(self.reg_conf.layers[-1].bias, 0.0)

    def forward(self, scores: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        """scores: ``[B, Q, C]`` logits; corners: ``[B, Q, 4 * (reg_max + 1)]`` -> ``[B, Q, C]``."""
        batch, queries, _ = corners.shape
        prob = F.softmax(corners.reshape(batch, queries, 4, self.reg_max + 1), dim=-1)
        prob_topk, _ = prob.topk(self.k, dim=-1)
        stat = torch.cat([prob_topk, prob_topk.mean(dim=-1, keepdim=True)], dim=-1)
        return scores + self.reg_conf(stat.reshape(batch, queries, -1))


class DFineDecoderLayer(nn.Module):
    """One D-FINE decoder layer (post-norm).

    ``x = norm1(x + SelfAttn(x + pos, x + pos, x))``;
    ``x = gateway(x, MSDeformAttn(x + pos, ref_boxes, value))``;
    ``x = norm3(x + FFN(x))``.
    """

    def __init__(
        self,
        d_model: int = 256,
        n_head: int = 8,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        activation: str = "relu",
        n_levels: int = 3,
        n_points: int | list[int] = 4,
        cross_attn_method: str = "default",
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_head, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)

        self.cross_attn = MSDeformableAttention(
            d_model, n_head, n_levels, n_points, method=cross_attn_method, dfine_mode=True
        )
        self.dropout2 = nn.Dropout(dropout)
        self.gateway = Gate(d_model)

        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = get_activation(activation)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        nn.init.xavier_uniform_(self.linear1.weight)
        nn.init.xavier_uniform_(self.linear2.weight)

    def forward(
        self,
        target: torch.Tensor,
        ref_boxes: torch.Tensor,
        value: list[torch.Tensor],
        spatial_shapes: list[tuple[int, int]],
        attn_mask: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            target: ``[B, Q, D]`` query content.
            ref_boxes: ``[B, Q, 1, 4]`` reference boxes, cxcywh normalised.
            value: per level ``[B, n_head, D / n_head, H_l * W_l]`` (see ``split_value``).
            spatial_shapes: ``[(H_l, W_l)]`` per level.
            attn_mask: ``[Q, Q]`` bool, True where attention is forbidden (denoising groups).
            query_pos: ``[B, Q, D]`` positional embedding of the queries.

        Returns:
            ``[B, Q, D]``.
        """
        q = k = target if query_pos is None else target + query_pos
        attended, _ = self.self_attn(q, k, value=target, attn_mask=attn_mask)
        target = self.norm1(target + self.dropout1(attended))

        query = target if query_pos is None else target + query_pos
        sampled = self.cross_attn(query, ref_boxes, value, spatial_shapes)
        target = self.gateway(target, self.dropout2(sampled))

        ffn = self.linear2(self.dropout3(self.activation(self.linear1(target))))
        target = target + self.dropout4(ffn)
        return self.norm3(target.clamp(min=-_FP16_MAX, max=_FP16_MAX))
