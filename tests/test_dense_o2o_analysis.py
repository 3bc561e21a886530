"""The Dense O2O analysis behind notebooks 03/04: mode schedules, target counts, O2O positives."""
from __future__ import annotations

import numpy as np
import pytest

from deim.analysis.dense_o2o import (MODES, check_o2o_positives, mode_schedule, o2o_positives,
                                     positives_summary, sample_batch, targets_per_image)
from deim.data.aug_schedule import AugSchedule
from deim.data.fashion import build_fashion_detection


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    return build_fashion_detection(tmp_path_factory.mktemp("fashion"), "train", num_images=16)


def test_mode_schedules_force_the_mode():
    plain, mosaic, mixup, both = (mode_schedule(m, 320) for m in MODES)
    assert plain.stage(0) == "warmup" and plain.mixup_probability(0) == 0
    assert mosaic.stage(0) == "dense_o2o" and mosaic.mosaic_probability(0) == 1 and mosaic.mixup_probability(0) == 0
    assert mixup.mosaic_probability(0) == 0 and mixup.mixup_probability(0) == 1 and not mixup.policy_ops_enabled(0)
    assert both.mosaic_probability(0) == 1 and both.mixup_probability(0) == 1
    assert not any(s.multiscale_enabled(0) for s in (plain, mosaic, mixup, both))
    with pytest.raises(ValueError, match="unknown mode"):
        mode_schedule("cutmix", 320)


def test_mixup_batch_concatenates_the_partner_targets(fashion):
    plain_images, plain = sample_batch(*fashion, "plain", batch_size=4, image_size=160)
    _, mixed = sample_batch(*fashion, "mixup", batch_size=4, image_size=160)
    assert plain_images.shape == (4, 3, 160, 160)
    for i in range(4):  # image i is blended with image i-1 of the same batch
        assert len(mixed[i]["boxes"]) == len(plain[i]["boxes"]) + len(plain[i - 1]["boxes"])
        weights = mixed[i]["mixup"]
        assert 0.45 <= weights[0] <= 0.55 and np.isclose(weights[0] + weights[-1], 1.0)


def test_dense_o2o_raises_targets_per_image(fashion):
    standard = AugSchedule.baseline(stop_epoch=2, base_size=160, base_size_repeat=None)
    dense = AugSchedule(policy_epochs=(0, 1, 2), mixup_epochs=(0, 1), base_size=160, base_size_repeat=None)
    a = targets_per_image(*fashion, standard, epoch=0, batch_size=4)
    b = targets_per_image(*fashion, dense, epoch=0, batch_size=4)
    assert len(a) == len(b) == 16
    assert b.mean() > 1.5 * a.mean()
    again = targets_per_image(*fashion, dense, epoch=0, batch_size=4)
    assert np.array_equal(b, again)  # seeded


def test_o2o_positives_are_capped_targets_and_the_matcher_agrees():
    assert o2o_positives(np.array([0, 3, 500]), 300).tolist() == [0, 3, 300]
    assert check_o2o_positives([0, 1, 5, 12], num_queries=10, num_classes=3)
    table = positives_summary({"x": np.array([1, 2, 3])})
    assert table.loc[0, "mean"] == 2.0 and table.loc[0, "max"] == 3
