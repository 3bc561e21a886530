"""Inference from a checkpoint: load a model for it, predict on images, draw the detections.

``read_checkpoint(path)`` reads any checkpoint file with one clear error when it cannot;
``load_for_inference(path)`` rebuilds the model of one of our training checkpoints from the
config and label map it holds; for an official checkpoint give the ``preset`` (COCO's 80
classes are assumed unless ``num_classes`` is given).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw
from torch import nn
from torchvision.transforms.v2 import functional as TF

from deim.data.labels import LabelMap
from deim.models.build import build_model, build_postprocessor, resolve_preset
from deim.models.checkpoint import load_checkpoint

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class InferenceModel:
    model: nn.Module
    postprocessor: nn.Module
    label_map: LabelMap
    image_size: int
    preset: str


def read_checkpoint(path: str | Path) -> dict:
    """The content of checkpoint ``path`` on the CPU; one clear error if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # not a torch file, or truncated
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a checkpoint dictionary")
    return state


def capped_top_k(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with the post-processor's top-k capped at the number of candidates
    (queries × classes), which a small dataset can bring below the preset's 300, unless
    ``num_top_queries`` is set explicitly."""
    if "num_top_queries" in overrides or "postprocessor.num_top_queries" in overrides:
        return overrides
    resolved = resolve_preset(preset, **overrides)
    candidates = resolved.decoder.num_queries * resolved.num_classes
    return {**overrides, "num_top_queries": min(resolved.postprocessor.num_top_queries, candidates)}


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
        preset = preset or config["preset"]
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
    model = build_model(preset, **overrides)
    load_checkpoint(model, state, strict=True)
    post = build_postprocessor(preset, **capped_top_k(preset, overrides))
    return InferenceModel(model.to(device).eval(), post, label_map, image_size, preset)


def find_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files among ``inputs`` (files, or folders searched non-recursively), sorted."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"no such image or folder: {item}")
    if not found:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return found


@torch.no_grad()
def predict_images(im: InferenceModel, paths: Iterable[Path], device: str | torch.device = "cpu"
                   ) -> list[tuple[Path, dict[str, torch.Tensor]]]:
    """Detections per image: ``labels`` (contiguous), ``boxes`` (xyxy pixels), ``scores``."""
    out = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        tensor = TF.to_dtype(TF.to_image(image), torch.float32, scale=True)
        tensor = TF.resize(tensor, [im.image_size, im.image_size])[None].to(device)
        size = torch.tensor([[image.width, image.height]], device=device)
        result = im.postprocessor(im.model(tensor), size)[0]
        out.append((path, {k: v.cpu() for k, v in result.items()}))
    return out


def draw_detections(path: Path, detections: dict[str, torch.Tensor], label_map: LabelMap,
                    threshold: float) -> Image.Image:
    """The image with every detection above ``threshold`` drawn (box, name, score)."""
    image = Image.open(path).convert("RGB")
    draw = ImageDraw.Draw(image)
    keep = detections["scores"] >= threshold
    for box, label, score in zip(detections["boxes"][keep].tolist(), detections["labels"][keep].tolist(),
                                 detections["scores"][keep].tolist()):
        draw.rectangle(box, outline=(255, 140, 0), width=2)
        draw.text((box[0] + 2, box[1] + 1), f"{label_map.names[label]} {score:.2f}", fill=(255, 140, 0))
    return image


def write_predictions(results: list[tuple[Path, dict[str, torch.Tensor]]], label_map: LabelMap,
                      output_dir: str | Path, threshold: float) -> Path:
    """Annotated images and ``predictions.json`` (COCO results format with category ids and names)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for path, det in results:
        draw_detections(path, det, label_map, threshold).save(output_dir / f"{path.stem}.png")
        keep = det["scores"] >= threshold
        for (x0, y0, x1, y1), label, score in zip(det["boxes"][keep].tolist(), det["labels"][keep].tolist(),
                                                  det["scores"][keep].tolist()):
            records.append({"file_name": path.name, "category_id": label_map.category_ids[label],
                            "category_name": label_map.names[label], "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "score": round(score, 5)})
    out = output_dir / "predictions.json"
    out.write_text(json.dumps(records, indent=1))
    return out
