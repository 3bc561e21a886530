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
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import torch

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
