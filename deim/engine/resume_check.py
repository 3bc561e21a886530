"""Refuse to resume a checkpoint under other model settings than it was trained with.

``--resume`` continues a run exactly; a checkpoint of another preset, or one whose model
overrides differ (``model.num_queries=20`` against a checkpoint with 12), is a different model:
weights may load silently or fail with hundreds of shape mismatches. :func:`check_resume_matches`
compares the two resolved presets field by field and names every difference in one line;
``--finetune`` is the way to start a new run from such weights on purpose.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from deim.presets.resolve import resolve_model

# Settings that do not change the weights: the loss (it may be changed on purpose) and the
# anchor grid, which follows the image size.
_NOT_MODEL = ("criterion", "eval_spatial_size", "num_classes", "name", "official_config")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def model_differences(saved_preset: str, saved_model: dict[str, Any], preset: str,
                      model: dict[str, Any]) -> list[str]:
    """``"key: checkpoint value -> requested value"`` for each model setting that differs."""
    if saved_preset != preset:
        return [f"preset: {saved_preset} -> {preset}"]
    a = _flat({k: v for k, v in resolve_model(saved_preset, **saved_model).to_dict().items() if k not in _NOT_MODEL})
    b = _flat({k: v for k, v in resolve_model(preset, **model).to_dict().items() if k not in _NOT_MODEL})
    return [f"model.{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_resume_matches(saved_config: dict[str, Any] | None, preset: str, model: dict[str, Any],
                         path: str | Path) -> None:
    """``ValueError`` in one line when checkpoint ``path`` (its ``config``) was trained as another
    preset or with other model settings than ``preset`` + ``model``."""
    if not saved_config:
        return
    differences = model_differences(saved_config["preset"], dict(saved_config.get("model") or {}), preset, model)
    if differences:
        raise ValueError(f"cannot resume {path}: it was trained with other model settings "
                         f"({'; '.join(differences)}; checkpoint -> requested). Resume with its settings, "
                         f"or start a new run from its weights with --finetune {path}")
