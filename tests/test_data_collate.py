"""Batch collation: MixUp (formula, merged targets, weights), multi-scale, epoch gating, seeding."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deim.data.aug_schedule import AugSchedule
from deim.data.collate import BatchCollator, mixup, stack_batch
from deim.data.epoch import SharedEpoch


def make_items(counts: list[int], size: int = 192) -> list[tuple[torch.Tensor, dict]]:
    g = torch.Generator().manual_seed(sum(counts))
    items = []
    for i, n in enumerate(counts):
        boxes = torch.rand(n, 4, generator=g)
        items.append((torch.rand(3, size, size, generator=g),
                      {"boxes": boxes, "labels": torch.arange(n) + 10 * i, "area": torch.full((n,), float(i)),
                       "iscrowd": torch.zeros(n, dtype=torch.int64), "image_id": torch.tensor(100 + i),
                       "orig_size": torch.tensor([size, size])}))
    return items


def schedule(**kw) -> AugSchedule:
    args = dict(policy_epochs=(1, 3, 5), mixup_epochs=(1, 3), mixup_prob=1.0, base_size=192, base_size_repeat=2)
    args.update(kw)
    return AugSchedule(**args)


def test_mixup_formula_and_merged_targets():
    items = make_items([2, 3, 1])
    images, targets = stack_batch(items)
    mixed, out = mixup(images, targets, beta=0.47)
    for i in range(3):
        j = (i - 1) % 3  # image i is mixed with image i-1 (roll by one)
        assert torch.allclose(mixed[i], 0.47 * images[i] + 0.53 * images[j], atol=1e-6)
        n_i, n_j = len(targets[i]["labels"]), len(targets[j]["labels"])
        assert len(out[i]["boxes"]) == len(out[i]["labels"]) == len(out[i]["area"]) == n_i + n_j
        assert torch.equal(out[i]["boxes"], torch.cat([targets[i]["boxes"], targets[j]["boxes"]]))
        assert out[i]["labels"].tolist() == targets[i]["labels"].tolist() + targets[j]["labels"].tolist()
        assert torch.allclose(out[i]["mixup"], torch.tensor([0.47] * n_i + [0.53] * n_j))
        assert out[i]["image_id"] == targets[i]["image_id"]  # per-image fields are the image's own
    assert [len(t["labels"]) for t in out] == [3, 5, 4]


def test_collator_mixes_only_inside_mixup_epochs():
    sched = schedule()
    collator = BatchCollator(sched, seed=0)
    counts = [2, 3, 1, 4]
    for epoch, expect_mixed in [(0, False), (1, True), (2, True), (3, False)]:
        collator.set_epoch(epoch)
        _, targets = collator(make_items(counts))
        assert all(("mixup" in t) == expect_mixed for t in targets), epoch
        if expect_mixed:
            assert [len(t["labels"]) for t in targets] == [n + counts[i - 1] for i, n in enumerate(counts)]
            betas = {round(float(t["mixup"][0]), 6) for t in targets}
            assert len(betas) == 1 and 0.45 <= betas.pop() <= 0.55


def test_mixup_probability_is_per_batch():
    collator = BatchCollator(schedule(mixup_prob=0.5, base_size_repeat=None), seed=3)
    collator.set_epoch(1)
    mixed = 0
    for b in range(200):
        items = make_items([1, 1])
        for k, (_, t) in enumerate(items):
            t["image_id"] = torch.tensor(2 * b + k)
        mixed += "mixup" in collator(items)[1][0]
    assert 70 < mixed < 130


def test_batch_of_one_is_never_mixed():
    collator = BatchCollator(schedule(), seed=0)
    collator.set_epoch(1)
    _, targets = collator(make_items([3]))
    assert "mixup" not in targets[0] and len(targets[0]["labels"]) == 3


def test_multiscale_resizes_with_nearest_until_the_stop_epoch():
    sched = schedule(mixup_prob=0.0)
    collator = BatchCollator(sched, seed=0)
    seen = set()
    for epoch in range(5):
        collator.set_epoch(epoch)
        for b in range(12):
            items = make_items([1, 2])
            for k, (_, t) in enumerate(items):
                t["image_id"] = torch.tensor(10 * b + k)
            images, targets = collator(items)
            seen.add(images.shape[-1])
            if images.shape[-1] != 192:
                expected = F.interpolate(torch.stack([x for x, _ in items]), size=images.shape[-1], mode="nearest")
                assert torch.equal(images, expected)
            assert torch.equal(targets[1]["boxes"], items[1][1]["boxes"])  # normalised: unchanged
    assert seen <= set(sched.multiscale_sizes()) and len(seen) > 3
    collator.set_epoch(5)  # stop epoch: base size only
    assert collator(make_items([1, 2]))[0].shape[-1] == 192


def test_collation_is_seeded_by_epoch_and_image_ids():
    a, b = BatchCollator(schedule(mixup_prob=0.5), seed=7), BatchCollator(schedule(mixup_prob=0.5), seed=7)
    a.set_epoch(1)
    b.set_epoch(1)
    out_a, out_b = a(make_items([2, 3])), b(make_items([2, 3]))
    assert torch.equal(out_a[0], out_b[0]) and out_a[1][0].keys() == out_b[1][0].keys()
    shapes = set()
    for seed in range(8):
        c = BatchCollator(schedule(mixup_prob=0.5), seed=seed)
        c.set_epoch(1)
        shapes.add((tuple(c(make_items([2, 3]))[0].shape), "mixup" in c(make_items([2, 3]))[1][0]))
    assert len(shapes) > 1


def test_shared_epoch_counter_and_errors():
    counter = SharedEpoch(2)
    collator = BatchCollator(schedule(), epoch=counter)
    counter.set(4)
    assert collator.epoch == 4
    with pytest.raises(ValueError, match="non-negative"):
        counter.set(-1)
    with pytest.raises(ValueError, match="same shape"):
        stack_batch([(torch.zeros(3, 4, 4), {}), (torch.zeros(3, 8, 8), {})])
    items = make_items([1, 1])
    del items[0][1]["image_id"]
    with pytest.raises(ValueError, match="image_id"):
        collator(items)
