"""Boxes stay on their objects through every op, mosaic geometry, per-box fields stay consistent.

Objects are filled rectangles of a known colour on black; after a transform, the pixels of that
colour must fill the object's box up to the edge blur of resampling (``TOL`` pixels).
"""
from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from deim.data.mosaic import Mosaic, paste_quadrants
from deim.data.transforms import (bounding_boxes, horizontal_flip, iou_crop, sanitize, stretch_resize,
                                  to_model_inputs, zoom_out)

COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255))
TOL = 2.5


def rect_sample(idx: int, size: tuple[int, int] = (200, 160), rect: tuple[int, int, int, int] | None = None):
    """An image ``size = (w, h)`` with one filled rectangle of colour ``idx % 4``; label ``idx % 4``."""
    w, h = size
    x0, y0, x1, y1 = rect or (w // 4, h // 3, w // 4 + w // 3, h // 3 + h // 3)
    arr = torch.zeros(h, w, 3, dtype=torch.uint8)
    arr[y0:y1, x0:x1] = torch.tensor(COLOURS[idx % 4], dtype=torch.uint8)
    target = {"boxes": bounding_boxes(torch.tensor([[x0, y0, x1, y1]]), h, w),
              "labels": torch.tensor([idx % 4]), "area": torch.tensor([float((x1 - x0) * (y1 - y0))]),
              "iscrowd": torch.zeros(1, dtype=torch.int64), "image_id": torch.tensor(idx),
              "orig_size": torch.tensor([w, h])}
    return PIL.Image.fromarray(arr.numpy()), target


class RectSource:
    """Four images of different sizes, one coloured rectangle each."""

    sizes = ((200, 160), (120, 240), (300, 150), (160, 160))

    def __len__(self) -> int:
        return 4

    def load_item(self, idx: int):
        return rect_sample(idx, self.sizes[idx])


def colour_mask(image, label: int) -> torch.Tensor:
    """``[H, W]`` bool: pixels close to the colour of ``label`` (PIL image or [3, H, W] tensor)."""
    if isinstance(image, PIL.Image.Image):
        t = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
    else:
        t = image.float() * 255.0
    ref = torch.tensor(COLOURS[label], dtype=torch.float32)[:, None, None]
    return ((t - ref).abs() < 100).all(0) & (t.sum(0) > 100)


def assert_tight(image, boxes_xyxy: torch.Tensor, labels: torch.Tensor) -> None:
    """Each box matches the extent of its colour's pixels near it; every coloured pixel is boxed.

    A box clamped at the canvas border is only checked for coverage: torchvision's affine box is
    the clamped enclosing box of the rotated corners, looser than the visible part of an object
    rotated across the border (official behaviour).
    """
    for label in labels.unique().tolist():
        mask = colour_mask(image, label)
        height, width = mask.shape
        covered = torch.zeros_like(mask)
        for b in boxes_xyxy[labels == label]:
            x0, y0, x1, y1 = b.tolist()
            xa, ya = max(int(x0 - TOL), 0), max(int(y0 - TOL), 0)
            xb, yb = int(x1 + TOL) + 1, int(y1 + TOL) + 1
            near = torch.zeros_like(mask)
            near[ya:yb, xa:xb] = mask[ya:yb, xa:xb]
            covered |= near
            inside = x0 > TOL and y0 > TOL and x1 < width - TOL and y1 < height - TOL
            if not inside or x1 - x0 < 4 or y1 - y0 < 4:
                continue
            ys, xs = torch.nonzero(near, as_tuple=True)
            assert len(xs), f"no pixels of colour {label} in box {b.tolist()}"
            extent = [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
            assert max(abs(e - v) for e, v in zip(extent, b.tolist())) <= TOL, (extent, b.tolist())
        stray = mask & ~covered
        assert stray.sum() <= 2 * TOL * height, f"{int(stray.sum())} pixels of colour {label} outside boxes"


def xyxy(target) -> torch.Tensor:
    return target["boxes"].as_subclass(torch.Tensor)


@pytest.mark.parametrize("op", [horizontal_flip(p=1.0), stretch_resize(96), stretch_resize(320)])
def test_deterministic_ops_keep_boxes_tight(op):
    img, t = rect_sample(3, (200, 160), (30, 20, 110, 70))
    out_img, out_t = op(img, t)
    assert_tight(out_img, xyxy(out_t), out_t["labels"])


def test_random_geometric_ops_keep_boxes_tight():
    torch.manual_seed(0)
    zoom = zoom_out(fill=0)
    crop = iou_crop(p=1.0)
    clean = sanitize()
    checked = 0
    for trial in range(20):
        img, t = rect_sample(trial, (200, 160), (40 + trial, 30, 150, 100 + trial))
        for op in (zoom, crop, clean):
            img, t = op(img, t)
        assert_tight(img, xyxy(t), t["labels"])
        checked += len(t["labels"])
        assert len(t["labels"]) == len(t["area"]) == len(t["iscrowd"]) == len(t["boxes"])
    assert checked >= 10


def test_sanitize_drops_the_same_rows_from_every_per_box_field():
    boxes = torch.tensor([[0, 0, 10, 10], [5, 5, 5.5, 9], [1, 1, 19, 19]])
    t = {"boxes": bounding_boxes(boxes, 20, 20), "labels": torch.tensor([1, 2, 3]),
         "area": torch.tensor([1.0, 2.0, 3.0]), "iscrowd": torch.tensor([0, 0, 1]), "image_id": torch.tensor(4)}
    _, out = sanitize(min_size=1)(PIL.Image.new("RGB", (20, 20)), t)
    assert out["labels"].tolist() == [1, 3] and out["area"].tolist() == [1.0, 3.0]
    assert out["iscrowd"].tolist() == [0, 1] and int(out["image_id"]) == 4


def test_to_model_inputs_gives_float_image_and_normalised_cxcywh():
    img, t = rect_sample(0, (200, 100), (20, 10, 60, 50))
    image, out = to_model_inputs(img, t)
    assert image.dtype == torch.float32 and image.shape == (3, 100, 200) and type(image) is torch.Tensor
    assert image.max() == 1.0 and image.min() == 0.0
    assert torch.allclose(out["boxes"], torch.tensor([[0.2, 0.3, 0.2, 0.4]]))
    assert type(out["boxes"]) is torch.Tensor


def test_paste_quadrants_geometry_and_concatenated_targets():
    tiles = [RectSource().load_item(i) for i in range(4)]  # sizes (200,160) (120,240) (300,150) (160,160)
    canvas, t = paste_quadrants(tiles)
    assert canvas.size == (600, 480)  # 2 * max_w, 2 * max_h
    offsets = torch.tensor([[0, 0], [300, 0], [0, 240], [300, 240]]).repeat(1, 2)
    expected = torch.cat([xyxy(tt) for _, tt in tiles]) + offsets
    assert torch.equal(xyxy(t), expected) and t["boxes"].canvas_size == (480, 600)
    assert t["labels"].tolist() == [0, 1, 2, 3] and len(t["area"]) == len(t["iscrowd"]) == 4
    assert int(t["image_id"]) == 0 and t["orig_size"].tolist() == [200, 160]  # per-image fields of the sample
    assert_tight(canvas, xyxy(t), t["labels"])


@pytest.mark.parametrize("use_cache", [False, True])
def test_mosaic_keeps_boxes_tight_through_resize_and_affine(use_cache):
    torch.manual_seed(1)
    source = RectSource()
    mosaic = Mosaic(output_size=160, use_cache=use_cache, max_cached_images=3)
    for i in range(12):
        img, t = mosaic(*source.load_item(i % 4), source)
        assert len(t["labels"]) == 4 == len(t["area"]) == len(t["iscrowd"])  # sample + 3 partners
        h, w = t["boxes"].canvas_size
        assert (img.size[1], img.size[0]) == (h, w) and min(h, w) >= 2 * 160
        img, t = sanitize()(img, t)
        assert_tight(img, xyxy(t), t["labels"])
    if use_cache:
        assert len(mosaic.cache) == 3


def test_mosaic_cache_evicts_at_random_but_never_the_newest():
    torch.manual_seed(0)
    source = RectSource()
    mosaic = Mosaic(output_size=64, use_cache=True, max_cached_images=2)
    for i in range(20):
        img, t = source.load_item(i % 4)
        mosaic(img, t, source)
        assert len(mosaic.cache) == min(i + 1, 2)
        assert int(mosaic.cache[-1][1]["image_id"]) == i % 4


def test_mosaic_without_cache_reads_partners_from_the_dataset():
    class CountingSource(RectSource):
        def __init__(self):
            self.loaded = []

        def load_item(self, idx):
            self.loaded.append(idx)
            return super().load_item(idx)

    source = CountingSource()
    torch.manual_seed(0)
    Mosaic(output_size=64)(*rect_sample(0), source)
    assert len(source.loaded) == 3 and all(0 <= i < 4 for i in source.loaded)


def test_fast_iou_crop_picks_the_same_crops_as_torchvision():
    """Same generator state -> same crop (or same "leave as is") as torchvision's RandomIoUCrop,
    over canvases and boxes of many sizes, including zoomed-out canvases where most trials fail."""
    import torchvision.transforms.v2 as T
    from torchvision import tv_tensors

    from deim.data.iou_crop import FastIoUCrop

    gen = torch.Generator().manual_seed(0)
    fast, reference = FastIoUCrop(), T.RandomIoUCrop()
    cropped = 0
    for case in range(400):
        h, w = (int(v) for v in torch.randint(32, 400, (2,), generator=gen))
        n = int(torch.randint(1, 6, (1,), generator=gen))
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.9
        wh = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.5 + 1
        boxes = tv_tensors.BoundingBoxes(torch.cat([xy, (xy + wh).minimum(torch.tensor([w, h]))], 1),
                                         format="XYXY", canvas_size=(h, w))
        image = tv_tensors.Image(torch.zeros(1, h, w))
        torch.manual_seed(case)
        expected = reference.make_params([image, boxes])
        torch.manual_seed(case)
        got = fast.make_params([image, boxes])
        assert expected.keys() == got.keys(), case
        if expected:
            cropped += 1
            for key in ("top", "left", "height", "width"):
                assert got[key] == expected[key], (case, key)
            assert torch.equal(got["is_within_crop_area"], expected["is_within_crop_area"]), case
    assert cropped > 100


def test_fast_iou_crop_consumes_the_same_random_stream():
    import torchvision.transforms.v2 as T
    from torchvision import tv_tensors

    from deim.data.iou_crop import FastIoUCrop

    boxes = tv_tensors.BoundingBoxes(torch.tensor([[2.0, 3.0, 9.0, 12.0]]), format="XYXY", canvas_size=(300, 280))
    image = tv_tensors.Image(torch.zeros(1, 300, 280))
    for seed in range(50):
        torch.manual_seed(seed)
        T.RandomIoUCrop().make_params([image, boxes])
        after_reference = torch.rand(())
        torch.manual_seed(seed)
        FastIoUCrop().make_params([image, boxes])
        assert torch.rand(()) == after_reference
