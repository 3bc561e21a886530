"""deim.Detector: PIL images, paths, arrays and tensors of any size in; boxes in each image's pixels,
scores, labels and category names out; drawing with torchvision."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import deim
from tiny_model import TINY_LABELS, write_tiny_checkpoint


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    path = write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pth")
    return deim.Detector.from_pretrained(path, threshold=0.0)


def test_any_input_kind_and_size(det, tmp_path):
    Image.new("RGB", (200, 50), (10, 200, 30)).save(tmp_path / "wide.png")
    images = [Image.new("RGB", (64, 128), (90, 90, 90)), tmp_path / "wide.png", str(tmp_path / "wide.png"),
              torch.rand(3, 77, 33), (torch.rand(40, 60) * 255).to(torch.uint8),
              np.zeros((30, 45, 3), dtype=np.uint8)]
    results = det(images)
    assert len(results) == len(images)
    for image, result in zip([(64, 128), (200, 50), (200, 50), (33, 77), (60, 40), (45, 30)], results):
        w, h = image
        assert len(result) > 0 and result.boxes.shape == (len(result), 4)
        assert result.boxes[:, 0::2].min() >= 0 and result.boxes[:, 0::2].max() <= w + 1e-3
        assert result.boxes[:, 1::2].min() >= 0 and result.boxes[:, 1::2].max() <= h + 1e-3
        assert (result.scores[:-1] >= result.scores[1:]).all()  # best first
        assert result.names == [TINY_LABELS.names[i] for i in result.labels.tolist()]
        assert result.category_ids == [TINY_LABELS.category_ids[i] for i in result.labels.tolist()]


def test_single_image_batch_tensor_and_threshold(det):
    one = det(torch.rand(3, 50, 50))
    assert len(one) == 1
    batch = det(torch.rand(3, 3, 50, 70), batch_size=2)
    assert len(batch) == 3
    best = float(one[0].scores.max())
    assert len(det(torch.rand(3, 50, 50), threshold=1.01)[0]) == 0 and best <= 1.0
    assert det.class_names == TINY_LABELS.names and det.image_size == 96


def test_tensor_and_pil_image_give_the_same_boxes(det):
    """A [3, H, W] tensor and the PIL image it came from give the same boxes."""
    image = Image.fromarray((np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8))
    a = det(image)[0]
    b = det(torch.from_numpy(np.array(image)).permute(2, 0, 1))[0]
    torch.testing.assert_close(a.boxes, b.boxes)


def test_draw_returns_an_image_of_the_input_size(det):
    image = Image.new("RGB", (90, 60), (255, 255, 255))
    drawn = det.draw(image)
    assert isinstance(drawn, Image.Image) and drawn.size == (90, 60)
    assert np.asarray(drawn).min() < 255  # something was drawn
    empty = det.draw(image, det(image, threshold=2.0)[0])
    assert np.asarray(empty).min() == 255


def test_bad_input_is_named(det):
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        det(torch.rand(5, 10, 10))
    with pytest.raises(TypeError, match="PIL image, a path"):
        det(3.5)
