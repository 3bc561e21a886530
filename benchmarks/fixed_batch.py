"""One fixed batch of real images of the built-in data, the same for every implementation timed.

``fixed_batch(batch_size, image_size)`` reads the first ``batch_size`` images of the smoke-scale
Fashion detection training split (``deim.data.fashion.fashion_splits("smoke")``, generated into the
cache on first use; cycled when the split is smaller than the batch), resizes each to a square
``image_size`` and returns:

* ``images [B, 3, S, S]`` float32 in ``[0, 1]``;
* ``targets``: one dict per image with ``labels [K]`` (int64, contiguous class indices from the
  annotation file's categories) and ``boxes [K, 4]`` (``cxcywh`` normalised by the image's own
  width and height, so resizing does not change them).

No augmentation: the batch is a pure function of ``(batch_size, image_size)``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from deim.data.fashion import fashion_splits
from deim.data.labels import LabelMap


def _target(annotations: list[dict], width: int, height: int, label_map: LabelMap) -> dict[str, torch.Tensor]:
    """``labels [K]`` and ``boxes [K, 4]`` (cxcywh / image size) from COCO ``bbox`` (xywh pixels)."""
    boxes = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)
    cxcywh = torch.cat([boxes[:, :2] + boxes[:, 2:] / 2, boxes[:, 2:]], dim=1)
    cxcywh /= torch.tensor([width, height, width, height], dtype=torch.float32)
    labels = torch.tensor([label_map.label(a["category_id"]) for a in annotations], dtype=torch.int64)
    return {"labels": labels, "boxes": cxcywh}


def fixed_batch(batch_size: int, image_size: int, scale: str = "smoke"
                ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """``(images [B, 3, S, S] in [0, 1], targets)`` (see the module docstring)."""
    folder, ann_file = fashion_splits(scale)["train"]
    coco = json.loads(Path(ann_file).read_text())
    label_map = LabelMap.from_categories(coco["categories"])
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    records = sorted(coco["images"], key=lambda r: r["id"])
    images, targets = [], []
    for i in range(batch_size):
        record = records[i % len(records)]
        pixels = TF.to_dtype(TF.to_image(Image.open(Path(folder) / record["file_name"]).convert("RGB")),
                             torch.float32, scale=True)
        images.append(TF.resize(pixels.as_subclass(torch.Tensor), [image_size, image_size], antialias=True))
        targets.append(_target(by_image.get(record["id"], []), record["width"], record["height"], label_map))
    return torch.stack(images), targets


def clone_targets(targets: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """A copy of ``targets`` (criteria may write into the dicts they are given)."""
    return [{k: v.clone() for k, v in t.items()} for t in targets]
