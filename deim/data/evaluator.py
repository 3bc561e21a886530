"""COCO box evaluation (the 12 standard AP/AR numbers) on faster-coco-eval.

Why faster-coco-eval rather than pycocotools: it is what the official code evaluates with
(``faster_coco_eval.init_as_pycocotools()``), its numbers equal pycocotools' (the test suite
checks one case against pycocotools), and its C++ ``evaluate``/``accumulate`` are several times
faster, which matters when the reduced-scale runs evaluate every epoch on 2 CPU cores.

Usage::

    evaluator = CocoEvaluator(dataset.ann_file, dataset.label_map)
    evaluator.update(predict_loader(model, postprocessor, val_loader, device))
    stats = evaluator.summarize()   # {"AP": ..., "AP50": ..., ..., "ARl": ...}

Predictions are ``{image_id: {"labels": [K] contiguous, "boxes": [K, 4] xyxy pixels of the
original image, "scores": [K]}}`` (what the post-processor returns for ``orig_size``). Only the
images given to ``update`` are scored (so evaluating a subset of the split is meaningful).
A statistic without ground truth in its size range is -1, as in pycocotools.
"""
from __future__ import annotations

import contextlib
import copy
import io
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from faster_coco_eval import COCO, COCOeval_faster

from deim.data.annotations import read_json
from deim.data.labels import LabelMap

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _quiet(*args: Any, **kwargs: Any) -> None:
    return None


def load_ground_truth(gt: str | Path | Mapping[str, Any] | COCO) -> COCO:
    """A faster-coco-eval ``COCO`` from a file path, a COCO dict (not modified) or a ``COCO``."""
    if isinstance(gt, COCO):
        return gt
    data = read_json(gt) if isinstance(gt, (str, Path)) else copy.deepcopy(dict(gt))
    return COCO(data, print_function=_quiet)


class CocoEvaluator:
    """Accumulate detections and compute the COCO box metrics.

    Args:
        gt: ground truth: an annotation file, a COCO-format dict or a faster-coco-eval ``COCO``.
        label_map: maps predicted contiguous labels back to category ids.
    """

    def __init__(self, gt: str | Path | Mapping[str, Any] | COCO, label_map: LabelMap) -> None:
        self.gt = load_ground_truth(gt)
        self.label_map = label_map
        self.detections: list[dict[str, Any]] = []
        self.image_ids: set[int] = set()

    def reset(self) -> None:
        self.detections, self.image_ids = [], set()

    def update(self, results: Mapping[int, Mapping[str, torch.Tensor]]) -> None:
        """Add post-processed predictions of some images (see the module docstring)."""
        known = self.gt.getImgIds()
        for image_id, pred in results.items():
            image_id = int(image_id)
            if image_id not in self.gt.imgs:
                raise KeyError(f"image id {image_id} is not in the ground truth ({len(known)} images)")
            self.image_ids.add(image_id)
            self.detections.extend(detections_to_coco(image_id, pred, self.label_map))

    def summarize(self, verbose: bool = False) -> OrderedDict[str, float]:
        """The 12 standard numbers, in ``STAT_NAMES`` order (fractions in ``[0, 1]``, or -1)."""
        if not self.image_ids:
            raise ValueError("no predictions were added: call update() before summarize()")
        dt = self.gt.loadRes(self.detections)
        coco_eval = COCOeval_faster(self.gt, dt, "bbox", print_function=print if verbose else _quiet)
        coco_eval.params.imgIds = sorted(self.image_ids)
        with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO()):
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        return OrderedDict((name, float(v)) for name, v in zip(STAT_NAMES, coco_eval.stats))


def detections_to_coco(image_id: int, pred: Mapping[str, torch.Tensor], label_map: LabelMap) -> list[dict[str, Any]]:
    """One image's predictions -> COCO result dicts (``bbox`` as ``[x, y, w, h]`` pixels)."""
    for key in ("labels", "boxes", "scores"):
        if key not in pred:
            raise KeyError(f"predictions of image {image_id} lack {key!r} (have {sorted(pred)})")
    boxes = torch.as_tensor(pred["boxes"]).detach().float().cpu().reshape(-1, 4)
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    category_ids = label_map.labels_to_category_ids(torch.as_tensor(pred["labels"]).cpu()).tolist()
    scores = torch.as_tensor(pred["scores"]).detach().float().cpu().tolist()
    return [{"image_id": image_id, "category_id": c, "bbox": b, "score": s}
            for c, b, s in zip(category_ids, xywh, scores)]
