"""Launch ``deim train`` under ``torchrun`` (one node, several GPUs) and stream its output."""
from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence


def torchrun_command(preset: str, data_root: str, gpus: int, output_dir: str,
                     extra: Sequence[str] = ()) -> list[str]:
    """The command line of a full-scale COCO run with the paper's schedule on ``gpus`` GPUs."""
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1, got {gpus}")
    launcher = [shutil.which("torchrun") or "torchrun"]
    return [*launcher, f"--nproc_per_node={gpus}", "-m", "deim", "train", "--preset", preset, "--data", "coco",
            "--data-root", data_root, "--output-dir", output_dir, "--amp", *extra]


def stream(command: Sequence[str]) -> int:
    """Run ``command``, printing its output line by line as it comes; returns the exit code."""
    print("$", " ".join(command), flush=True)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
        return proc.wait()
