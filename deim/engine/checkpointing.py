"""Every checkpoint a training run reads or writes, in one place.

* **Writing**: :func:`atomic_save` (temporary file, fsync, rename; a failed write leaves the old
  file intact), :func:`training_checkpoint` (the layout below), :func:`gather_rng_states`.
* **Crash repair**: :func:`prepare_run_folder` removes temporaries of a killed write and restores
  ``best.pth`` from ``last.pth`` when a run died between the two renames.
* **Resume**: :func:`load_training_state` and :func:`resume_training` (weights, EMA, optimiser,
  scaler, progress and every process's RNG states, so the run continues bit for bit).
* **Start weights**: :func:`load_start_weights` (a pre-trained backbone, a backbone file, or
  fine-tuning from any official-layout checkpoint via :func:`deim.models.checkpoint.load_checkpoint`).

Layout (a superset of the official one, so official tools can read the weights)::

    {"model": state_dict, "ema": {"module": state_dict, "updates": n, ...},
     "optimizer": ..., "scaler": ..., "last_epoch": epoch,          # official keys
     "epoch": epoch, "iteration": global_iter,                       # exact resume
     "rng": {...} (rank 0's), "rng_per_rank": [{...}, ...],
     "config": {...}, "label_map": {...}, "best": {...}, "history": [...], "format": "deim/1"}

``epoch`` is the last *finished* epoch; training resumes at ``epoch + 1``.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
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
from deim.models.checkpoint import load_backbone_weights, load_checkpoint
from deim.weights import resolve_weights

FORMAT = "deim/1"


TEMPORARY_PATTERN = ".*.pth.*.tmp"  # what atomic_save writes before renaming


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only, quota); the previous file is intact."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    An interrupted write never leaves a truncated checkpoint behind: the old file stays intact.
    A failed write (a full disk ...) raises :class:`CheckpointWriteError` in one line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        crash_point(path, "written")
        os.replace(tmp, path)
        crash_point(path, "renamed")
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, (OSError, RuntimeError)) and not isinstance(exc, CheckpointWriteError):
            raise CheckpointWriteError(_write_failure(path, exc)) from exc
        raise
    return path


def _write_failure(path: Path, exc: BaseException) -> str:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[0]
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
    except OSError:
        free = "free space unknown"
    kept = f"the previous {path.name} is unchanged" if path.exists() else f"no {path.name} was written"
    return f"cannot write checkpoint {path} ({reason}; {free}; is the disk full?): {kept}"


def crash_point(path: Path, moment: str) -> None:
    """Test hook: ``DEIM_TEST_KILL_AT=<file name>:<moment>[:<n>]`` kills this process with SIGKILL at
    the n-th (default first) time ``moment`` (``written``: the temporary file is complete,
    ``renamed``: it replaced ``path``) is reached for that file. Used by the crash-consistency tests."""
    spec = os.environ.get("DEIM_TEST_KILL_AT")
    if not spec:
        return
    name, when, *count = spec.split(":")
    if name != path.name or when != moment:
        return
    _CRASH_COUNTS[spec] = _CRASH_COUNTS.get(spec, 0) + 1
    if _CRASH_COUNTS[spec] == int(count[0] if count else 1):
        os.kill(os.getpid(), signal.SIGKILL)


_CRASH_COUNTS: dict[str, int] = {}


def load_training_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`atomic_save`; clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # corrupted or not a torch file
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a training checkpoint (no 'model' entry); to start from "
                         f"weights only, use fine-tuning instead of resume")
    missing = [k for k in ("optimizer", "epoch", "iteration") if k not in state]
    if missing:
        raise ValueError(f"{path} lacks {missing} needed to resume exactly; it is a weights file — "
                         f"use it for fine-tuning (--finetune) instead")
    return state


# ---------------------------------------------------------------- crash repair
# A run writes ``last.pth`` first and then, on a new best AP, ``best.pth`` (both atomically). A process
# killed between the two renames (or during the second write) leaves ``last.pth`` claiming ``best = this
# epoch`` while ``best.pth`` still holds an older epoch (or does not exist), and may leave a
# ``.best.pth.*.tmp`` behind: :func:`prepare_run_folder` repairs both at the start of every run.

def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files an interrupted :func:`atomic_save` left in ``folder`` (and below)."""
    folder = Path(folder)
    removed = [p for p in folder.rglob(TEMPORARY_PATTERN) if p.is_file()] if folder.is_dir() else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _peek(path: Path) -> dict | None:
    """The checkpoint at ``path`` memory-mapped (tensors are not read), or ``None`` if unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # missing, truncated or foreign: treated as absent
        return None
    return state if isinstance(state, dict) else None


def repair_best(folder: str | Path) -> str | None:
    """Restore ``best.pth`` from ``last.pth`` when ``last.pth`` says it is the best epoch but
    ``best.pth`` is missing or holds another epoch; returns what was done (``None``: nothing)."""
    folder = Path(folder)
    last_path, best_path = folder / "last.pth", folder / "best.pth"
    last = _peek(last_path) if last_path.is_file() else None
    if last is None or (last.get("best") or {}).get("epoch") != last.get("epoch"):
        return None
    best = _peek(best_path) if best_path.is_file() else None
    if best is not None and best.get("epoch") == last["epoch"]:
        return None
    before = "missing" if best is None else f"at epoch {best.get('epoch')}"
    fd, tmp = tempfile.mkstemp(prefix=".best.pth.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f, open(last_path, "rb") as src:
            shutil.copyfileobj(src, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, best_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return f"restored {best_path} from {last_path.name} (best epoch {last['epoch']}; it was {before})"


def prepare_run_folder(output_dir: str | Path, resume: str | Path | None = None) -> list[str]:
    """Remove temporaries left in ``output_dir`` and, when resuming, repair the checkpoint pair
    beside ``resume``; returns one note per repair (for the log)."""
    notes = [f"removed {p}, left by an interrupted write" for p in remove_temporaries(output_dir)]
    if resume is not None:
        folder = Path(resume).parent
        if folder.resolve() != Path(output_dir).resolve():
            notes += [f"removed {p}, left by an interrupted write" for p in remove_temporaries(folder)]
        repaired = repair_best(folder)
        if repaired:
            notes.append(repaired)
    return notes


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
