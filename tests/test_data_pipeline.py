"""The epoch-aware pipeline: ops per stage, boxes through the whole pipeline, seeding, and the
epoch reaching persistent DataLoader workers."""
from __future__ import annotations

import json
import os

import pytest
import torch

from deim.data.aug_schedule import AugSchedule
from deim.data.coco import CocoDetection
from deim.data.collate import BatchCollator
from deim.data.loaders import build_train_loader, build_val_loader
from deim.data.pipeline import TrainTransforms, ValTransforms, build_train_transforms
from deim.data.transforms import ContextTransform, SampleContext, bounding_boxes

from test_data_transforms import RectSource, assert_tight

SCHEDULE = AugSchedule(policy_epochs=(2, 4, 6), mixup_epochs=(2, 4), mosaic_prob=0.5, mixup_prob=0.5,
                       base_size=320, base_size_repeat=3)


def test_ops_per_stage():
    tf = build_train_transforms(SCHEDULE, 320)
    tail = ("sanitize", "horizontal_flip", "resize", "sanitize")
    standard = ("photometric_distort", "zoom_out", "iou_crop", *tail)
    assert tf.plan(0, with_mosaic=False) == tail  # warm-up: no policy ops
    assert tf.plan(2, with_mosaic=True) == ("mosaic", "photometric_distort", *tail)
    assert tf.plan(3, with_mosaic=False) == standard
    assert tf.plan(4, with_mosaic=False) == standard  # standard stage
    assert tf.plan(6, with_mosaic=False) == tail  # no_aug
    assert tf.mosaic is not None and tf.mosaic.output_size == 160
    assert build_train_transforms(AugSchedule.baseline(5), 320).mosaic is None


def test_standard_ops_choose_the_rt_detr_augmentation():
    """``standard_ops`` picks the ops of the Dense O2O and standard stages; a mosaic sample keeps the
    photometric distort only when it is listed; unknown ops are refused."""
    import dataclasses

    tail = ("sanitize", "horizontal_flip", "resize", "sanitize")
    none = build_train_transforms(dataclasses.replace(SCHEDULE, standard_ops=()), 320)
    assert none.plan(2, with_mosaic=True) == ("mosaic", *tail)
    assert none.plan(3, with_mosaic=False) == tail and none.plan(4, with_mosaic=False) == tail
    distort = build_train_transforms(dataclasses.replace(SCHEDULE, standard_ops=("photometric_distort",)), 320)
    assert distort.plan(2, with_mosaic=True) == ("mosaic", "photometric_distort", *tail)
    assert distort.plan(4, with_mosaic=False) == ("photometric_distort", *tail)
    with pytest.raises(ValueError, match="not among"):
        dataclasses.replace(SCHEDULE, standard_ops=("zoom_in",))


def test_mosaic_fraction_follows_the_schedule():
    tf = build_train_transforms(SCHEDULE, 320)
    source = RectSource()
    counts = {}
    for epoch in (1, 2, 4):
        n = [len(tf(*source.load_item(i % 4), SampleContext(epoch, i, source))[1]["labels"]) for i in range(40)]
        counts[epoch] = sum(k == 4 for k in n)  # a mosaic holds the 4 tiles' objects
    assert counts[1] == 0 and counts[4] == 0
    assert 10 <= counts[2] <= 30


def test_warmup_epoch_is_only_flip_and_resize():
    tf = build_train_transforms(SCHEDULE, 320)
    source = RectSource()
    img, t = source.load_item(0)
    expected = [ValTransforms(320)(img, t)[0]]
    expected.append(expected[0].flip(-1))
    for i in range(6):
        out, _ = tf(img, t, SampleContext(0, i, source))
        assert any(torch.equal(out, e) for e in expected)


@pytest.mark.parametrize("epoch", [0, 2, 3, 4, 6])
def test_boxes_follow_objects_through_the_whole_pipeline(epoch):
    tf = TrainTransforms(SCHEDULE, 320, mosaic=build_train_transforms(SCHEDULE, 320).mosaic, distort_p=0.0)
    source = RectSource()
    for i in range(6):
        image, target = tf(*source.load_item(i % 4), SampleContext(epoch, i, source))
        assert image.shape == (3, 320, 320) and image.dtype == torch.float32
        boxes = target["boxes"] * 320
        pixels = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1)
        assert_tight(image, pixels, target["labels"])
        assert len(target["labels"]) == len(target["area"]) == len(target["iscrowd"]) == len(boxes)


def test_same_seed_same_sample_and_rng_state_is_restored():
    source = RectSource()
    a, b, c = (build_train_transforms(SCHEDULE, 320, seed=s) for s in (5, 5, 6))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    outs = [tf(*source.load_item(1), SampleContext(3, 1, source)) for tf in (a, b, c)]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1]["boxes"], outs[1][1]["boxes"])
    assert not torch.equal(outs[0][0], outs[2][0])
    other_epoch = a(*source.load_item(1), SampleContext(4, 1, source))
    assert not torch.equal(outs[0][0], other_epoch[0])


def write_rect_dataset(root, n: int = 8):
    folder = root / "images"
    folder.mkdir()
    images, anns = [], []
    for i in range(n):
        img, t = RectSource().load_item(i % 4)
        img.save(folder / f"{i}.png")
        x0, y0, x1, y1 = t["boxes"][0].tolist()
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": img.size[0], "height": img.size[1]})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": i % 4, "bbox": [x0, y0, x1 - x0, y1 - y0],
                     "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    cats = [{"id": k, "name": f"c{k}"} for k in range(4)]
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return folder, root / "ann.json"


class RecordEpoch(ContextTransform):
    """Records the epoch and the worker's pid the sample was transformed in."""

    def __call__(self, image, target, context):
        image, target = ValTransforms(64)(image, target)
        target["epoch"] = torch.tensor(context.epoch)
        target["pid"] = torch.tensor(os.getpid())
        return image, target


def test_persistent_workers_see_the_new_epoch(tmp_path):
    folder, ann = write_rect_dataset(tmp_path)
    ds = CocoDetection(folder, ann, transforms=RecordEpoch())
    sched = AugSchedule(policy_epochs=(0, 0, 9), mixup_epochs=(1, 2), mixup_prob=1.0, base_size=64,
                        base_size_repeat=None)
    loader = build_train_loader(ds, BatchCollator(sched, epoch=ds.epoch_counter), batch_size=2, num_workers=2,
                                persistent_workers=True)
    pids = {}
    for epoch in range(3):
        loader.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == 4
        targets = [t for _, ts in batches for t in ts]
        assert {int(t["epoch"]) for t in targets} == {epoch}
        assert all(("mixup" in t) == (epoch == 1) for t in targets)  # the collator follows too
        pids[epoch] = {int(t["pid"]) for t in targets}
    assert os.getpid() not in pids[0] and pids[0] == pids[2]  # the same worker processes throughout


def test_loader_output_does_not_depend_on_the_number_of_workers(tmp_path):
    folder, ann = write_rect_dataset(tmp_path)
    batches = {}
    for workers in (0, 2):
        ds = CocoDetection(folder, ann, transforms=build_train_transforms(SCHEDULE, 128, seed=1))
        loader = build_train_loader(ds, BatchCollator(SCHEDULE, epoch=ds.epoch_counter, seed=1), batch_size=4,
                                    num_workers=workers, seed=1)
        loader.set_epoch(2)
        batches[workers] = list(loader)
    assert len(batches[0]) == len(batches[2])
    for (xa, ta), (xb, tb) in zip(batches[0], batches[2]):
        assert torch.equal(xa, xb)
        for a, b in zip(ta, tb):  # every field comes back a tensor of the same dtype, shape and values
            assert type(b) is dict and a.keys() == b.keys()
            for key in a:
                assert isinstance(b[key], type(a[key])), key
                if isinstance(a[key], torch.Tensor):
                    assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_val_loader_keeps_order_and_original_sizes(tmp_path):
    folder, ann = write_rect_dataset(tmp_path, n=5)
    loader = build_val_loader(CocoDetection(folder, ann, transforms=ValTransforms(96)), batch_size=2, num_workers=0)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [2, 2, 1] and batches[0][0].shape[-1] == 96
    ids = [int(t["image_id"]) for _, ts in batches for t in ts]
    assert ids == [1, 2, 3, 4, 5]
    assert batches[0][1][1]["orig_size"].tolist() == [120, 240]


class EmptySource:
    """Negative images (no boxes): every stage, mosaic included, must cope."""

    def __len__(self) -> int:
        return 3

    def load_item(self, idx: int):
        img, t = RectSource().load_item(idx)
        return img, {**t, "boxes": bounding_boxes(torch.zeros(0, 4), img.size[1], img.size[0]),
                     "labels": t["labels"][:0], "area": t["area"][:0], "iscrowd": t["iscrowd"][:0]}


@pytest.mark.parametrize("epoch", [0, 2, 4, 6])
def test_negative_images_pass_every_stage_and_mixup(epoch):
    tf = build_train_transforms(SCHEDULE, 128)
    source = EmptySource()
    items = [tf(*source.load_item(i), SampleContext(epoch, i, source)) for i in range(3)]
    assert all(t["boxes"].shape == (0, 4) and t["labels"].shape == (0,) for _, t in items)
    collator = BatchCollator(AugSchedule(policy_epochs=(0, 9, 9), mixup_epochs=(0, 9), mixup_prob=1.0,
                                         base_size=128, base_size_repeat=None))
    images, targets = collator(items)
    assert images.shape == (3, 3, 128, 128) and all(t["mixup"].shape == (0,) for t in targets)
