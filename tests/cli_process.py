"""Helpers to run ``python -m deim`` in a subprocess, as a user would, and to build small datasets.

Used by the tests of issue 14 ("nothing lost, nothing silent"): every CLI finding is checked on
a real process (exit code, the one line on stderr, no traceback), not on ``main()`` in-process.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# DEIM-D-FINE-N, narrowed, on 16 smoke images of 96 px: one epoch is two iterations.
TINY_MODEL = ["--preset", "deim_dfine_n", "--image-size", "96", "--batch-size", "8", "--workers", "0",
              "--no-progress", "--set", "model.num_queries=12", "--set", "model.num_denoising=6",
              "--set", "model.decoder.num_layers=2", "--set", "schedule.warmup_iter=2"]
TINY = [*TINY_MODEL, "--data", "fashion", "--fashion-scale", "smoke", "--set", "data.train_subset=16",
        "--set", "data.val_subset=8"]


def deim(*args: object, env: dict[str, str] | None = None, timeout: float = 600,
         **popen: object) -> subprocess.CompletedProcess:
    """Run ``python -m deim ARGS`` to completion; stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", "deim", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, env=child_env(env), timeout=timeout, **popen)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, one thread per process, plus ``extra``."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(extra or {})}


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The ``deim <command>: ...`` lines on stderr."""
    return [line for line in result.stderr.splitlines() if line.startswith("deim ")]


def assert_one_line(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """The command exited with ``code`` after exactly one ``deim ...`` line holding every fragment,
    and printed no traceback; returns that line."""
    assert result.returncode == code, f"exit {result.returncode}, stderr:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def small_coco(folder: Path, n_train: int = 8, n_val: int = 4) -> dict[str, Path]:
    """A COCO-format copy of the first images of the built-in smoke data under ``folder``:
    ``train_images``, ``train_json``, ``val_images``, ``val_json``."""
    from deim.data.fashion import fashion_splits

    splits = fashion_splits("smoke")
    out: dict[str, Path] = {}
    for split, n in (("train", n_train), ("val", n_val)):
        images, ann = splits[split]
        data = json.loads(Path(ann).read_text())
        keep = data["images"][:n]
        ids = {im["id"] for im in keep}
        target = folder / split
        target.mkdir(parents=True, exist_ok=True)
        for im in keep:
            (target / im["file_name"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(images) / im["file_name"], target / im["file_name"])
        data = {**data, "images": keep, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
        (folder / f"{split}.json").write_text(json.dumps(data))
        out[f"{split}_images"], out[f"{split}_json"] = target, folder / f"{split}.json"
    return out


def custom_args(data: dict[str, Path]) -> list[str]:
    """``--data custom`` arguments for a :func:`small_coco` folder."""
    return ["--data", "custom", "--train-json", str(data["train_json"]), "--train-images", str(data["train_images"]),
            "--val-json", str(data["val_json"]), "--val-images", str(data["val_images"])]
