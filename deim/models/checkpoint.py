"""Load and save model weights in the official DEIM checkpoint layouts.

Accepted inputs (a path or an already loaded object):

* a training checkpoint ``{"ema": {"module": state_dict, ...}, "model": state_dict, ...}``
  (the EMA weights are preferred, as in every official tool);
* a converted checkpoint ``{"model": state_dict}``;
* a bare ``state_dict``.

Keys are the official ones (``backbone.*``, ``decoder.*``, ``encoder.*``); a ``module.`` prefix
left by ``DistributedDataParallel`` is stripped. A tensor whose shape differs from the model's is
refused, naming the key, except:

* when fine-tuning to another number of classes (``num_classes_changed_ok=True``), the class
  heads (``*score_head*`` and ``denoising_class_embed``) keep the model's fresh initialisation;
* ``anchors`` / ``valid_mask``, which depend only on ``eval_spatial_size``, keep the model's values.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

_DERIVED_BUFFERS = ("anchors", "valid_mask")


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did. ``missing``: model keys absent from the checkpoint (left
    as initialised); ``unexpected``: checkpoint keys the model does not have (ignored)."""

    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    kept_derived: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every model tensor came from the checkpoint and nothing was left over."""
        return not (self.missing or self.unexpected or self.reinitialised or self.kept_derived)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from a {self.layout!r} checkpoint"]
        for title, keys in (("missing from the checkpoint (left as initialised)", self.missing),
                            ("unexpected in the checkpoint (ignored)", self.unexpected),
                            ("class heads re-initialised for the new num_classes", self.reinitialised),
                            ("kept from the model (they depend on eval_spatial_size)", self.kept_derived)):
            if keys:
                lines.append(f"{len(keys)} {title}: {', '.join(keys)}")
        return "\n".join(lines)


def is_class_head(key: str) -> bool:
    """Parameters whose shape depends on ``num_classes``."""
    return "score_head" in key or "denoising_class_embed" in key


def extract_state_dict(obj: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """``(state_dict, layout)`` with layout ``"ema"``, ``"model"`` or ``"state_dict"``."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"a checkpoint must be a dict, got {type(obj).__name__}")
    ema = obj.get("ema")
    if isinstance(ema, Mapping) and isinstance(ema.get("module"), Mapping):
        state, layout = ema["module"], "ema"
    elif isinstance(obj.get("model"), Mapping):
        state, layout = obj["model"], "model"
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, layout = obj, "state_dict"
    else:
        expected = "{'ema': {'module': state_dict}}, {'model': state_dict} or a state_dict"
        raise ValueError(f"unrecognised checkpoint: expected {expected}; top-level keys are {sorted(map(str, obj))}")
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, layout


def load_checkpoint(
    model: nn.Module,
    path_or_state: str | Path | Mapping[str, Any],
    num_classes_changed_ok: bool = False,
    strict: bool = False,
) -> LoadReport:
    """Copy checkpoint weights into ``model`` (in place) and report what happened.

    Args:
        model: a model built with the same preset (any ``num_classes`` if ``num_classes_changed_ok``).
        path_or_state: a checkpoint file or a loaded checkpoint / state dict (see the module docstring).
        num_classes_changed_ok: allow class heads of another size; they keep the model's initialisation.
        strict: raise ``ValueError`` if keys are missing or unexpected (they are always reported).

    Raises:
        ValueError: a shape mismatch outside the class heads (the message names each key and both
            shapes), an unrecognised layout, or missing/unexpected keys with ``strict``.
    """
    if isinstance(path_or_state, (str, Path)):
        path_or_state = torch.load(path_or_state, map_location="cpu", weights_only=True)
    state, layout = extract_state_dict(path_or_state)
    own = model.state_dict()
    report = LoadReport(layout=layout)
    report.missing = [k for k in own if k not in state]
    report.unexpected = [k for k in state if k not in own]

    to_load, refused = {}, []
    for key, value in state.items():
        if key not in own:
            continue
        if value.shape == own[key].shape:
            to_load[key] = value
        elif key.rsplit(".", 1)[-1] in _DERIVED_BUFFERS:
            report.kept_derived.append(key)
        elif num_classes_changed_ok and is_class_head(key):
            report.reinitialised.append(key)
        else:
            refused.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}")
    if refused:
        hint = "" if num_classes_changed_ok else (" (to fine-tune to another num_classes, pass "
                                                  "num_classes_changed_ok=True)")
        raise ValueError(f"shape mismatch for {len(refused)} tensor(s){hint}:\n  " + "\n  ".join(refused))
    if strict and (report.missing or report.unexpected):
        raise ValueError(f"strict loading failed:\n{report}")

    model.load_state_dict(to_load, strict=False)
    report.loaded = list(to_load)
    return report


def save_checkpoint(model: nn.Module, path: str | Path, ema_model: nn.Module | None = None) -> Path:
    """Write ``{"model": state_dict, "ema": {"module": state_dict, "updates": 0}}``, the layout every
    official tool reads (the EMA entry holds ``ema_model``'s weights, or the model's if not given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model_state = model.state_dict()
    ema_state = model_state if ema_model is None else ema_model.state_dict()
    torch.save({"model": model_state, "ema": {"module": ema_state, "updates": 0}}, path)
    return path


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> int:
    """Load pretrained backbone weights (e.g. the official ImageNet ``PPHGNetV2_B4_stage1.pth`` or a
    ResNet-vd file, or a detector checkpoint's ``backbone.*`` entries) into ``backbone``, strictly.

    Accepts a plain state dict or any layout :func:`extract_state_dict` knows; a ``backbone.``
    prefix is stripped. Returns the number of tensors loaded; a file that does not fit raises a
    ``ValueError`` naming missing / unexpected / mis-shaped entries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    state, _ = extract_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise ValueError(f"{path} does not fit this backbone: {len(missing)} missing (e.g. {missing[:3]}), "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(shapes)} of another shape "
                         f"(e.g. {shapes[:3]}); is it the backbone of this preset?")
    backbone.load_state_dict(state)
    return len(state)
