"""A fast CPU inference path: the eval-mode detector run by ONNX Runtime.

``onnx_runtime_model(model, preset, image_size)`` returns an :class:`OnnxRuntimeModel`, a drop-in
replacement for the eager model in eval mode: called with ``images [B, 3, S, S]`` (floats in
``[0, 1]``, ``S`` the export size) it returns the same dict as ``model.eval()(images)``:

* ``pred_logits [B, Q, C]``: class logits (scores are their sigmoid);
* ``pred_boxes [B, Q, 4]``: ``cxcywh`` normalised to ``[0, 1]``.

So the usual postprocessor turns them into detections (``deim eval``, ``deim predict``,
``predict_loader``), unchanged. The graph is the *deploy* form of the model (``model.deploy()``:
re-parameterised convolutions fused, unused decoder layers dropped), which gives the eval-mode
outputs up to float rounding (``tests/test_onnx_runtime.py`` checks 1e-4 on boxes and scores).

Sessions are cached per (preset, image size, model fingerprint), in memory and as ``.onnx`` files
under ``deim.cache.cache_dir("onnx")``; the fingerprint hashes the weights, every module's plain
hyper-parameters (so ``num_queries`` and the like count) and the torch version, so a changed model
is exported again instead of served stale. Needs ``onnx`` and ``onnxruntime``
(``pip install 'deim[export]'``); CPU only.
"""
from __future__ import annotations

import copy
import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deim.cache import atomic_path, cache_dir

OUTPUT_NAMES = ("pred_logits", "pred_boxes")
OPSET = 17
_SESSIONS: dict[tuple[str, int, str], Any] = {}


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or one clear error naming the install command."""
    try:
        import onnx  # noqa: F401, PLC0415
        import onnxruntime  # noqa: PLC0415
    except ImportError:
        raise ImportError("the onnxruntime backend needs onnx and onnxruntime: pip install 'deim[export]'") from None
    return onnxruntime


class _EvalOutputs(nn.Module):
    """``images -> (pred_logits, pred_boxes)``: the eval-mode dict as a tuple, for export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(images)
        return out["pred_logits"], out["pred_boxes"]


def _plain(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str, type(None))):
        return True
    return isinstance(value, (tuple, list)) and all(_plain(v) for v in value)


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of the weights, every module's type and plain hyper-parameters
    (ints, floats, strings, tuples of them) and the torch version."""
    h = hashlib.sha256(f"torch {torch.__version__} opset {OPSET}".encode())
    for name, module in model.named_modules():
        attributes = sorted((k, repr(v)) for k, v in vars(module).items() if not k.startswith("_") and _plain(v))
        h.update(f"{name}:{type(module).__name__}:{attributes}".encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def export_eval_model(model: nn.Module, path: str | Path, image_size: int) -> Path:
    """Write the deploy form of ``model`` (a copy; the caller's is unchanged) as ONNX:
    input ``images [N, 3, S, S]``, outputs ``pred_logits [N, Q, C]``, ``pred_boxes [N, Q, 4]``
    (cxcywh normalised); the batch dimension ``N`` is dynamic, ``S = image_size`` is fixed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deployed = copy.deepcopy(model).cpu()
    deployed = deployed.deploy() if hasattr(deployed, "deploy") else deployed.eval()
    wrapper = _EvalOutputs(deployed).eval()
    images = torch.rand(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    # atomic (deim.cache.atomic_path): parallel processes never read a half-written file
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer and constant-folding notes
        torch.onnx.export(wrapper, (images,), str(tmp), input_names=["images"], output_names=list(OUTPUT_NAMES),
                          dynamic_axes={n: {0: "N"} for n in ("images", *OUTPUT_NAMES)}, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)
    return path


def _session(path: Path, threads: int | None) -> Any:
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeModel:
    """The eval-mode detector as an ONNX Runtime session (see the module docstring).

    Duck-types the parts of ``nn.Module`` that inference code uses: calling it, ``eval()`` and
    ``to("cpu")`` (both no-ops returning ``self``).
    """

    def __init__(self, session: Any, image_size: int, preset: str) -> None:
        self.session = session
        self.image_size = image_size
        self.preset = preset

    def __call__(self, images: torch.Tensor, targets: Any = None) -> dict[str, torch.Tensor]:
        """``images [B, 3, S, S]`` in ``[0, 1]`` -> ``{"pred_logits": [B, Q, C], "pred_boxes": [B, Q, 4]}``."""
        if targets is not None:
            raise ValueError("the onnxruntime backend is for inference only (no targets)")
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(f"the onnxruntime model of {self.preset} takes images [B, 3, {self.image_size}, "
                             f"{self.image_size}], got {tuple(images.shape)}")
        device = images.device
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        logits, boxes = self.session.run(list(OUTPUT_NAMES), {"images": array})
        return {"pred_logits": torch.from_numpy(logits).to(device), "pred_boxes": torch.from_numpy(boxes).to(device)}

    def eval(self) -> "OnnxRuntimeModel":
        return self

    def to(self, device: str | torch.device, *args: Any, **kwargs: Any) -> "OnnxRuntimeModel":
        if torch.device(device).type != "cpu":
            raise ValueError("the onnxruntime backend runs on the CPU (use --device cpu / device='cpu')")
        return self


def onnx_runtime_model(model: nn.Module, preset: str, image_size: int, threads: int | None = None,
                       folder: str | Path | None = None) -> OnnxRuntimeModel:
    """``model``'s eval-mode outputs through ONNX Runtime (exported on first use, then cached).

    Args:
        model: a DEIM model (any mode; a deploy-form copy is exported, ``model`` is unchanged).
        preset: its preset name (part of the cache key and file name).
        image_size: the square input size ``S`` the graph is made for.
        threads: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``).
        folder: where the ``.onnx`` files are kept (default ``cache_dir("onnx")``).
    """
    require_onnxruntime()
    fingerprint = model_fingerprint(model)
    key = (preset, int(image_size), f"{fingerprint}:{threads}")
    if key not in _SESSIONS:
        path = Path(folder or cache_dir("onnx")) / f"{preset}-{image_size}-{fingerprint}.onnx"
        if not path.is_file():
            export_eval_model(model, path, image_size)
        _SESSIONS[key] = _session(path, threads)
    return OnnxRuntimeModel(_SESSIONS[key], int(image_size), preset)
