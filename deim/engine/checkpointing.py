"""Training checkpoints: written atomically, holding everything an exact resume needs.

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
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "deim/1"


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    An interrupted write never leaves a truncated checkpoint behind: the old file stays intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
