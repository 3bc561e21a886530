"""Read and check a COCO-format annotation file, with errors that name the file and the entry.

``load_coco_annotations(path)`` returns a ``CocoAnnotations``: the file's dict as written (the
ground truth the COCO evaluator scores against, exactly as the official evaluation does) and, per
image, the *training* boxes after cleaning:

* a box with non-positive width or height is dropped (one warning counting them, naming a few
  annotation ids); ``strict=True`` raises instead;
* a box reaching outside its image is clipped to it (one warning counting them; ``strict=True``
  raises); a box with nothing left inside the image is dropped like a degenerate one;
* crowd annotations (``iscrowd=1``) are kept in the ground truth but are not training targets, as
  in the official code;
* images without annotations stay in the dataset as negatives.

Structural problems always raise ``AnnotationError`` (a ``ValueError``): malformed JSON, missing
keys, duplicated ids, annotations pointing at unknown images or categories, non-finite numbers.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_IMAGE_KEYS = ("id", "file_name", "width", "height")
_ANN_KEYS = ("id", "image_id", "category_id", "bbox")
# Boxes may exceed the image by float rounding; only larger excursions count as "outside".
_OUTSIDE_TOLERANCE = 1e-3


class AnnotationError(ValueError):
    """A COCO annotation file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class TrainBox:
    """One training box: ``xyxy`` pixels of the image, clipped to it."""

    annotation_id: int
    category_id: int
    xyxy: tuple[float, float, float, float]
    area: float


@dataclass
class CocoAnnotations:
    """A checked COCO file.

    Attributes:
        path: the annotation file.
        raw: the file's dict as written (``images``, ``annotations``, ``categories``).
        images: the ``images`` entries sorted by id (the dataset order).
        boxes: image id -> its training boxes (crowd, degenerate and outside boxes removed).
        dropped: annotation ids of dropped degenerate boxes.
        clipped: annotation ids of boxes clipped to their image.
        crowd: number of crowd annotations (ground truth only).
    """

    path: Path
    raw: dict[str, Any]
    images: list[dict[str, Any]]
    boxes: dict[int, list[TrainBox]]
    dropped: list[int] = field(default_factory=list)
    clipped: list[int] = field(default_factory=list)
    crowd: int = 0

    @property
    def categories(self) -> list[dict[str, Any]]:
        return self.raw["categories"]


def read_json(path: str | Path) -> dict[str, Any]:
    """Parse a COCO JSON file; ``FileNotFoundError``/``AnnotationError`` name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise AnnotationError(f"{path}: missing top-level key {key!r}")
        if not isinstance(data[key], list):
            raise AnnotationError(f"{path}: {key!r} must be a list, got {type(data[key]).__name__}")
    return data


def load_coco_annotations(path: str | Path, strict: bool = False,
                          known_category_ids: set[int] | None = None) -> CocoAnnotations:
    """Read, check and clean a COCO annotation file (see the module docstring).

    Args:
        path: the JSON file.
        strict: raise on degenerate or outside boxes instead of dropping/clipping them.
        known_category_ids: the category ids a training label exists for (default: the file's
            ``categories``); an annotation with another id is an error.
    """
    path = Path(path)
    raw = read_json(path)
    images = _check_images(raw["images"], path)
    category_ids = _check_categories(raw["categories"], path)
    allowed = category_ids if known_category_ids is None else category_ids & set(known_category_ids)
    result = CocoAnnotations(path=path, raw=raw, images=images, boxes={im["id"]: [] for im in images})
    sizes = {im["id"]: (float(im["width"]), float(im["height"])) for im in images}
    seen: set[int] = set()
    for i, ann in enumerate(raw["annotations"]):
        ann_id = _check_annotation(ann, i, path, seen, sizes, allowed)
        if ann.get("iscrowd", 0):
            result.crowd += 1
            continue
        box = _clean_box(ann, ann_id, sizes[ann["image_id"]], path, strict, result)
        if box is not None:
            result.boxes[ann["image_id"]].append(box)
    _warn_cleaning(result)
    return result


def _check_images(images: list[Any], path: Path) -> list[dict[str, Any]]:
    ids: set[int] = set()
    for i, im in enumerate(images):
        where = f"{path}: images[{i}]"
        if not isinstance(im, Mapping):
            raise AnnotationError(f"{where} must be an object, got {type(im).__name__}")
        for key in _IMAGE_KEYS:
            if key not in im:
                raise AnnotationError(f"{where} (id {im.get('id')}) is missing the key {key!r}")
        if im["id"] in ids:
            raise AnnotationError(f"{where}: duplicated image id {im['id']}")
        if not (_is_number(im["width"]) and _is_number(im["height"]) and im["width"] > 0 and im["height"] > 0):
            raise AnnotationError(f"{where} (id {im['id']}): width and height must be positive numbers, "
                                  f"got {im['width']!r} x {im['height']!r}")
        ids.add(im["id"])
    return sorted(images, key=lambda im: im["id"])


def _check_categories(categories: list[Any], path: Path) -> set[int]:
    if not categories:
        raise AnnotationError(f"{path}: 'categories' is empty; a detection dataset needs at least one class")
    ids: set[int] = set()
    for i, cat in enumerate(categories):
        if not isinstance(cat, Mapping) or "id" not in cat:
            raise AnnotationError(f"{path}: categories[{i}] must be an object with an 'id'")
        if cat["id"] in ids:
            raise AnnotationError(f"{path}: duplicated category id {cat['id']} in categories[{i}]")
        ids.add(cat["id"])
    return ids


def _check_annotation(ann: Any, i: int, path: Path, seen: set[int], sizes: Mapping[int, tuple[float, float]],
                      allowed: set[int]) -> int:
    if not isinstance(ann, Mapping):
        raise AnnotationError(f"{path}: annotations[{i}] must be an object, got {type(ann).__name__}")
    ann_id = ann.get("id")
    where = f"{path}: annotation id {ann_id} (annotations[{i}])"
    for key in _ANN_KEYS:
        if key not in ann:
            raise AnnotationError(f"{where} is missing the key {key!r}")
    if ann_id in seen:
        raise AnnotationError(f"{where}: duplicated annotation id")
    seen.add(ann_id)
    if ann["image_id"] not in sizes:
        raise AnnotationError(f"{where}: image_id {ann['image_id']} is not in 'images'")
    if ann["category_id"] not in allowed:
        raise AnnotationError(f"{where}: category_id {ann['category_id']} is not among the categories "
                              f"{sorted(allowed)}")
    bbox = ann["bbox"]
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise AnnotationError(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    return ann_id


def _clean_box(ann: Mapping[str, Any], ann_id: int, size: tuple[float, float], path: Path, strict: bool,
               result: CocoAnnotations) -> TrainBox | None:
    x, y, w, h = (float(v) for v in ann["bbox"])
    width, height = size
    if w <= 0 or h <= 0:
        if strict:
            raise AnnotationError(f"{path}: annotation id {ann_id} has a non-positive box size {w} x {h}")
        result.dropped.append(ann_id)
        return None
    x0, y0, x1, y1 = x, y, x + w, y + h
    tol = _OUTSIDE_TOLERANCE
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        if strict:
            raise AnnotationError(f"{path}: annotation id {ann_id} box [{x0}, {y0}, {x1}, {y1}] (xyxy) reaches "
                                  f"outside its {width:g} x {height:g} image")
        result.clipped.append(ann_id)
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    if x1 <= x0 or y1 <= y0:
        result.clipped.remove(ann_id)
        result.dropped.append(ann_id)
        return None
    area = float(ann["area"]) if _is_number(ann.get("area")) else w * h
    return TrainBox(ann_id, int(ann["category_id"]), (x0, y0, x1, y1), area)


def _warn_cleaning(result: CocoAnnotations) -> None:
    for ids, what in ((result.dropped, "dropped boxes with non-positive width/height (or entirely outside "
                                       "their image)"),
                      (result.clipped, "clipped boxes reaching outside their image")):
        if ids:
            examples = ", ".join(str(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
            warnings.warn(f"{result.path}: {what}: {len(ids)} (annotation ids {examples}); "
                          f"pass strict=True to make this an error", stacklevel=3)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
