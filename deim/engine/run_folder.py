"""A run's folder on disk: atomic checkpoint writes and the repair of an interrupted run.

* :func:`atomic_save`: a temporary file in the same folder, fsync, rename; a failed write (a full
  disk) raises :class:`CheckpointWriteError` in one line and leaves the old file intact.
* :func:`prepare_run_folder`: at the start of every run, removes the temporaries of a killed write
  and restores ``best.pth`` from ``last.pth`` when a run died between the two renames.

What a checkpoint holds, and reading it back, is :mod:`deim.engine.checkpointing`.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import torch

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
