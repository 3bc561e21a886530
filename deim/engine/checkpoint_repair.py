"""Bring a run folder back to a consistent state after a crash, before training continues.

A run writes ``last.pth`` first and then, on a new best AP, ``best.pth`` (both atomically, see
:func:`deim.engine.checkpointing.atomic_save`). A process killed between the two renames (or
during the second write) leaves ``last.pth`` claiming ``best = this epoch`` while ``best.pth``
still holds an older epoch (or does not exist), and may leave a ``.best.pth.*.tmp`` behind.
:func:`prepare_run_folder` repairs both at the start of every run: temporaries are removed and
``best.pth`` is restored from ``last.pth``, which then holds exactly the weights it lacks.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from deim.engine.checkpointing import TEMPORARY_PATTERN


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
