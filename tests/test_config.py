"""Run configuration: presets, epoch rescaling, YAML round trip and key=value overrides."""
from __future__ import annotations

import pytest
import yaml

from deim.engine.config import TrainConfig, apply_overrides, rescale_epochs
from deim.presets.catalog import get_preset


def test_from_preset_uses_the_paper_schedule():
    cfg = TrainConfig.from_preset("deim_dfine_l")
    assert cfg.resolved_schedule() == get_preset("deim_dfine_l").schedule


def test_rescale_keeps_the_shape():
    s = rescale_epochs(get_preset("deim_dfine_l").schedule, 29)  # half of 58
    assert s.epochs == 29
    assert s.aug.policy_epochs == (2, 14, 25) and s.aug.mixup_epochs == (2, 14)
    assert s.flat_epoch == 14 and s.no_aug_epoch == 4
    short = rescale_epochs(get_preset("deim_dfine_s").schedule, 12)
    e0, e1, e2 = short.aug.policy_epochs
    assert 1 <= e0 < e1 < e2 < 12
    base = rescale_epochs(get_preset("dfine_s").schedule, 12)  # baselines keep a constant LR
    assert base.flat_epoch > base.epochs and base.aug.policy_epochs[:2] == (0, 0)


def test_batch_scaling_and_yaml_roundtrip():
    cfg = TrainConfig.from_preset("deim_dfine_s", epochs=12, batch_size=8)
    assert cfg.resolved_schedule().lr == pytest.approx(4e-4 / 4)
    back = TrainConfig.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert back.to_dict() == cfg.to_dict()


def test_overrides():
    cfg = TrainConfig.from_preset("deim_dfine_n")
    new = apply_overrides(cfg, ["data.num_workers=0", "schedule.lr=0.001", "model.num_classes=5", "seed=3"])
    assert new.data.num_workers == 0 and new.resolved_schedule().lr == 0.001
    assert new.model == {"num_classes": 5} and new.seed == 3
    with pytest.raises(ValueError, match="unknown config key 'data.nope'"):
        apply_overrides(cfg, ["data.nope=1"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(cfg, ["seed"])
    with pytest.raises(ValueError, match="data.dataset"):
        apply_overrides(cfg, ["data.dataset=voc"])


def test_standard_ops_override_and_yaml_roundtrip():
    """``--set schedule.aug.standard_ops=[...]`` chooses RT-DETR's ops by name (a tuple, validated)
    and survives the config's YAML round trip, as every checkpoint stores it."""
    cfg = TrainConfig.from_schedule("deim_dfine_n", get_preset("deim_dfine_n").schedule)
    assert cfg.resolved_schedule().aug.standard_ops == ("photometric_distort", "zoom_out", "iou_crop")
    none = apply_overrides(cfg, ["schedule.aug.standard_ops=[]"])
    assert none.resolved_schedule().aug.standard_ops == ()
    one = apply_overrides(cfg, ["schedule.aug.standard_ops=[photometric_distort]"])
    back = TrainConfig.from_dict(yaml.safe_load(one.to_yaml()))
    assert back.resolved_schedule().aug.standard_ops == ("photometric_distort",)
    with pytest.raises(ValueError, match="not among"):
        apply_overrides(cfg, ["schedule.aug.standard_ops=[zoom]"])
