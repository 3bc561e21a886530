"""Classification pre-training of a detector's backbone on Fashion-MNIST: the reduced scale's ImageNet.

Every model of the paper starts from an ImageNet-pretrained backbone; a DETR trained from scratch
learns far too slowly for a CPU budget of a few minutes per run. The reduced protocol mirrors the
paper: the backbone of the run's own model (same preset, same overrides) first learns to classify
Fashion-MNIST *train* items, then the detector is trained from it with the usual lower backbone LR.

Each pre-training sample is one item, rescaled to a random size between ``min_item`` and
``image_size`` pixels and pasted at a random position on a canvas of ``image_size`` with a random
grey level and pixel noise (pixels below the detection data's object threshold stay background).
The classifier is global average pooling of the backbone's last returned feature map and one linear
layer (dropped afterwards). Validation canvases of the detection data are built from the t10k
split, which pre-training never sees; its reported accuracy is measured on t10k items.

The result is cached as ``$DEIM_CACHE/pretrained/<key>.pth`` (``~/.cache/deim/pretrained``), keyed
by the preset, the model overrides and :class:`BackbonePretrain`, so every run of a protocol shares
one pre-training. Files are written under a temporary name and renamed: concurrent builders are safe.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deim.cache import atomic_path, cache_entry, content_key
from deim.data.fashion import OBJECT_THRESHOLD
from deim.data.fashion_mnist import load_fashion_mnist
from deim.models.build import build_model
from deim.presets.resolve import resolve_model
from deim.presets.sections import plain


@dataclass(frozen=True)
class BackbonePretrain:
    """The pre-training recipe (hashed into the cache key).

    Args:
        image_size: square canvas of each sample, pixels.
        min_item: smallest rescaled item side, pixels (the largest is ``image_size``).
        iterations: optimizer steps.
        batch_size: samples per step.
        lr / weight_decay: AdamW, cosine decay to zero after ``warmup`` steps of linear warm-up.
        seed: data order, placement and initialisation.
    """

    image_size: int = 64
    min_item: int = 20
    iterations: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if not 8 <= self.min_item <= self.image_size:
            raise ValueError(f"need 8 <= min_item <= image_size, got {self.min_item}, {self.image_size}")
        if self.iterations < 1 or self.batch_size < 1:
            raise ValueError("iterations and batch_size must be positive")


def pretrain_key(preset: str, model_overrides: dict[str, Any], recipe: BackbonePretrain) -> str:
    """The cache key of a pre-training: the resolved backbone section and the recipe. Presets and
    overrides that build the same backbone share it (a decoder-only change reuses the pre-training:
    ``build_model`` creates the backbone first, so its initial weights do not depend on the rest)."""
    backbone = plain(resolve_model(preset, **model_overrides).backbone)
    return content_key({"backbone": backbone, "recipe": asdict(recipe)})


def place_items(items: np.ndarray, size: int, min_item: int, rng: np.random.Generator) -> torch.Tensor:
    """Canvases ``[B, 3, size, size]`` in ``[0, 1]``, one item of ``items`` (``[B, 28, 28]`` uint8) each."""
    b = len(items)
    canvas = np.empty((b, size, size), np.float32)
    grey = rng.uniform(0.0, 0.5, size=(b, 1, 1)).astype(np.float32)
    canvas[:] = grey + rng.normal(0.0, 0.04, size=(b, size, size)).astype(np.float32)
    src = torch.tensor(items, dtype=torch.float32).unsqueeze(1) / 255.0
    for i in range(b):
        side = int(rng.integers(min_item, size + 1))
        item = F.interpolate(src[i:i + 1], size=(side, side), mode="bilinear", align_corners=False)[0, 0].numpy()
        y, x = rng.integers(0, size - side + 1, size=2)
        contrast = rng.uniform(0.6, 1.0)
        region = canvas[i, y:y + side, x:x + side]
        mask = item * 255.0 >= OBJECT_THRESHOLD
        region[mask] = np.clip(item[mask] * contrast + grey[i, 0, 0] * (1 - contrast), 0, 1)
    return torch.from_numpy(np.clip(canvas, 0.0, 1.0)).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


class _Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, channels: int, num_classes: int = 10) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1].mean(dim=(2, 3)))


def _accuracy(model: _Classifier, recipe: BackbonePretrain, n: int = 2000) -> float:
    images, labels = load_fashion_mnist("t10k")
    rng = np.random.default_rng(recipe.seed + 1)
    idx = rng.choice(len(images), size=n, replace=False)
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, n, 250):
            batch = idx[s:s + 250]
            x = place_items(images[batch], recipe.image_size, recipe.min_item, rng)
            correct += int((model(x).argmax(1).numpy() == labels[batch]).sum())
    return correct / n


def train_backbone(backbone: nn.Module, recipe: BackbonePretrain, progress: bool = False) -> dict[str, float]:
    """Pre-train ``backbone`` in place; returns ``{"t10k_accuracy", "seconds", "final_loss"}``."""
    images, labels = load_fashion_mnist("train")
    rng = np.random.default_rng(recipe.seed)
    torch.manual_seed(recipe.seed)
    backbone.eval()
    with torch.no_grad():
        channels = backbone(torch.zeros(1, 3, recipe.image_size, recipe.image_size))[-1].shape[1]
    model = _Classifier(backbone, channels)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)

    def lr_at(step: int) -> float:
        if step < recipe.warmup:
            return recipe.lr * (step + 1) / recipe.warmup
        t = (step - recipe.warmup) / max(recipe.iterations - recipe.warmup, 1)
        return recipe.lr * 0.5 * (1 + np.cos(np.pi * t))

    order = rng.permutation(len(images))
    t0, loss = time.perf_counter(), torch.tensor(0.0)
    model.train()
    for step in range(recipe.iterations):
        start = (step * recipe.batch_size) % len(order)
        batch = order[start:start + recipe.batch_size]
        x = place_items(images[batch], recipe.image_size, recipe.min_item, rng)
        y = torch.from_numpy(labels[batch].astype(np.int64))
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and (step % 50 == 0 or step == recipe.iterations - 1):
            print(f"[deim] backbone pre-training {step + 1}/{recipe.iterations}: loss {loss.item():.3f}", flush=True)
    seconds = time.perf_counter() - t0
    return {"t10k_accuracy": _accuracy(model, recipe), "seconds": seconds, "final_loss": float(loss.detach())}


def pretrained_backbone(preset: str, model_overrides: dict[str, Any], recipe: BackbonePretrain,
                        cache_dir: str | Path | None = None, progress: bool = False) -> Path:
    """Path of the cached pre-trained backbone ``state_dict`` of ``preset`` + overrides (built when missing).

    ``model_overrides`` are ``deim.build_model`` keys; the class count does not change the backbone, so
    leave ``num_classes`` out of them (it would only split the cache).

    Beside it, ``<key>.json`` records the recipe, the t10k accuracy and the time it took.
    """
    path = cache_entry("pretrained", f"{pretrain_key(preset, model_overrides, recipe)}.pth", cache_dir)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)
    backbone = build_model(preset, **model_overrides).backbone
    stats = train_backbone(backbone, recipe, progress=progress)
    if progress:
        print(f"[deim] backbone pre-training done in {stats['seconds']:.0f}s, "
              f"t10k accuracy {stats['t10k_accuracy']:.3f}", flush=True)
    with atomic_path(path) as tmp:
        torch.save(backbone.state_dict(), tmp)
        meta = {"preset": preset, "model": model_overrides, "recipe": asdict(recipe), **stats}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))
    return path
