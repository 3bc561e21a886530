"""What a training run prints: one line per epoch that stays on screen, and a short summary.

    epoch 2/6  Dense O2O  loss 32.43 (mal 0.091 bbox 0.225 giou 0.764 fgl 0.061)  AP 0.3 AP50 1.2  16 s  3.9 img/s

The progress bars (tqdm) disappear when their epoch ends; these lines remain. Every number is
also in ``log.csv`` / ``log.jsonl`` (and TensorBoard when installed).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

STAGES = {"warmup": "warm-up", "dense_o2o": "Dense O2O", "standard": "standard", "no_aug": "no-aug"}
# the main decoder layer's terms, in this order (VFL for the baselines, MAL for DEIM)
MAIN_TERMS = ("loss_vfl", "loss_mal", "loss_focal", "loss_bbox", "loss_giou", "loss_fgl")


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """One line for a ``log.jsonl`` row: epoch, stage, total and main-layer losses, AP and AP50 (%,
    when evaluated), training seconds and images/s."""
    width = len(str(epochs))
    parts = [f"epoch {row['epoch'] + 1:>{width}}/{epochs}", f"{STAGES.get(row.get('stage'), row.get('stage')):<9}"]
    terms = " ".join(f"{k[5:]} {row[k]:.3f}" for k in MAIN_TERMS if k in row)
    if "loss" in row:
        parts.append(f"loss {row['loss']:.2f}" + (f" ({terms})" if terms else ""))
    if "AP" in row:
        parts.append(f"AP {100 * row['AP']:.1f} AP50 {100 * row['AP50']:.1f}")
    parts.append(f"{row.get('train_seconds', 0):.0f} s")
    parts.append(f"{row.get('images_per_s', 0):.1f} img/s")
    if row.get("skipped_steps"):
        parts.append(f"{row['skipped_steps']} non-finite steps skipped")
    return "  ".join(parts)


def duration(seconds: float) -> str:
    """``75.2`` -> ``"1 min 15 s"``; ``4000`` -> ``"1 h 6 min"``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def summary(history: Sequence[dict[str, Any]], best: dict[str, Any], seconds: float, output_dir: str | Path,
            tensorboard: bool) -> str:
    """The end of a run: best AP and its epoch, total time, where the checkpoints and logs are."""
    out = Path(output_dir)
    epochs = len(history)
    lines = [f"[deim] finished: {epochs} epoch{'s' * (epochs != 1)} in {duration(seconds)}"]
    if best:
        row = next((r for r in history if r.get("epoch") == best["epoch"]), {})
        ap50 = f", AP50 {100 * row['AP50']:.1f}" if "AP50" in row else ""
        lines.append(f"  best AP {100 * best['AP']:.1f}{ap50} at epoch {best['epoch'] + 1}")
        if best["AP"] == 0:
            lines.append("  (AP stayed 0: too little training to detect anything yet, as at smoke scale; "
                         "predict with --threshold 0.05 to see the raw boxes)")
    lines.append(f"  checkpoints: {out / 'best.pth'} (best AP), {out / 'last.pth'} (resume with --resume)")
    logs = f"  logs: {out / 'log.csv'}, {out / 'log.jsonl'}, {out / 'config.yaml'}"
    if tensorboard:
        logs += f"; tensorboard --logdir {out / 'tensorboard'}"
    lines.append(logs)
    return "\n".join(lines)
