"""LR (flat-cosine) and data-augmentation schedules, and the per-preset paper schedules."""
from __future__ import annotations

import math

import pytest
import torch

from deim.data.aug_schedule import AugSchedule
from deim.engine.lr_schedule import FlatCosine, FlatCosineScheduler, flat_cosine_lr
from deim.presets.catalog import get_preset, list_presets


def test_flat_cosine_phases():
    kw = dict(total_iter=1000, warmup_iter=100, flat_iter=400, no_aug_iter=200, init_lr=1.0, min_lr=0.5)
    assert flat_cosine_lr(0, **kw) == 0.0
    assert flat_cosine_lr(50, **kw) == pytest.approx(0.25)  # quadratic: (50/100)^2
    assert flat_cosine_lr(100, **kw) == pytest.approx(1.0)
    assert flat_cosine_lr(400, **kw) == pytest.approx(1.0)
    # cosine runs over [400, 800): half way is the mean of init and min
    assert flat_cosine_lr(600, **kw) == pytest.approx(0.75)
    assert flat_cosine_lr(799, **kw) == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi * 399 / 400)))
    assert flat_cosine_lr(800, **kw) == 0.5
    assert flat_cosine_lr(999, **kw) == 0.5


def test_flat_cosine_is_monotone_after_warmup():
    sched = FlatCosine(iters_per_epoch=10, epochs=20, flat_epoch=8, no_aug_epoch=4, warmup_iter=20, lr_gamma=0.1)
    lrs = [sched.lr_at(i, 1.0) for i in range(sched.total_iter)]
    assert all(a <= b for a, b in zip(lrs[:20], lrs[1:21]))
    assert all(a >= b - 1e-12 for a, b in zip(lrs[20:], lrs[21:]))
    assert lrs[-1] == pytest.approx(0.1)


def test_official_l_per_group_values():
    """Reference §4: DEIM-D-FINE-L with 100 it/epoch: groups at [2.5e-5, 5e-4, 5e-4] when flat,
    [1.25e-5, 2.5e-4, 2.5e-4] from iteration 5000 on."""
    s = get_preset("deim_dfine_l").schedule
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    opt = torch.optim.AdamW([{"params": [params[0]], "lr": s.backbone_lr}, {"params": [params[1]]},
                             {"params": [params[2]]}], lr=s.lr)
    sched = FlatCosineScheduler(opt, FlatCosine.of(s, iters_per_epoch=100))
    sched.step(2500)
    assert sched.get_last_lr() == pytest.approx([2.5e-5, 5e-4, 5e-4])
    for it in (5000, 5799):
        sched.step(it)
        assert sched.get_last_lr() == pytest.approx([1.25e-5, 2.5e-4, 2.5e-4])


def test_aug_schedule_stages_and_probabilities():
    a = AugSchedule(policy_epochs=(4, 29, 50), mixup_epochs=(4, 29), mosaic_prob=0.5, mixup_prob=0.5)
    assert [a.stage(e) for e in (0, 3, 4, 28, 29, 49, 50, 57)] == [
        "warmup", "warmup", "dense_o2o", "dense_o2o", "standard", "standard", "no_aug", "no_aug"]
    assert a.mosaic_probability(3) == 0 and a.mosaic_probability(4) == 0.5 and a.mosaic_probability(29) == 0
    assert a.mixup_probability(3) == 0 and a.mixup_probability(28) == 0.5 and a.mixup_probability(29) == 0
    assert not a.policy_ops_enabled(3) and a.policy_ops_enabled(4) and a.policy_ops_enabled(49)
    assert not a.policy_ops_enabled(50)
    assert a.multiscale_enabled(49) and not a.multiscale_enabled(50)


def test_multiscale_sizes_official_list():
    a = AugSchedule(policy_epochs=(4, 29, 50), base_size_repeat=3)
    assert a.multiscale_sizes() == [480, 512, 544, 576, 608, 640, 640, 640, 800, 768, 736, 704, 672]
    n = AugSchedule(policy_epochs=(4, 78, 148), base_size_repeat=None)
    assert n.multiscale_sizes() == [640] and not n.multiscale_enabled(0)
    small = AugSchedule(policy_epochs=(4, 29, 50), base_size=320, base_size_repeat=2)
    assert small.multiscale_sizes() == [224, 256, 288, 320, 320, 384, 352, 320]  # not ±5 steps of 32


def test_from_epochs_rule_matches_dfine_presets():
    """flat_epoch = e1 = 4 + stop_epoch // 2 for the D-FINE-based DEIM presets (S, M, L, X)."""
    for name, no_aug in [("deim_dfine_s", 12), ("deim_dfine_m", 12), ("deim_dfine_l", 8), ("deim_dfine_x", 8)]:
        s = get_preset(name).schedule
        derived = AugSchedule.from_epochs(s.epochs, no_aug)
        assert derived.policy_epochs == s.aug.policy_epochs, name
        assert derived.mixup_epochs == s.aug.mixup_epochs
        assert s.flat_epoch == s.aug.policy_epochs[1]


def test_resnet_presets_end_dense_o2o_at_half_the_epochs():
    for name in ("deim_rtdetrv2_r18", "deim_rtdetrv2_r34", "deim_rtdetrv2_r50", "deim_rtdetrv2_r101"):
        s = get_preset(name).schedule
        assert s.aug.policy_epochs[1] == 4 + s.epochs // 2 == s.flat_epoch
        assert s.stop_epoch == s.epochs - s.no_aug_epoch


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_is_consistent(name):
    s = get_preset(name).schedule
    assert s.stop_epoch <= s.epochs
    assert s.backbone_lr <= s.lr
    if name.startswith("deim_"):
        assert s.aug.mosaic_prob == 0.5 and s.aug.mixup_prob == 0.5 and s.aug.policy_epochs[0] == 4
        assert s.stop_epoch == s.epochs - s.no_aug_epoch
    else:  # baselines: no Dense O2O, constant LR after warm-up
        assert s.aug.mosaic_probability(10) == 0 and s.aug.mixup_probability(10) == 0
        lr = FlatCosine.of(s, 100)
        assert lr.lr_at(s.warmup_iter + 1, 1.0) == lr.lr_at(s.epochs * 100 - 1, 1.0) == 1.0


def test_bad_values_raise():
    with pytest.raises(ValueError, match="policy_epochs"):
        AugSchedule(policy_epochs=(10, 5, 20))
    with pytest.raises(ValueError, match="mosaic_prob"):
        AugSchedule(policy_epochs=(1, 2, 3), mosaic_prob=1.5)
    with pytest.raises(ValueError, match="unknown model preset"):
        get_preset("deim_dfine_q").schedule
    with pytest.raises(ValueError, match="shorter than the warm-up"):
        AugSchedule.from_epochs(5, 3)


def test_linear_batch_scaling():
    s = get_preset("deim_dfine_s").schedule.scaled_to_batch(64)
    assert s.lr == pytest.approx(8e-4) and s.backbone_lr == pytest.approx(4e-4) and s.total_batch_size == 64
