"""COCO-format reading: label maps, annotation checks with clear errors, the dataset's samples."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from torchvision import tv_tensors

from deim.data.annotations import AnnotationError, load_coco_annotations
from deim.data.coco import CocoDetection
from deim.data.labels import LabelMap


def write_dataset(root: Path, images: list[dict], annotations: list[dict], categories: list[dict] | None = None,
                  write_images: bool = True) -> tuple[Path, Path]:
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    if write_images:
        for im in images:
            PIL.Image.new("L", (im["width"], im["height"]), 30).save(folder / im["file_name"])
    cats = categories if categories is not None else [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}]
    ann = root / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return folder, ann


def image(i: int, w: int = 40, h: int = 30) -> dict:
    return {"id": i, "file_name": f"{i}.png", "width": w, "height": h}


def box(i: int, image_id: int, bbox: list[float], cat: int = 7, **extra) -> dict:
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, "area": bbox[2] * bbox[3], **extra}


def test_label_map_from_categories_sorts_by_id_and_round_trips():
    lm = LabelMap.from_categories([{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}])
    assert lm.category_ids == (3, 7) and lm.names == ("dog", "cat")
    assert lm.label(7) == 1 and lm.category_id(0) == 3
    assert lm.labels_to_category_ids(torch.tensor([1, 0, 1])).tolist() == [7, 3, 7]
    assert LabelMap.from_dict(json.loads(json.dumps(lm.to_dict()))) == lm
    with pytest.raises(KeyError, match="category id 5"):
        lm.label(5)
    with pytest.raises(KeyError, match="label 2"):
        lm.labels_to_category_ids(torch.tensor([2]))


def test_coco_label_map_is_the_standard_80_classes():
    lm = LabelMap.coco()
    assert len(lm) == 80 and lm.category_ids[0] == 1 and lm.category_ids[-1] == 90
    assert lm.label(1) == 0 and lm.label(90) == 79 and lm.names[lm.label(18)] == "dog"
    assert 12 not in lm.category_ids and 83 not in lm.category_ids


def test_dataset_returns_official_target_fields(tmp_path):
    folder, ann = write_dataset(tmp_path, [image(1), image(2)],
                                [box(1, 1, [2, 3, 10, 5], cat=7), box(2, 1, [0, 0, 4, 4], cat=3),
                                 box(3, 1, [1, 1, 30, 20], cat=3, iscrowd=1)])
    ds = CocoDetection(folder, ann)
    assert len(ds) == 2 and ds.num_classes == 2
    img, t = ds[0]
    assert img.mode == "RGB" and img.size == (40, 30)
    assert isinstance(t["boxes"], tv_tensors.BoundingBoxes) and t["boxes"].canvas_size == (30, 40)
    assert t["boxes"].tolist() == [[2, 3, 12, 8], [0, 0, 4, 4]]  # crowd box not a training target
    assert t["labels"].tolist() == [1, 0] and t["labels"].dtype == torch.int64
    assert t["area"].tolist() == [50, 16] and t["iscrowd"].tolist() == [0, 0]
    assert int(t["image_id"]) == 1 and t["orig_size"].tolist() == [40, 30]
    _, negative = ds[1]  # images without annotations stay as negatives
    assert negative["boxes"].shape == (0, 4) and negative["labels"].shape == (0,)


def test_remap_mscoco_uses_the_80_class_labels(tmp_path):
    cats = [{"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}]
    folder, ann = write_dataset(tmp_path, [image(1)], [box(1, 1, [1, 1, 5, 5], cat=90)], cats)
    ds = CocoDetection(folder, ann, remap_mscoco=True)
    assert ds.num_classes == 80 and ds[0][1]["labels"].tolist() == [79]
    assert CocoDetection(folder, ann)[0][1]["labels"].tolist() == [1]  # the file's own 2 classes


def test_missing_files_name_the_path(tmp_path):
    folder, ann = write_dataset(tmp_path, [image(1)], [])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CocoDetection(tmp_path / "nowhere", ann)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoDetection(folder, tmp_path / "missing.json")


def test_malformed_json_and_missing_keys(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(AnnotationError, match=r"bad\.json: malformed JSON"):
        load_coco_annotations(bad)
    bad.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(AnnotationError, match="missing top-level key 'categories'"):
        load_coco_annotations(bad)
    _, ann = write_dataset(tmp_path, [{"id": 1, "file_name": "1.png", "width": 4}], [], write_images=False)
    with pytest.raises(AnnotationError, match=r"images\[0\] \(id 1\) is missing the key 'height'"):
        load_coco_annotations(ann)
    _, ann = write_dataset(tmp_path, [image(1)], [{"id": 11, "image_id": 1, "bbox": [0, 0, 1, 1]}],
                           write_images=False)
    with pytest.raises(AnnotationError, match="annotation id 11 .* missing the key 'category_id'"):
        load_coco_annotations(ann)


def test_unknown_category_or_image_names_the_annotation(tmp_path):
    _, ann = write_dataset(tmp_path, [image(1)], [box(42, 1, [0, 0, 2, 2], cat=5)], write_images=False)
    with pytest.raises(AnnotationError, match=r"ann\.json: annotation id 42 .*category_id 5"):
        load_coco_annotations(ann)
    _, ann = write_dataset(tmp_path, [image(1)], [box(43, 9, [0, 0, 2, 2])], write_images=False)
    with pytest.raises(AnnotationError, match="annotation id 43 .*image_id 9"):
        load_coco_annotations(ann)
    _, ann = write_dataset(tmp_path, [image(1)], [box(44, 1, [0, 0, float("nan"), 2])], write_images=False)
    with pytest.raises(AnnotationError, match="annotation id 44 .*4 finite numbers"):
        load_coco_annotations(ann)


def test_degenerate_boxes_are_dropped_with_a_counting_warning(tmp_path):
    anns = [box(1, 1, [0, 0, 0, 5]), box(2, 1, [1, 1, 3, -1]), box(3, 1, [1, 1, 3, 3])]
    folder, ann = write_dataset(tmp_path, [image(1)], anns)
    with pytest.warns(UserWarning, match=r"non-positive width/height.*: 2 \(annotation ids 1, 2\)"):
        ds = CocoDetection(folder, ann)
    assert ds[0][1]["boxes"].tolist() == [[1, 1, 4, 4]]
    with pytest.raises(AnnotationError, match="annotation id 1 has a non-positive box size"):
        CocoDetection(folder, ann, strict=True)


def test_outside_boxes_are_clipped_with_a_warning(tmp_path):
    anns = [box(1, 1, [-5, 20, 15, 20]), box(2, 1, [50, 5, 5, 5]), box(3, 1, [2, 2, 3, 3])]
    folder, ann = write_dataset(tmp_path, [image(1, w=40, h=30)], anns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDetection(folder, ann)
    messages = [str(w.message) for w in caught]
    assert any("clipped boxes reaching outside their image: 1 (annotation ids 1)" in m for m in messages)
    assert any("non-positive width/height (or entirely outside their image): 1 (annotation ids 2)" in m
               for m in messages)
    assert ds[0][1]["boxes"].tolist() == [[0, 20, 10, 30], [2, 2, 5, 5]]
    with pytest.raises(AnnotationError, match="annotation id 1 box .* outside its 40 x 30 image"):
        CocoDetection(folder, ann, strict=True)


def test_unreadable_or_mismatched_image_names_the_file(tmp_path):
    folder, ann = write_dataset(tmp_path, [image(1), image(2)], [])
    (folder / "1.png").write_bytes(b"not a png")
    ds = CocoDetection(folder, ann)
    with pytest.raises(OSError, match=r"cannot read image .*1\.png \(image id 1\)"):
        ds[0]
    PIL.Image.new("L", (10, 10)).save(folder / "2.png")
    with pytest.raises(AnnotationError, match=r"image id 2 is 40 x 30 in the JSON but the file .*2\.png is 10 x 10"):
        ds.load_item(1)


def test_dataset_order_and_arrays_are_packed(tmp_path):
    images = [image(5), image(2), image(9)]
    anns = [box(i + 1, im, [i, i, 2, 2]) for i, im in enumerate([9, 2, 9, 5, 9])]
    folder, ann = write_dataset(tmp_path, images, anns)
    ds = CocoDetection(folder, ann)
    assert ds.ids.tolist() == [2, 5, 9]  # sorted by image id
    assert [ds.num_boxes(i) for i in range(3)] == [1, 1, 3]
    assert ds.load_target(2)["boxes"][:, 0].tolist() == [0, 2, 4]
    assert isinstance(ds._boxes, np.ndarray)
