"""Export a detector with its postprocessor to ONNX.

The exported graph takes ``images [N, 3, H, W]`` (floats in ``[0, 1]``, the export size) and
``orig_target_sizes [N, 2]`` (``(width, height)`` of the original images, int64) and returns
``labels [N, K]`` (int64), ``boxes [N, K, 4]`` (``xyxy`` in original-image pixels) and
``scores [N, K]``, with ``K = num_top_queries``. The batch dimension is dynamic by default.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn


class DetectorWithPostprocessor(nn.Module):
    """``(images, orig_target_sizes) -> (labels, boxes, scores)``, batched tensors for export.

    A postprocessor in deploy mode returns that tuple itself (one batched top-k, so the batch
    dimension stays symbolic); a list of per-image dicts is stacked, which traces the batch size
    as a constant.
    """

    def __init__(self, model: nn.Module, postprocessor: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.postprocessor = postprocessor

    def forward(self, images: torch.Tensor, orig_target_sizes: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        results = self.postprocessor(self.model(images), orig_target_sizes)
        if isinstance(results, tuple):
            return results
        labels = torch.stack([r["labels"] for r in results])
        boxes = torch.stack([r["boxes"] for r in results])
        scores = torch.stack([r["scores"] for r in results])
        return labels, boxes, scores


def export_onnx(
    model: nn.Module,
    postprocessor: nn.Module,
    path: str | Path,
    image_size: int | tuple[int, int] = 640,
    opset: int = 17,
    dynamic_batch: bool = True,
) -> Path:
    """Write ``model`` + ``postprocessor`` as an ONNX file (TorchScript-based exporter).

    ``model`` and ``postprocessor`` are copied and switched to deploy mode (``deploy()``) first;
    the caller's objects are unchanged.
    The postprocessor must not remap COCO category ids (``remap_mscoco_category=False``): the
    exported labels are the contiguous class indices ``0 .. num_classes - 1``.

    Args:
        image_size: ``s`` or ``(H, W)``, the input size the graph is traced (and valid) for.
        opset: ONNX opset version (at least 17).
        dynamic_batch: make the batch dimension of inputs and outputs symbolic (``N``).
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    if getattr(postprocessor, "remap_mscoco_category", False):
        raise ValueError("export needs remap_mscoco_category=False; map labels to COCO ids after inference")
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    deployed = copy.deepcopy(model).deploy()
    post = copy.deepcopy(postprocessor).eval()
    if hasattr(post, "deploy"):
        post = post.deploy()
    wrapper = DetectorWithPostprocessor(deployed, post).eval()

    images = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    sizes = torch.tensor([[width, height]], dtype=torch.int64)
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: "N"} for name in ("images", "orig_target_sizes", "labels", "boxes", "scores")}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (images, sizes),
            str(path),
            input_names=["images", "orig_target_sizes"],
            output_names=["labels", "boxes", "scores"],
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return path
