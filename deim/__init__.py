"""deim: a compact reference implementation of DEIM (DETR with Improved Matching).

The model zoo is re-exported here and imported on first use (``import deim`` stays light)::

    import deim
    model = deim.build_model("deim_dfine_s", num_classes=5)
    det = deim.Detector.from_pretrained("deim_dfine_s_coco")     # released weights by name
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build_model": "deim.models.build",
    "build_criterion": "deim.losses.build",
    "build_postprocessor": "deim.models.build",
    "load_checkpoint": "deim.engine.checkpointing",
    "list_presets": "deim.presets.catalog",
    "get_preset": "deim.presets.catalog",
    "from_pretrained": "deim.pretrained",
    "list_pretrained": "deim.zoo",
    "Detector": "deim.detector",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
