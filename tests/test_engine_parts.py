"""EMA, parameter groups and seeding of the training engine."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from deim.engine.ema import ModelEMA
from deim.engine.param_groups import OptimizerConfig, build_optimizer, param_groups
from deim.engine.seeding import rng_state, seed_everything, set_rng_state


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.encoder = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.decoder = nn.Linear(4, 2)


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_param_groups_follow_module_types():
    m = _Tiny()
    groups = {g["name"]: g for g in param_groups(m, OptimizerConfig(lr=1e-3, backbone_lr=1e-4, weight_decay=0.1))}
    assert _names(m, groups["backbone"]) == {"backbone.0.weight", "backbone.0.bias"}
    assert _names(m, groups["backbone_no_decay"]) == {"backbone.1.weight", "backbone.1.bias"}
    assert _names(m, groups["no_decay"]) == {"encoder.1.weight", "encoder.1.bias"}
    assert _names(m, groups["default"]) == {"encoder.0.weight", "encoder.0.bias", "decoder.weight", "decoder.bias"}
    assert groups["backbone"]["lr"] == 1e-4 and groups["backbone_no_decay"]["weight_decay"] == 0.0
    assert groups["no_decay"]["lr"] == 1e-3 and groups["default"]["weight_decay"] == 0.1
    # every trainable parameter exactly once
    assert sum(len(g["params"]) for g in groups.values()) == len(list(m.parameters()))


def test_param_groups_bias_option_and_frozen():
    m = _Tiny()
    m.backbone[0].weight.requires_grad_(False)
    cfg = OptimizerConfig(lr=1e-3, backbone_lr=1e-4, weight_decay=0.1, no_decay_bias=True)
    groups = {g["name"]: g for g in param_groups(m, cfg)}
    assert "backbone.0.weight" not in set().union(*(_names(m, g) for g in groups.values()))
    assert _names(m, groups["no_decay"]) == {"encoder.1.weight", "encoder.1.bias", "encoder.0.bias", "decoder.bias"}
    assert isinstance(build_optimizer(m, cfg), torch.optim.AdamW)


def test_ema_warmup_formula_and_restart():
    m = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(0.0)
    ema = ModelEMA(m, decay=0.9, warmups=2)
    with torch.no_grad():
        m.weight.fill_(1.0)
    ema.update(m)
    d1 = 0.9 * (1 - math.exp(-1 / 2))
    assert ema.module.weight.item() == pytest.approx(1 - d1)
    ema.restart(0.5)  # takes effect, unlike the official closure
    ema.update(m)
    d2 = 0.5 * (1 - math.exp(-2 / 2))
    assert ema.module.weight.item() == pytest.approx((1 - d1) * d2 + (1 - d2))
    state = ema.state_dict()
    other = ModelEMA(m, decay=0.1, warmups=7)
    other.load_state_dict(state)
    assert other.updates == 2 and other.decay == 0.5 and other.warmups == 2
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_tracks_buffers():
    m = nn.BatchNorm1d(2)
    ema = ModelEMA(m, decay=0.0, warmups=0)  # decay 0: the EMA is a copy
    m.train()
    m(torch.randn(8, 2) + 3.0)
    ema.update(m)
    assert torch.equal(ema.module.running_mean, m.running_mean)
    assert ema.module.num_batches_tracked == m.num_batches_tracked == 1


def test_seed_everything_and_rng_state_roundtrip():
    seed_everything(3)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    seed_everything(3, rank=1)
    assert torch.rand(1).item() != a[2]
    state = rng_state()
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == b
