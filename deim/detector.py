"""``deim.Detector``: images in, boxes in pixels with scores and category names out.

    det = deim.Detector.from_pretrained("deim_dfine_s_coco")     # or "outputs/fashion/best.pth"
    [result] = det("street.jpg")                                  # PIL images, paths or tensors, any size
    result.boxes, result.scores, result.names                     # [K, 4] xyxy pixels, [K], K names
    det.draw("street.jpg", result).save("street_det.png")
"""
from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import draw_bounding_boxes

from deim.engine.inference import InferenceModel
from deim.pretrained import load_pretrained

ImageLike = Union[Image.Image, str, Path, torch.Tensor, np.ndarray]


@dataclass
class Detections:
    """The detections of one image, best first.

    ``boxes [K, 4]``: xyxy in pixels of the image as given; ``scores [K]`` in [0, 1];
    ``labels [K]``: contiguous class indices; ``names``, ``category_ids``: per detection, the
    category's name and id (COCO ids for the COCO models, the annotation file's ids for ours).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    category_ids: list[int]

    def __len__(self) -> int:
        return len(self.scores)


def to_image_tensor(image: ImageLike) -> torch.Tensor:
    """``[3, H, W]`` float in [0, 1] from a PIL image, an image path, an ``[H, W, 3]`` uint8 array or
    a ``[3, H, W]`` / ``[H, W]`` tensor (uint8 in [0, 255] or float in [0, 1])."""
    if isinstance(image, (str, Path)):
        image = Image.open(image)
    if isinstance(image, Image.Image):
        image = TF.to_image(image.convert("RGB"))
    elif isinstance(image, np.ndarray):
        image = torch.from_numpy(np.array(image))  # a copy: the array may be read-only
        image = image.permute(2, 0, 1) if image.ndim == 3 else image
    if not torch.is_tensor(image):
        raise TypeError(f"expected a PIL image, a path, an array or a tensor, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"an image tensor must be [3, H, W] or [H, W], got shape {tuple(image.shape)}")
    image = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    return TF.to_dtype(image.as_subclass(torch.Tensor), torch.float32, scale=True)


class Detector:
    """A model with its pre- and post-processing (see the module docstring).

    Images are resized to ``image_size`` (square, as in training) and the boxes scaled back to each
    image's own size. ``threshold``: default minimum score of :meth:`__call__`. ``backend``: who runs
    the model, ``"eager"`` PyTorch or ``"onnxruntime"`` (CPU only, same outputs up to 1e-4, faster;
    ``deim.engine.backends``).
    """

    def __init__(self, inference: InferenceModel, threshold: float = 0.5, device: str | torch.device = "cpu",
                 backend: str = "eager") -> None:
        from deim.engine.backends import with_backend  # noqa: PLC0415

        self.threshold = threshold
        self.device = torch.device(device)
        inference.model.to(self.device).eval()
        self.inference = with_backend(inference, backend, self.device)
        self.backend = backend

    @classmethod
    def from_pretrained(cls, spec: str | Path, preset: str | None = None, image_size: int | None = None,
                        threshold: float = 0.5, device: str | torch.device = "cpu",
                        progress: bool = True, backend: str = "eager") -> "Detector":
        """From a released model's name (``deim.list_pretrained()``), an http(s)/``file://`` URL or a
        checkpoint path (ours know their preset and classes; other files need ``preset``)."""
        return cls(load_pretrained(spec, preset=preset, image_size=image_size, device=device, progress=progress),
                   threshold=threshold, device=device, backend=backend)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.inference.label_map.names

    @property
    def image_size(self) -> int:
        return self.inference.image_size

    @torch.no_grad()
    def __call__(self, images: ImageLike | Sequence[ImageLike], threshold: float | None = None,
                 batch_size: int = 8) -> list[Detections]:
        """One :class:`Detections` per image (a single image gives a list of one; a ``[B, 3, H, W]``
        tensor gives B). Detections scoring below ``threshold`` (default ``self.threshold``) are dropped."""
        threshold = self.threshold if threshold is None else threshold
        if torch.is_tensor(images) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        tensors = [to_image_tensor(image) for image in images]
        results: list[Detections] = []
        for start in range(0, len(tensors), batch_size):
            results += self._detect(tensors[start:start + batch_size], threshold)
        return results

    def _detect(self, tensors: list[torch.Tensor], threshold: float) -> list[Detections]:
        size = [self.image_size, self.image_size]
        batch = torch.stack([TF.resize(t, size, antialias=True) for t in tensors]).to(self.device)
        sizes = torch.tensor([[t.shape[-1], t.shape[-2]] for t in tensors], device=self.device)  # (w, h)
        outputs = self.inference.postprocessor(self.inference.model(batch), sizes)
        label_map = self.inference.label_map
        found = []
        for out in outputs:
            keep = out["scores"] >= threshold
            order = out["scores"][keep].argsort(descending=True)
            labels = out["labels"][keep][order].cpu()
            found.append(Detections(boxes=out["boxes"][keep][order].cpu(), scores=out["scores"][keep][order].cpu(),
                                    labels=labels, names=[label_map.names[i] for i in labels.tolist()],
                                    category_ids=[label_map.category_ids[i] for i in labels.tolist()]))
        return found

    def draw(self, image: ImageLike, detections: Detections | None = None, width: int = 2,
             show_scores: bool = True) -> Image.Image:
        """``image`` with ``detections`` (default: detected now) drawn by
        ``torchvision.utils.draw_bounding_boxes``, one colour per class; a PIL image."""
        pixels = TF.to_dtype(to_image_tensor(image), torch.uint8, scale=True)
        if detections is None:
            [detections] = self(pixels)
        captions = [f"{name} {score:.2f}" if show_scores else name
                    for name, score in zip(detections.names, detections.scores.tolist())]
        colors = [_colour(label) for label in detections.labels.tolist()]
        if len(detections):
            pixels = draw_bounding_boxes(pixels, detections.boxes, labels=captions, colors=colors, width=width)
        return TF.to_pil_image(pixels)


def _colour(label: int) -> tuple[int, int, int]:
    """A fixed, well-spread colour per class index (golden-ratio hues)."""
    r, g, b = colorsys.hsv_to_rgb((label * 0.618033988749895) % 1.0, 0.85, 0.95)
    return int(255 * r), int(255 * g), int(255 * b)
