"""Inference from a checkpoint: load a model for it, predict on images, draw the detections.

``load_for_inference(path)`` rebuilds the model of one of our training checkpoints from the
config and label map it holds; for an official checkpoint give the ``preset`` (COCO's 80
classes are assumed unless ``num_classes`` is given).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw
from torch import nn
from torchvision.transforms.v2 import functional as TF

from deim.data.labels import LabelMap
from deim.engine.checkpointing import load_checkpoint, read_checkpoint
from deim.engine.image_inputs import (  # noqa: F401 - IMAGE_SUFFIXES and find_images are re-exported
    IMAGE_SUFFIXES, check_output_folder, find_images, output_names)
from deim.models.build import build_model, build_postprocessor
from deim.presets.resolve import apply_overrides, resolve_model
from deim.presets.sections import ModelPreset


@dataclass
class InferenceModel:
    model: nn.Module
    postprocessor: nn.Module
    label_map: LabelMap
    image_size: int
    preset: str


def capped_top_k(preset: ModelPreset, overrides: Mapping[str, Any]) -> ModelPreset:
    """``preset`` (resolved with ``overrides``) with the post-processor's top-k capped at the number
    of candidates (queries × classes), which a small dataset can bring below the preset's 300,
    unless ``overrides`` set ``num_top_queries`` explicitly."""
    if "num_top_queries" in overrides or "postprocessor.num_top_queries" in overrides:
        return preset
    candidates = preset.decoder.num_queries * preset.num_classes
    return apply_overrides(preset, num_top_queries=min(preset.postprocessor.num_top_queries, candidates))


def load_for_inference(checkpoint: str | Path | dict, preset: str | None = None, image_size: int | None = None,
                       num_classes: int | None = None, device: str | torch.device = "cpu",
                       model_overrides: dict | None = None) -> InferenceModel:
    """The (EMA) model of ``checkpoint`` (a path, or what :func:`read_checkpoint` returned) in eval
    mode, its post-processor and label map. ``model_overrides`` go to the model builder on top of
    the checkpoint's own ``config["model"]``."""
    state = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
    config = state.get("config")
    overrides: dict = {}
    if config is not None:
        check_preset(config["preset"], preset)
        preset = config["preset"]
        overrides.update(config.get("model", {}))
        image_size = image_size or int(config["data"]["image_size"])
    overrides.update(model_overrides or {})
    if preset is None:
        raise ValueError("the checkpoint holds no training config: give the model preset (--preset deim_dfine_s ...)")
    if "label_map" in state:
        label_map = LabelMap.from_dict(state["label_map"])
    elif num_classes in (None, 80):
        label_map = LabelMap.coco()
    else:
        label_map = LabelMap(tuple(range(num_classes)), tuple(f"class {i}" for i in range(num_classes)))
    image_size = image_size or 640
    overrides.update(num_classes=label_map.num_classes, eval_spatial_size=image_size)
    resolved = resolve_model(preset, **overrides)
    model = build_model(resolved)
    try:
        load_checkpoint(model, state, strict=True)
    except ValueError as exc:
        lines = str(exc).splitlines()
        example = f" (e.g. {lines[1].strip()})" if len(lines) > 1 else ""
        raise ValueError(f"the checkpoint does not fit preset {preset}: {lines[0].rstrip(':')}{example}; "
                         f"is --preset right?") from None
    post = build_postprocessor(capped_top_k(resolved, overrides))
    model = model.to(device).eval()
    if torch.device(device).type == "cpu":
        model.channels_last()  # oneDNN's faster layout; outputs equal to float rounding
    return InferenceModel(model, post, label_map, image_size, preset)


def check_preset(trained: str, requested: str | None) -> None:
    """``ValueError`` in one line when a checkpoint trained as ``trained`` is asked to run as another
    preset (our checkpoints know theirs: ``--preset`` is only needed for other files)."""
    if requested is not None and requested != trained:
        raise ValueError(f"the checkpoint was trained as {trained}, not {requested}: drop --preset (our "
                         f"checkpoints know their preset)")


def _open_rgb(path: Path) -> Image.Image:
    """The image at ``path`` as RGB; ``OSError`` naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise OSError(f"cannot read image {path}: {exc}") from None


@torch.no_grad()
def predict_images(im: InferenceModel, paths: Iterable[Path], device: str | torch.device = "cpu"
                   ) -> list[tuple[Path, dict[str, torch.Tensor]]]:
    """Detections per image: ``labels`` (contiguous), ``boxes`` (xyxy pixels), ``scores``."""
    out = []
    for path in paths:
        image = _open_rgb(path)
        tensor = TF.to_dtype(TF.to_image(image), torch.float32, scale=True)
        tensor = TF.resize(tensor, [im.image_size, im.image_size])[None].to(device)
        size = torch.tensor([[image.width, image.height]], device=device)
        result = im.postprocessor(im.model(tensor), size)[0]
        out.append((path, {k: v.cpu() for k, v in result.items()}))
    return out


def draw_detections(path: Path, detections: dict[str, torch.Tensor], label_map: LabelMap,
                    threshold: float) -> Image.Image:
    """The image with every detection above ``threshold`` drawn (box, name, score)."""
    image = _open_rgb(path)
    draw = ImageDraw.Draw(image)
    keep = detections["scores"] >= threshold
    for box, label, score in zip(detections["boxes"][keep].tolist(), detections["labels"][keep].tolist(),
                                 detections["scores"][keep].tolist()):
        draw.rectangle(box, outline=(255, 140, 0), width=2)
        draw.text((box[0] + 2, box[1] + 1), f"{label_map.names[label]} {score:.2f}", fill=(255, 140, 0))
    return image


def write_predictions(results: list[tuple[Path, dict[str, torch.Tensor]]], label_map: LabelMap,
                      output_dir: str | Path, threshold: float) -> Path:
    """Annotated images and ``predictions.json`` (COCO results format with category ids and names).

    Each image goes to its own name (:func:`~deim.engine.image_inputs.output_names`: the path
    relative to the inputs' common folder, ``.png`` appended unless it is a PNG); an output folder
    holding an input is refused, so no input is ever replaced. ``file_name`` in the JSON is the
    input's relative path.
    """
    output_dir = Path(output_dir)
    sources = [path for path, _ in results]
    check_output_folder(output_dir, sources)
    names = output_names(sources)
    output_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for (path, det), name in zip(results, names):
        target = output_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        draw_detections(path, det, label_map, threshold).save(target, format="PNG")
        source_name = str(name.with_name(path.name).as_posix())
        keep = det["scores"] >= threshold
        for (x0, y0, x1, y1), label, score in zip(det["boxes"][keep].tolist(), det["labels"][keep].tolist(),
                                                  det["scores"][keep].tolist()):
            records.append({"file_name": source_name, "category_id": label_map.category_ids[label],
                            "category_name": label_map.names[label], "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "score": round(score, 5)})
    out = output_dir / "predictions.json"
    out.write_text(json.dumps(records, indent=1))
    return out
