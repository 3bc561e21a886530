"""The built-in detection dataset: Fashion-MNIST objects composed on textured canvases.

Each canvas (``image_size`` square, grey, saved as PNG) gets

* a background: a random grey level, a smooth low-frequency shading, pixel noise, and *clutter*:
  dim, blurred fragments of other Fashion-MNIST images (unlabelled distractors);
* ``objects_per_image`` Fashion-MNIST items, each scaled by a log-uniform factor of
  ``scale_range`` (times a small aspect jitter) and a random contrast, pasted opaquely at a
  random position fully inside the canvas; a new object is rejected if its box overlaps a
  placed one with IoU above ``max_iou`` (then re-positioned, up to 30 tries). Larger objects are
  pasted first, so small ones are never hidden under big ones.

An object's pixels are those of the scaled item with value >= ``OBJECT_THRESHOLD`` (the item is
first cleaned of faint stray pixels below ``SOURCE_THRESHOLD``); its box is the tight box of those
pixels (amodal: occlusion does not shrink it) and its ``area`` their count (COCO's area is that of
the mask, which is what decides small/medium/large in COCO evaluation). Train canvases draw
items and clutter from the train split only, val canvases from the t10k split only.

Generation is seeded per image (``(seed, split, index)``) and written once into a cache folder
(``$DEIM_CACHE/fashion`` or ``~/.cache/deim/fashion``) as ``images/*.png`` + ``annotations.json``
(COCO format, category ids 1..10 named as Fashion-MNIST) + ``manifest.json`` (parameters and the
annotations' SHA-256); a later call with the same parameters reuses a folder whose manifest
matches. Folders are written under a temporary name and renamed, so concurrent builders are safe.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageFilter

from deim.cache import atomic_path, cache_entry, content_key, sha256_file
from deim.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist

GENERATOR_VERSION = 1
SOURCE_THRESHOLD = 25
OBJECT_THRESHOLD = 16
PLACEMENT_TRIES = 30
FASHION_SCALES: dict[str, dict[str, int]] = {
    "smoke": {"train": 64, "val": 32},
    "reduced": {"train": 2000, "val": 500},
    "full": {"train": 20000, "val": 2000},
}
# Canvas recipe per scale (``build_fashion_detection`` keywords); scales not listed use the defaults
# (320 px canvases, 2-8 items). ``reduced`` draws canvases at the training size (96 px) with 1-4
# items of about 19-48 px, so that no resize shrinks the items below what a stride-16 detector sees.
FASHION_CANVAS: dict[str, dict[str, Any]] = {
    "reduced": {"image_size": 96, "objects_per_image": (1, 4), "scale_range": (19 / 28, 48 / 28),
                "clutter_per_image": (2, 5)},
}
_SOURCE_SPLIT = {"train": "train", "val": "t10k"}


@dataclass(frozen=True)
class FashionParams:
    """Everything that determines a generated split (hashed into its cache folder name)."""

    split: str
    num_images: int
    image_size: int = 320
    objects_per_image: tuple[int, int] = (2, 8)
    scale_range: tuple[float, float] = (0.6, 6.0)
    max_iou: float = 0.3
    clutter_per_image: tuple[int, int] = (4, 10)
    seed: int = 0
    background: bool = True
    version: int = GENERATOR_VERSION

    def __post_init__(self) -> None:
        if self.split not in _SOURCE_SPLIT:
            raise ValueError(f"split must be 'train' or 'val', got {self.split!r}")
        if self.num_images < 1:
            raise ValueError(f"num_images must be positive, got {self.num_images}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32, got {self.image_size}")
        for name in ("objects_per_image", "clutter_per_image", "scale_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (min, max) with 0 <= min <= max, got {(lo, hi)}")
        if self.scale_range[0] <= 0:
            raise ValueError(f"scale_range must be positive, got {self.scale_range}")

    def key(self) -> str:
        return content_key(asdict(self), "sha256")


def build_fashion_detection(root: str | Path | None = None, split: str = "train", num_images: int = 64,
                            image_size: int = 320, objects_per_image: tuple[int, int] = (2, 8),
                            scale_range: tuple[float, float] = (0.6, 6.0), max_iou: float = 0.3,
                            clutter_per_image: tuple[int, int] = (4, 10), seed: int = 0,
                            background: bool = True, workers: int | None = None) -> tuple[Path, Path]:
    """Generate (or reuse) one split; returns ``(img_folder, ann_file)`` for ``CocoDetection``.

    ``background=False`` leaves the canvas black (same objects, same boxes: the background has
    its own random stream), which makes the object pixels visible to tests and figures.
    ``workers``: processes writing the images (default: the CPU count for 256 images or more,
    else 1); the output does not depend on it.
    """
    params = FashionParams(split, num_images, image_size, tuple(objects_per_image), tuple(scale_range), max_iou,
                           tuple(clutter_per_image), seed, background)
    folder = cache_entry("fashion", f"{split}-{num_images}-{params.key()}", root)
    if not _is_complete(folder, params):
        if workers is None:
            workers = min(len(os.sched_getaffinity(0)), 8) if num_images >= 256 else 1
        # a concurrent process may finish the same split first: its complete copy is kept
        with atomic_path(folder, keep_existing=lambda done: _is_complete(done, params)) as tmp:
            _generate(tmp, params, workers)
            if not _is_complete(folder, params):
                shutil.rmtree(folder, ignore_errors=True)  # an incomplete leftover blocks the rename
    return folder / "images", folder / "annotations.json"


def fashion_splits(scale: str, root: str | Path | None = None, seed: int = 0,
                   **kwargs: Any) -> dict[str, tuple[Path, Path]]:
    """``{"train": (img_folder, ann_file), "val": (...)}`` at a scale of ``FASHION_SCALES``."""
    if scale not in FASHION_SCALES:
        raise ValueError(f"unknown Fashion scale {scale!r}; choose from {sorted(FASHION_SCALES)}")
    recipe = {**FASHION_CANVAS.get(scale, {}), **kwargs}
    return {split: build_fashion_detection(root, split, n, seed=seed, **recipe)
            for split, n in FASHION_SCALES[scale].items()}


def _is_complete(folder: Path, params: FashionParams) -> bool:
    manifest, ann = folder / "manifest.json", folder / "annotations.json"
    if not (manifest.is_file() and ann.is_file()):
        return False
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if meta.get("params") != json.loads(json.dumps(asdict(params))) or meta.get("sha256") != sha256_file(ann):
        return False
    images = folder / "images"
    return images.is_dir() and sum(1 for _ in os.scandir(images)) == params.num_images


def _generate(folder: Path, params: FashionParams, workers: int) -> None:
    (folder / "images").mkdir(parents=True)
    chunks = [c for c in np.array_split(np.arange(params.num_images), max(1, workers)) if len(c)]
    jobs = [(folder, params, int(c[0]), int(c[-1]) + 1) for c in chunks]
    if len(jobs) == 1:
        per_image = _generate_range(*jobs[0])
    else:
        with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
            per_image = [objs for part in pool.map(_generate_range, *zip(*jobs)) for objs in part]
    images, annotations = [], []
    for i, objects in enumerate(per_image):
        images.append({"id": i + 1, "file_name": _file_name(i), "width": params.image_size,
                       "height": params.image_size})
        for label, (x0, y0, x1, y1), area in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": label + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": area, "iscrowd": 0})
    categories = [{"id": k + 1, "name": n, "supercategory": "fashion"} for k, n in enumerate(FASHION_MNIST_CLASSES)]
    ann = folder / "annotations.json"
    ann.write_text(json.dumps({"info": {"description": "deim built-in Fashion-MNIST detection", **asdict(params)},
                               "images": images, "annotations": annotations, "categories": categories}))
    (folder / "manifest.json").write_text(json.dumps({"params": asdict(params), "sha256": sha256_file(ann),
                                                      "num_objects": len(annotations)}, indent=1))


def _generate_range(folder: Path, params: FashionParams, start: int, stop: int) -> list[list[Any]]:
    """Write canvases ``start..stop-1`` as PNG; returns their objects (one process's share)."""
    items, labels = load_fashion_mnist(_SOURCE_SPLIT[params.split])
    items = np.where(items >= SOURCE_THRESHOLD, items, 0).astype(np.uint8)
    split_code = 0 if params.split == "train" else 1
    result = []
    for i in range(start, stop):
        canvas, objects = compose_canvas(np.random.default_rng([params.seed, split_code, i, 0]),
                                         np.random.default_rng([params.seed, split_code, i, 1]), items, labels, params)
        PIL.Image.fromarray(canvas).save(folder / "images" / _file_name(i), compress_level=1)
        result.append(objects)
    return result


def _file_name(i: int) -> str:
    return f"{i:06d}.png"


def compose_canvas(rng: np.random.Generator, background_rng: np.random.Generator, items: np.ndarray,
                   labels: np.ndarray, params: FashionParams
                   ) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int], int]]]:
    """One canvas ``[S, S]`` uint8 and its objects ``(label, xyxy pixels, pixel area)``; objects
    use ``rng``, the background ``background_rng`` (so it can be switched off alone)."""
    size = params.image_size
    if params.background:
        canvas = _background(background_rng, items, params)
    else:
        canvas = np.zeros((size, size), dtype=np.float32)
    n = int(rng.integers(params.objects_per_image[0], params.objects_per_image[1] + 1))
    lo, hi = np.log(params.scale_range[0]), np.log(min(params.scale_range[1], 0.9 * size / 28))
    scales = np.sort(np.exp(rng.uniform(lo, max(lo, hi), n)))[::-1]  # larger objects first
    objects: list[tuple[int, tuple[int, int, int, int], int]] = []
    for scale in scales:
        k = int(rng.integers(len(items)))
        aspect = np.exp(rng.uniform(-0.2, 0.2))
        w, h = max(2, round(28 * scale * aspect)), max(2, round(28 * scale / aspect))
        patch = np.asarray(PIL.Image.fromarray(items[k]).resize((w, h), PIL.Image.BILINEAR), dtype=np.float32)
        mask = patch >= OBJECT_THRESHOLD
        if not mask.any():
            continue
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        bx0, by0, bx1, by1 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
        placed = _place(rng, (bx0, by0, bx1, by1), size, [o[1] for o in objects], params.max_iou)
        if placed is None:
            continue
        x, y = placed
        value = np.clip(patch * rng.uniform(0.5, 1.0), 1, 255)
        sub_mask, (cy, cx) = mask[by0:by1, bx0:bx1], (y + by0, x + bx0)
        region = canvas[cy:cy + by1 - by0, cx:cx + bx1 - bx0]
        region[sub_mask] = value[by0:by1, bx0:bx1][sub_mask]
        objects.append((int(labels[k]), (cx, cy, cx + bx1 - bx0, cy + by1 - by0), int(mask.sum())))
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), objects


def _place(rng: np.random.Generator, box: tuple[int, int, int, int], size: int,
           others: list[tuple[int, int, int, int]], max_iou: float) -> tuple[int, int] | None:
    """Top-left ``(x, y)`` of the patch so that its tight ``box`` is inside the canvas and
    overlaps no other box with IoU > ``max_iou``; ``None`` after ``PLACEMENT_TRIES`` failures."""
    bx0, by0, bx1, by1 = box
    if bx1 - bx0 > size or by1 - by0 > size:
        return None
    for _ in range(PLACEMENT_TRIES):
        x = int(rng.integers(-bx0, size - bx1 + 1))
        y = int(rng.integers(-by0, size - by1 + 1))
        cand = (x + bx0, y + by0, x + bx1, y + by1)
        if all(_iou(cand, o) <= max_iou for o in others):
            return x, y
    return None


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _background(rng: np.random.Generator, items: np.ndarray, params: FashionParams) -> np.ndarray:
    """Grey level + smooth shading + clutter of dim blurred item fragments + pixel noise (float32)."""
    size = params.image_size
    shading = PIL.Image.fromarray(rng.uniform(0, 255, (6, 6)).astype(np.uint8)).resize((size, size), PIL.Image.BICUBIC)
    amplitude = rng.uniform(0.05, 0.2)
    canvas = np.float32(rng.uniform(10, 70)) + np.float32(amplitude) * np.asarray(shading, dtype=np.float32)
    for _ in range(int(rng.integers(params.clutter_per_image[0], params.clutter_per_image[1] + 1))):
        item = items[int(rng.integers(len(items)))]
        cw, ch = (int(v) for v in rng.integers(8, 20, 2))
        x0, y0 = int(rng.integers(0, 29 - cw)), int(rng.integers(0, 29 - ch))
        side = int(rng.integers(12, max(13, size // 3)))
        frag = PIL.Image.fromarray(item[y0:y0 + ch, x0:x0 + cw]).resize((side, side), PIL.Image.BILINEAR)
        frag = frag.filter(PIL.ImageFilter.GaussianBlur(rng.uniform(1.0, 3.0)))
        fx, fy = (int(v) for v in rng.integers(0, size - side + 1, 2))
        region = canvas[fy:fy + side, fx:fx + side]
        np.maximum(region, np.asarray(frag, dtype=np.float32) * rng.uniform(0.2, 0.5), out=region)
    half = (size + 1) // 2  # noise in 2x2 blocks: as visible, and PNGs 3x smaller and faster to write
    noise = rng.standard_normal((half, half), dtype=np.float32) * rng.uniform(3.0, 10.0)
    canvas += noise.repeat(2, 0).repeat(2, 1)[:size, :size]
    return canvas
