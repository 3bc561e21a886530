"""The built-in Fashion-MNIST detection data: tight boxes, splits, caching, statistics, errors."""
from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest

from deim.data import fashion_mnist
from deim.data.coco import CocoDetection
from deim.data.fashion import FASHION_SCALES, build_fashion_detection, fashion_splits
from deim.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx
from deim.data.statistics import dataset_statistics


def have_fashion_mnist() -> bool:
    try:
        fashion_mnist.fashion_mnist_dir()
    except FileNotFoundError:
        return False
    return True


needs_fashion = pytest.mark.skipif(not have_fashion_mnist(), reason="Fashion-MNIST IDX files not installed")


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture()
def fake_fashion(tmp_path, monkeypatch):
    """Tiny uncompressed IDX files: train items are all class 0, t10k items all class 7."""
    folder = tmp_path / "idx"
    folder.mkdir()
    item = np.zeros((28, 28), np.uint8)
    item[4:24, 8:20] = 200
    for split, label in (("train", 0), ("t10k", 7)):
        write_idx(folder / f"{split}-images-idx3-ubyte", np.stack([item] * 5))
        write_idx(folder / f"{split}-labels-idx1-ubyte", np.full(5, label))
    monkeypatch.setenv("DEIM_FASHION_MNIST", str(folder))
    return folder


def test_missing_files_explain_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("DEIM_FASHION_MNIST", str(tmp_path))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=r"apt-get install -y dataset-fashion-mnist.*DEIM_FASHION_MNIST"):
        load_fashion_mnist("train")
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("test")


def test_read_idx_rejects_a_bad_file(tmp_path):
    bad = tmp_path / "x-idx1-ubyte"
    bad.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(ValueError, match="header says shape"):
        read_idx(bad)


def test_train_and_val_draw_from_their_own_split(tmp_path, fake_fashion):
    splits = {s: build_fashion_detection(tmp_path / "cache", s, 6, image_size=96, scale_range=(0.8, 1.5))
              for s in ("train", "val")}
    for split, category in (("train", 1), ("val", 8)):
        data = json.loads(splits[split][1].read_text())
        assert {a["category_id"] for a in data["annotations"]} == {category}
        assert [c["name"] for c in data["categories"]] == list(FASHION_MNIST_CLASSES)


@needs_fashion
def test_smoke_scale_boxes_are_tight_on_the_saved_images(tmp_path):
    kwargs = dict(num_images=FASHION_SCALES["smoke"]["val"], image_size=160, seed=3)
    img_dir, ann = build_fashion_detection(tmp_path, "val", **kwargs)
    clean_dir, clean_ann = build_fashion_detection(tmp_path, "val", background=False, **kwargs)
    with_bg, without_bg = json.loads(ann.read_text()), json.loads(clean_ann.read_text())
    assert with_bg["annotations"] == without_bg["annotations"]  # the background has its own random stream
    ds = CocoDetection(clean_dir, clean_ann)
    textured = np.asarray(PIL.Image.open(img_dir / ds.file_names[0]))
    assert (textured > 0).mean() > 0.95  # the real images are textured everywhere
    checked = 0
    for idx in range(len(ds)):
        image, target = ds.load_item(idx)
        pixels = np.asarray(image)[..., 0] > 0
        boxed = np.zeros_like(pixels)
        for x0, y0, x1, y1 in target["boxes"].round().int().tolist():
            boxed[y0:y1, x0:x1] = True
            # tight: every edge row/column of the box holds object pixels
            assert pixels[y0, x0:x1].any() and pixels[y1 - 1, x0:x1].any()
            assert pixels[y0:y1, x0].any() and pixels[y0:y1, x1 - 1].any()
            checked += 1
        assert not (pixels & ~boxed).any()  # no object pixel outside the boxes
    assert checked >= 2 * len(ds)


@needs_fashion
def test_generation_is_cached_and_reproducible(tmp_path):
    first = build_fashion_detection(tmp_path, "train", 8, image_size=96, seed=1)
    mtime = first[1].stat().st_mtime_ns
    assert build_fashion_detection(tmp_path, "train", 8, image_size=96, seed=1) == first
    assert first[1].stat().st_mtime_ns == mtime  # reused, not rewritten
    parallel = build_fashion_detection(tmp_path / "other", "train", 8, image_size=96, seed=1, workers=2)
    assert parallel[1].read_bytes() == first[1].read_bytes()
    assert (parallel[0] / "000005.png").read_bytes() == (first[0] / "000005.png").read_bytes()
    assert build_fashion_detection(tmp_path, "train", 8, image_size=96, seed=2)[1] != first[1]
    first[1].write_text(first[1].read_text().replace('"iscrowd": 0', '"iscrowd": 1', 1))  # corrupt the cache
    again = build_fashion_detection(tmp_path, "train", 8, image_size=96, seed=1)
    assert again == first and '"iscrowd": 1' not in again[1].read_text()


@needs_fashion
def test_statistics_of_a_generated_split(tmp_path):
    _, ann = build_fashion_detection(tmp_path, "train", 16, image_size=160, objects_per_image=(2, 4), seed=0)
    stats = dataset_statistics(ann)
    data = json.loads(ann.read_text())
    assert stats["images"] == 16 and stats["objects"] == len(data["annotations"])
    assert 2 <= stats["objects_per_image"]["min"] <= stats["objects_per_image"]["mean"] <= 4
    assert stats["negatives"] == 0 and sum(stats["per_class"].values()) == stats["objects"]
    assert sum(stats["area"].values()) == pytest.approx(1.0) and stats["area"]["small"] > 0


def test_unknown_scale_is_an_error():
    with pytest.raises(ValueError, match="unknown Fashion scale 'huge'"):
        fashion_splits("huge")
