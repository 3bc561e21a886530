"""Train one experiment run with the engine and return what the run cache stores."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from deim.engine.config import TrainConfig
from deim.engine.fit import Trainer
from deim.provenance import provenance


def train_run(cfg: TrainConfig, progress: bool = False) -> tuple[list[dict[str, Any]], dict[str, float], Path,
                                                                  dict[str, Any]]:
    """Train ``cfg`` (resuming from its ``last.pth`` when an earlier attempt was interrupted).

    Returns ``(history, final COCO stats, checkpoint path, provenance)``.
    """
    last = Path(cfg.output_dir) / "last.pth"
    if last.is_file() and cfg.resume is None:
        cfg.resume = str(last)
    trainer = Trainer(cfg, progress=progress)
    history = trainer.fit()
    final = {k: v for k, v in history[-1].items() if k.startswith(("AP", "AR"))}
    return history, final, last, provenance(config=cfg.to_dict(), seed=cfg.seed)
