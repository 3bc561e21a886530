"""Contiguous class labels <-> COCO category ids <-> names.

A detector predicts contiguous labels ``0 .. C-1``; COCO-format files name classes by arbitrary
``category_id`` values (COCO itself uses 80 ids between 1 and 90). ``LabelMap`` holds the two-way
mapping, built from a file's ``categories`` sorted by id (``LabelMap.from_categories``) or the
standard 80-class COCO mapping (``LabelMap.coco()``). It is plain data (``to_dict``/``from_dict``)
so a checkpoint can carry the mapping its classification head was trained with.

The official code uses category ids directly as labels for custom datasets (ids must then lie in
``[0, num_classes)``); here every dataset goes through a ``LabelMap``, so any ids work.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"),
    (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"),
    (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"),
    (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"), (37, "sports ball"),
    (38, "kite"), (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"), (42, "surfboard"),
    (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"), (48, "fork"),
    (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"),
    (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"),
    (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"),
    (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"),
    (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"),
    (81, "sink"), (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"),
    (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)


@dataclass(frozen=True)
class LabelMap:
    """Label ``i`` is category ``category_ids[i]`` named ``names[i]``; ids are unique."""

    category_ids: tuple[int, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.category_ids) != len(self.names):
            raise ValueError(f"LabelMap needs one name per category id, got {len(self.category_ids)} ids "
                             f"and {len(self.names)} names")
        if len(set(self.category_ids)) != len(self.category_ids):
            dup = sorted({c for c in self.category_ids if self.category_ids.count(c) > 1})
            raise ValueError(f"LabelMap category ids must be unique, duplicated: {dup}")
        object.__setattr__(self, "_label_of", {c: i for i, c in enumerate(self.category_ids)})

    @classmethod
    def from_categories(cls, categories: Iterable[Mapping[str, Any]]) -> "LabelMap":
        """From a COCO ``categories`` list (``[{"id": ..., "name": ...}, ...]``), sorted by id."""
        cats = sorted(categories, key=lambda c: int(c["id"]))
        return cls(tuple(int(c["id"]) for c in cats), tuple(str(c.get("name", c["id"])) for c in cats))

    @classmethod
    def coco(cls) -> "LabelMap":
        """The standard MS-COCO mapping: labels ``0..79`` <-> category ids ``1..90``."""
        return cls(tuple(c for c, _ in COCO_CATEGORIES), tuple(n for _, n in COCO_CATEGORIES))

    def __len__(self) -> int:
        return len(self.category_ids)

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def has_category(self, category_id: int) -> bool:
        return category_id in self._label_of  # type: ignore[attr-defined]

    def label(self, category_id: int) -> int:
        """Contiguous label of ``category_id``; ``KeyError`` naming the id when it is unknown."""
        try:
            return self._label_of[int(category_id)]  # type: ignore[attr-defined]
        except KeyError:
            raise KeyError(f"category id {category_id} is not in the label map "
                           f"(known ids: {list(self.category_ids)})") from None

    def category_id(self, label: int) -> int:
        if not 0 <= int(label) < len(self.category_ids):
            raise KeyError(f"label {label} is outside [0, {len(self.category_ids)})")
        return self.category_ids[int(label)]

    def labels_to_category_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """``[N]`` int labels -> ``[N]`` int64 category ids (vectorised)."""
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(self)):
            bad = labels[(labels < 0) | (labels >= len(self))][0].item()
            raise KeyError(f"label {bad} is outside [0, {len(self)})")
        return torch.tensor(self.category_ids, dtype=torch.int64)[labels]

    def to_categories(self) -> list[dict[str, Any]]:
        """The COCO ``categories`` list of this map."""
        return [{"id": c, "name": n} for c, n in zip(self.category_ids, self.names)]

    def to_dict(self) -> dict[str, list]:
        return {"category_ids": list(self.category_ids), "names": list(self.names)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LabelMap":
        return cls(tuple(int(c) for c in d["category_ids"]), tuple(str(n) for n in d["names"]))
