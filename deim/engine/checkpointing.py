"""Every checkpoint deim reads or writes, in one place: what it holds and how it is read back.

* **Official layouts** (weights only): :func:`load_checkpoint` copies a training checkpoint
  ``{"ema": {"module": state_dict}, "model": ...}`` (EMA preferred, as in every official tool), a
  converted ``{"model": state_dict}`` or a bare ``state_dict`` into a model, refusing a tensor of
  another shape by name, except the class heads when fine-tuning to another ``num_classes``
  (``num_classes_changed_ok``) and ``anchors`` / ``valid_mask`` (they depend only on
  ``eval_spatial_size``); a ``module.`` prefix left by DDP is stripped. :func:`save_checkpoint`
  writes the layout official tools read; :func:`load_backbone_weights` a backbone file.
* **A training run's checkpoint**: :func:`training_checkpoint` (the layout below),
  :func:`gather_rng_states`; written with :func:`deim.engine.run_folder.atomic_save`.
* **Resume**: :func:`load_training_state` and :func:`resume_training` (weights, EMA, optimiser,
  scaler, progress and every process's RNG states, so the run continues bit for bit).
* **Start weights**: :func:`load_start_weights` (a pre-trained backbone, a backbone file, or
  fine-tuning from any official-layout checkpoint through :func:`load_checkpoint`).

Layout of a training checkpoint (a superset of the official one, so official tools read the weights)::

    {"model": state_dict, "ema": {"module": state_dict, "updates": n, ...},
     "optimizer": ..., "scaler": ..., "last_epoch": epoch,          # official keys
     "epoch": epoch, "iteration": global_iter,                       # exact resume
     "rng": {...} (rank 0's), "rng_per_rank": [{...}, ...],
     "config": {...}, "label_map": {...}, "best": {...}, "history": [...], "format": "deim/1"}

``epoch`` is the last *finished* epoch; training resumes at ``epoch + 1``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from deim.data.labels import LabelMap
from deim.engine.backbone_pretrain import pretrained_backbone
from deim.engine.config import TrainConfig
from deim.engine.distributed import DistInfo
from deim.engine.ema import unwrap
from deim.engine.resume_check import check_resume_matches
from deim.engine.seeding import rng_state, set_rng_state
from deim.engine.train_loop import TrainingState
from deim.weights import resolve_weights

# ---------------------------------------------------------------- official layouts (weights)

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


# ---------------------------------------------------------------- a training run's checkpoint

FORMAT = "deim/1"


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The content of checkpoint ``path`` (any layout); one clear error if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # not a torch file, or truncated
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a checkpoint dictionary")
    return state


def load_training_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A training checkpoint (:func:`training_checkpoint`) to resume from; clear errors for missing,
    foreign or weights-only files."""
    state = read_checkpoint(path, map_location)
    if "model" not in state:
        raise ValueError(f"{path} is not a training checkpoint (no 'model' entry); to start from "
                         f"weights only, use fine-tuning instead of resume")
    missing = [k for k in ("optimizer", "epoch", "iteration") if k not in state]
    if missing:
        raise ValueError(f"{path} lacks {missing} needed to resume exactly; it is a weights file — "
                         f"use it for fine-tuning (--finetune) instead")
    return state


# ---------------------------------------------------------------- training state: write and resume

@dataclass
class RunProgress:
    """Where a run stands: the next epoch, the global iteration, the per-epoch rows, the best AP."""

    start_epoch: int = 0
    iteration: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)


def gather_rng_states(train: TrainingState, info: DistInfo) -> list[dict[str, Any]]:
    """Every process's RNG states (Python, NumPy, torch, CUDA, the train loader's generator),
    indexed by rank. A collective under DDP: every process must call it."""
    rng = rng_state()
    rng["loader"] = train.loader.generator.get_state()
    if not info.enabled:
        return [rng]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, rng)
    return gathered


def training_checkpoint(train: TrainingState, run: RunProgress, epoch: int, rngs: list[dict[str, Any]],
                        config: dict[str, Any], label_map: LabelMap) -> dict[str, Any]:
    """The checkpoint after ``epoch`` (the layout of the module docstring; ``rngs`` from
    :func:`gather_rng_states`, ``config`` from ``TrainConfig.to_dict``)."""
    return {"model": unwrap(train.model).state_dict(), "ema": train.ema.state_dict(),
            "optimizer": train.optimizer.state_dict(),
            "scaler": train.scaler.state_dict() if train.scaler is not None else None,
            "last_epoch": epoch, "epoch": epoch, "iteration": run.iteration,
            "rng": rngs[0], "rng_per_rank": rngs,
            "config": config, "label_map": label_map.to_dict(), "best": dict(run.best),
            "history": list(run.history), "format": FORMAT}


def resume_training(path: str | Path, train: TrainingState, cfg: TrainConfig, label_map: LabelMap,
                    info: DistInfo) -> RunProgress:
    """Load checkpoint ``path`` into ``train`` (weights, EMA, optimiser, scaler, this process's RNG
    states) after checking it was trained with the same model and categories; its progress."""
    state = load_training_state(path, map_location=train.device)
    check_resume_matches(state.get("config"), cfg.preset, cfg.model, str(path))
    saved = LabelMap.from_dict(state["label_map"])
    if saved != label_map:
        raise ValueError(f"{path} was trained with other categories ({saved.num_classes} classes) than this "
                         f"dataset ({label_map.num_classes}); use --finetune to start from its weights")
    unwrap(train.model).load_state_dict(state["model"])
    train.ema.load_state_dict(state["ema"])
    train.optimizer.load_state_dict(state["optimizer"])
    if train.scaler is not None and state.get("scaler"):
        train.scaler.load_state_dict(state["scaler"])
    run = RunProgress(int(state["epoch"]) + 1, int(state["iteration"]), list(state.get("history", [])),
                      dict(state.get("best", {})))
    per_rank = state.get("rng_per_rank") or [state["rng"]]
    if len(per_rank) != info.world_size and info.is_main:
        print(f"[deim] note: {path} was written by {len(per_rank)} process(es), this run has "
              f"{info.world_size}: training continues, but not bit for bit")
    rng = dict(per_rank[info.rank % len(per_rank)])
    train.loader.generator.set_state(rng.pop("loader").cpu())
    set_rng_state({k: (v.cpu() if torch.is_tensor(v) else v) for k, v in rng.items()})
    if info.is_main:
        print(f"[deim] resumed from {path}: continuing at epoch {run.start_epoch}, iteration {run.iteration}")
    return run


def snapshot_path(output_dir: str | Path, epoch: int) -> Path:
    """Where a run keeps the EMA weights after ``epoch`` (``TrainConfig.snapshot_epochs``)."""
    return Path(output_dir) / "snapshots" / f"ema_e{epoch:03d}.pth"


# ---------------------------------------------------------------- start weights

def load_start_weights(model: nn.Module, cfg: TrainConfig, info: DistInfo, progress: bool = True) -> None:
    """Load the weights a run starts from into ``model`` (unwrapped, before BatchNorm is changed):
    the pre-trained backbone of ``cfg.backbone_pretrain``, then ``cfg.backbone_weights``, then the
    fine-tuning checkpoint ``cfg.finetune`` (a zoo name, path or URL, any official layout; class
    heads of another ``num_classes`` keep their fresh initialisation)."""
    if cfg.backbone_pretrain is not None:
        path = pretrained_backbone(cfg.preset, cfg.model, cfg.backbone_pretrain, progress=progress)
        model.backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    if cfg.backbone_weights:
        n = load_backbone_weights(model.backbone, cfg.backbone_weights)
        if info.is_main:
            print(f"[deim] backbone: {n} tensors from {cfg.backbone_weights}")
    if cfg.finetune:
        report = load_checkpoint(model, resolve_weights(cfg.finetune, progress=info.is_main),  # NAME|PATH|URL
                                 num_classes_changed_ok=True)
        if info.is_main:
            print(f"[deim] fine-tuning from {cfg.finetune}: {report}")
