"""Models with weights, from a released model's name, a URL, or a checkpoint file.

    model = deim.from_pretrained("deim_dfine_s_coco")     # eval mode, COCO's 80 classes
    model = deim.from_pretrained("outputs/fashion/best.pth")   # one of ours: preset and classes inside

Names are listed by ``deim.list_pretrained()`` (:mod:`deim.zoo`); files are fetched and cached by
:func:`deim.weights.resolve_weights`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from deim.engine.checkpointing import read_checkpoint
from deim.engine.inference import InferenceModel, load_for_inference
from deim.weights import resolve_weights
from deim.zoo import find_pretrained


def load_pretrained(spec: str | Path, preset: str | None = None, image_size: int | None = None,
                    device: str | torch.device = "cpu", progress: bool = True,
                    model_overrides: dict | None = None) -> InferenceModel:
    """The (EMA) model of ``spec`` in eval mode with its post-processor and label map.

    ``spec``: a released model's name (its preset and class count are known), an http(s) or
    ``file://`` URL, or a path. Our checkpoints carry their preset, model overrides, image size
    and label map; any other file needs ``preset`` (COCO's 80 classes are then assumed).
    ``image_size`` (default: the checkpoint's, else 640) is the square size images are resized to.
    """
    entry = find_pretrained(str(spec))
    state = read_checkpoint(resolve_weights(spec, progress=progress))
    overrides = dict(entry.model) if entry is not None else {}
    overrides.update(model_overrides or {})
    return load_for_inference(state, preset=preset or (entry.preset if entry else None), image_size=image_size,
                              num_classes=entry.num_classes if entry else None, device=device,
                              model_overrides=overrides)


def from_pretrained(spec: str | Path, preset: str | None = None, image_size: int | None = None,
                    device: str | torch.device = "cpu", progress: bool = True) -> nn.Module:
    """The model of ``spec`` (see :func:`load_pretrained`) in eval mode: ``model(images [B, 3, H, W]
    in [0, 1])`` returns ``pred_logits [B, Q, C]`` and ``pred_boxes [B, Q, 4]`` (cxcywh, normalised).
    ``deim.Detector.from_pretrained`` adds pre- and post-processing."""
    return load_pretrained(spec, preset=preset, image_size=image_size, device=device, progress=progress).model
