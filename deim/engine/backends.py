"""Inference backends: who runs the model's forward pass for ``deim eval``, ``deim predict`` and the API.

* ``eager``: the PyTorch model itself (any device);
* ``onnxruntime``: its deploy form exported to ONNX and run by ONNX Runtime on the CPU
  (``deim.models.onnx_runtime``; same outputs up to 1e-4, lower latency on CPU).

The postprocessor is the same for both: a backend only replaces ``InferenceModel.model`` by a
callable returning the eval-mode ``{"pred_logits": [B, Q, C], "pred_boxes": [B, Q, 4] cxcywh}``.
"""
from __future__ import annotations

import dataclasses

import torch

from deim.engine.inference import InferenceModel

BACKENDS = ("eager", "onnxruntime")


def with_backend(im: InferenceModel, backend: str, device: str | torch.device = "cpu") -> InferenceModel:
    """``im`` with its model run by ``backend`` (``im`` itself for ``eager``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "eager":
        return im
    if torch.device(device).type != "cpu":
        raise ValueError(f"--backend {backend} runs on the CPU: use --device cpu")
    from deim.models.onnx_runtime import onnx_runtime_model  # noqa: PLC0415 (optional dependency)

    return dataclasses.replace(im, model=onnx_runtime_model(im.model, im.preset, im.image_size))
