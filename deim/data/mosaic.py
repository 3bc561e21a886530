"""Mosaic: four images on one canvas, then a random affine transform (DEIM's Dense O2O).

Geometry (as official): the sample and three partners are each resized so that their shorter
side is ``output_size`` (aspect ratio kept); with ``max_w``/``max_h`` the largest resized width and
height, the canvas is ``2*max_w x 2*max_h`` filled with 0, and the four images are pasted at the
top-left corners of its quadrants, ``(0, 0), (max_w, 0), (0, max_h), (max_w, max_h)`` (no random
centre, no crop). Boxes move with their image. Then ``RandomAffine(degrees=rotation,
translate, scale, fill)`` (nearest interpolation, torchvision's default) transforms canvas and
boxes together; boxes become the enclosing box of their transformed corners, clamped to the
canvas, and degenerate ones are removed by the pipeline's ``sanitize`` afterwards.

Partners come either from the dataset (``use_cache=False``, the official configs): three indices
drawn uniformly with replacement and read raw with ``source.load_item``; or from a cache
(``use_cache=True``): each mosaic's own resized sample is appended to a per-process list of at
most ``max_cached_images`` entries (when full, a random entry other than the newest is evicted)
and three partners are drawn from it, the new entry included. The cache lives in each DataLoader
worker; non-persistent workers start each epoch with an empty cache.

Per-box target fields are concatenated in tile order; per-image fields (``image_id``,
``orig_size``) stay those of the sample. Random numbers come from torch's global generator, which
the training pipeline seeds per sample.
"""
from __future__ import annotations

from collections.abc import Sequence

import PIL.Image
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from torchvision import tv_tensors

from deim.data.transforms import PER_BOX_FIELDS, ItemSource, Target, bounding_boxes, image_size

Sample = tuple[PIL.Image.Image, Target]


class Mosaic:
    """Build a mosaic sample from ``(image, target)`` and three partners.

    Args:
        output_size: shorter side of each tile before pasting (official 320).
        rotation: affine rotation range in degrees (official config 10).
        translate: affine translation fractions ``(x, y)``.
        scale: affine scale range.
        fill: affine fill value (the canvas itself is always filled with 0, as official).
        use_cache: draw partners from a cache of recent samples instead of the dataset.
        max_cached_images: cache capacity.
    """

    def __init__(self, output_size: int = 320, rotation: float = 10.0, translate: tuple[float, float] = (0.1, 0.1),
                 scale: tuple[float, float] = (0.5, 1.5), fill: int = 0, use_cache: bool = False,
                 max_cached_images: int = 50) -> None:
        if output_size <= 0:
            raise ValueError(f"output_size must be positive, got {output_size}")
        if use_cache and max_cached_images < 1:
            raise ValueError(f"max_cached_images must be at least 1, got {max_cached_images}")
        self.output_size = output_size
        self.use_cache = use_cache
        self.max_cached_images = max_cached_images
        self.resize = T.Resize(output_size)
        self.affine = T.RandomAffine(degrees=rotation, translate=translate, scale=scale, fill=fill)
        self.cache: list[Sample] = []

    def __call__(self, image: PIL.Image.Image, target: Target, source: ItemSource) -> Sample:
        tiles = [self.resize(image, target)]
        if self.use_cache:
            tiles += self._partners_from_cache(tiles[0])
        else:
            idx = torch.randint(len(source), (3,)).tolist()
            tiles += [self.resize(*source.load_item(i)) for i in idx]
        canvas, merged = paste_quadrants(tiles)
        return self.affine(canvas, merged)

    def _partners_from_cache(self, sample: Sample) -> list[Sample]:
        self.cache.append(sample)
        if len(self.cache) > self.max_cached_images:
            self.cache.pop(int(torch.randint(len(self.cache) - 1, ()).item()))
        return [self.cache[i] for i in torch.randint(len(self.cache), (3,)).tolist()]

    def __repr__(self) -> str:
        return (f"Mosaic(output_size={self.output_size}, affine={self.affine}, use_cache={self.use_cache}, "
                f"max_cached_images={self.max_cached_images})")


def paste_quadrants(tiles: Sequence[Sample]) -> Sample:
    """Paste four ``(image, target)`` tiles at the quadrant corners of a ``2*max_w x 2*max_h``
    canvas (filled with 0); returns the canvas and the merged target (boxes ``xyxy`` pixels)."""
    if len(tiles) != 4:
        raise ValueError(f"a mosaic needs 4 tiles, got {len(tiles)}")
    sizes = [image_size(img) for img, _ in tiles]
    max_h, max_w = max(h for h, _ in sizes), max(w for _, w in sizes)
    offsets = [(0, 0), (max_w, 0), (0, max_h), (max_w, max_h)]
    canvas = PIL.Image.new(tiles[0][0].mode, (2 * max_w, 2 * max_h), color=0)
    boxes = []
    for (img, target), (dx, dy) in zip(tiles, offsets):
        canvas.paste(img, (dx, dy))
        shift = torch.tensor([dx, dy, dx, dy], dtype=torch.float32)
        xyxy = TF.convert_bounding_box_format(target["boxes"], new_format=tv_tensors.BoundingBoxFormat.XYXY)
        boxes.append(xyxy.as_subclass(torch.Tensor).float() + shift)
    merged = dict(tiles[0][1])
    merged["boxes"] = bounding_boxes(torch.cat(boxes), 2 * max_h, 2 * max_w)
    for key in PER_BOX_FIELDS:
        if key in merged:
            merged[key] = torch.cat([t[key] for _, t in tiles])
    return canvas, merged
