"""Per-epoch run logs: ``log.jsonl`` (one JSON object per epoch), ``log.csv`` (rewritten each
epoch, columns = every key seen) and TensorBoard scalars when ``tensorboard`` is installed."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class RunLog:
    """Append one row per epoch; a no-op when ``enabled`` is false (non-main processes)."""

    def __init__(self, output_dir: str | Path, enabled: bool = True) -> None:
        self.dir = Path(output_dir)
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        self._tb = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        jsonl = self.dir / "log.jsonl"
        if jsonl.is_file():  # a resumed run continues its log
            self.rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.dir / "tensorboard"))
        except ImportError:
            self._tb = None

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.rows = [r for r in self.rows if r.get("epoch") != row.get("epoch")] + [row]
        with open(self.dir / "log.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.rows)
        columns = list(dict.fromkeys(k for r in self.rows for k in r))
        with open(self.dir / "log.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        if self._tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self._tb.add_scalar(key, value, row["epoch"])
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
