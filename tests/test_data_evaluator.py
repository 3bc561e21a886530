"""COCO evaluation: perfect, shifted and empty predictions, label mapping, agreement with pycocotools."""
from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
import torch

from deim.data.evaluator import STAT_NAMES, CocoEvaluator
from deim.data.labels import LabelMap

CATEGORIES = [{"id": 9, "name": "b"}, {"id": 4, "name": "a"}]  # labels: 0 <-> id 4, 1 <-> id 9


def ground_truth() -> dict:
    g = np.random.default_rng(0)
    images, anns = [], []
    for i in range(1, 7):
        images.append({"id": i, "file_name": f"{i}.png", "width": 400, "height": 300})
        for side in (20, 60, 130):  # small, medium and large boxes
            w, h = side * g.uniform(0.8, 1.2, 2)
            x, y = g.uniform(0, 400 - w), g.uniform(0, 300 - h)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(g.choice([4, 9])),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": CATEGORIES}


def predictions(gt: dict, shift: float = 0.0) -> dict:
    lm = LabelMap.from_categories(gt["categories"])
    out = {}
    for im in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == im["id"]]
        boxes = torch.tensor([[a["bbox"][0] + shift, a["bbox"][1], a["bbox"][0] + a["bbox"][2] + shift,
                               a["bbox"][1] + a["bbox"][3]] for a in anns])
        out[im["id"]] = {"labels": torch.tensor([lm.label(a["category_id"]) for a in anns]),
                         "boxes": boxes, "scores": torch.linspace(0.9, 0.5, len(anns))}
    return out


def evaluate(gt: dict, preds: dict) -> dict:
    ev = CocoEvaluator(gt, LabelMap.from_categories(gt["categories"]))
    ev.update(preds)
    return ev.summarize()


def test_perfect_predictions_score_one():
    gt = ground_truth()
    stats = evaluate(gt, predictions(gt))
    assert list(stats) == list(STAT_NAMES)
    # AR1 (one detection per image and class) cannot reach 1 with several objects of a class
    assert all(v == pytest.approx(1.0) for k, v in stats.items() if k != "AR1")


def test_shifted_boxes_score_less_and_wrong_labels_score_zero():
    gt = ground_truth()
    stats = evaluate(gt, predictions(gt, shift=6.0))
    assert 0.0 < stats["AP"] < 0.9 and stats["AP50"] > stats["AP75"]
    swapped = predictions(gt)
    for p in swapped.values():
        p["labels"] = 1 - p["labels"]  # the label map matters: swapped classes match nothing
    assert evaluate(gt, swapped)["AP"] == pytest.approx(0.0)


def test_empty_predictions_score_zero():
    gt = ground_truth()
    empty = {im["id"]: {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4),
                        "scores": torch.zeros(0)} for im in gt["images"]}
    stats = evaluate(gt, empty)
    assert stats["AP"] == 0.0 and stats["AR100"] == 0.0


def test_only_updated_images_are_scored_and_input_is_not_modified():
    gt = ground_truth()
    before = copy.deepcopy(gt)
    preds = predictions(gt)
    half = {k: v for k, v in preds.items() if k <= 3}
    assert evaluate(gt, half)["AP"] == pytest.approx(1.0)
    assert gt == before
    ev = CocoEvaluator(gt, LabelMap.from_categories(CATEGORIES))
    with pytest.raises(ValueError, match="update"):
        ev.summarize()
    with pytest.raises(KeyError, match="image id 99"):
        ev.update({99: preds[1]})


def test_matches_pycocotools(tmp_path):
    pycocotools = pytest.importorskip("pycocotools.cocoeval")
    from pycocotools.coco import COCO

    gt = ground_truth()
    preds = predictions(gt, shift=3.0)
    preds[2]["scores"] = torch.tensor([0.2, 0.95, 0.6])
    ours = evaluate(gt, preds)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    lm = LabelMap.from_categories(CATEGORIES)
    dets = [{"image_id": i, "category_id": lm.category_id(int(l)), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
             "score": float(s)} for i, p in preds.items()
            for l, b, s in zip(p["labels"], p["boxes"].tolist(), p["scores"])]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        ref = pycocotools.COCOeval(coco, coco.loadRes(dets), "bbox")
        ref.evaluate()
        ref.accumulate()
        ref.summarize()
    assert np.allclose(list(ours.values()), ref.stats, atol=1e-9)
