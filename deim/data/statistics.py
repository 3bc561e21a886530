"""Summary numbers of a COCO-format annotation file (sizes by COCO's small/medium/large ranges)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from deim.data.annotations import read_json

# COCO evaluation's area ranges: small < 32^2 <= medium < 96^2 <= large (pixels).
SMALL_AREA, LARGE_AREA = 32 ** 2, 96 ** 2


def area_bins(areas: np.ndarray) -> dict[str, float]:
    """Fractions of ``areas`` in COCO's small / medium / large ranges."""
    n = max(len(areas), 1)
    return {"small": float((areas < SMALL_AREA).sum() / n),
            "medium": float(((areas >= SMALL_AREA) & (areas < LARGE_AREA)).sum() / n),
            "large": float((areas >= LARGE_AREA).sum() / n)}


def dataset_statistics(ann_file: str | Path) -> dict[str, Any]:
    """Images, objects per image (mean/min/max), negatives, objects per class, and the size
    distribution by COCO's ranges, both of the ``area`` field (what COCO evaluation bins by) and
    of the box area ``w * h``. Crowd annotations are not counted."""
    data = read_json(ann_file)
    anns = [a for a in data["annotations"] if not a.get("iscrowd", 0)]
    per_image = Counter(a["image_id"] for a in anns)
    counts = np.array([per_image.get(im["id"], 0) for im in data["images"]], dtype=np.int64)
    names = {c["id"]: c.get("name", str(c["id"])) for c in data["categories"]}
    box_areas = np.array([a["bbox"][2] * a["bbox"][3] for a in anns], dtype=np.float64)
    areas = np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns], dtype=np.float64)
    return {
        "images": len(data["images"]),
        "objects": len(anns),
        "negatives": int((counts == 0).sum()),
        "objects_per_image": {"mean": float(counts.mean()) if len(counts) else 0.0,
                              "min": int(counts.min()) if len(counts) else 0,
                              "max": int(counts.max()) if len(counts) else 0},
        "per_class": {names[k]: v for k, v in sorted(Counter(a["category_id"] for a in anns).items())},
        "area": area_bins(areas),
        "box_area": area_bins(box_areas),
        "box_side_px": {q: float(np.percentile(np.sqrt(box_areas), p)) if len(anns) else 0.0
                        for q, p in (("p5", 5), ("median", 50), ("p95", 95))},
    }
