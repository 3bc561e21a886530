"""Provenance of a result: which code, which settings, which machine, how long.

Every figure and table the notebooks write carries a JSON record made here, so a reader can
tell how a number was produced without trusting the prose around it.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("deim", "torch", "torchvision", "numpy", "scipy", "pycocotools", "faster-coco-eval",
             "matplotlib", "pandas", "papermill")


def git_state(cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` for the checkout holding ``cwd``; ``dirty``:
    tracked files outside ``figures/`` differ from the commit."""
    cwd = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        # the figures themselves are not code: a reproduction rewriting figures/ keeps the tree clean
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                     ":(top,exclude)figures"], cwd=cwd, capture_output=True, text=True,
                                    timeout=10, check=True).stdout.strip())
        return {"commit": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "processor": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return info


def provenance(**fields: Any) -> dict[str, Any]:
    """A provenance record: the given fields plus git state, package versions, machine and time."""
    record = dict(fields)
    record.update(git=git_state(), packages=package_versions(), machine=machine(),
                  created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return record
