"""`FigureWriter`: what a notebook uses to save its figures (PNG) and tables (CSV + Markdown).

Each output gets a sibling ``<name>.provenance.json`` with the notebook, scale, parameters,
git commit, package versions, machine and the wall time since the writer was created.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from deim.provenance import provenance

SCALES = ("smoke", "reduced", "full")


def default_figures_dir(scale: str) -> Path:
    """``figures/<scale>`` under the current working directory (the repository root in practice)."""
    return Path("figures") / scale


class FigureWriter:
    """Writes one notebook's outputs into ``figures_dir`` with provenance.

    Args:
        notebook: the notebook's name, e.g. ``"01_mal_vs_vfl"``; outputs are prefixed with it.
        scale: ``smoke``, ``reduced`` or ``full``.
        figures_dir: where to write; default ``figures/<scale>``.
        params: the notebook's parameters, stored in every provenance record.
    """

    def __init__(self, notebook: str, scale: str, figures_dir: str | Path | None = None,
                 params: dict[str, Any] | None = None) -> None:
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.notebook = notebook
        self.scale = scale
        self.dir = Path(figures_dir) if figures_dir else default_figures_dir(scale)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.params = dict(params or {})
        self._t0 = time.perf_counter()
        self.written: list[Path] = []

    def _stem(self, name: str) -> Path:
        return self.dir / f"{self.notebook}__{name}"

    def _record(self, stem: Path, kind: str, extra: dict[str, Any] | None) -> None:
        rec = provenance(notebook=self.notebook, output=stem.name, kind=kind, scale=self.scale,
                         params=self.params, wall_time_s=round(time.perf_counter() - self._t0, 3),
                         **(extra or {}))
        path = stem.with_name(stem.name + ".provenance.json")
        path.write_text(json.dumps(rec, indent=2, default=str) + "\n")
        self.written.append(path)

    def save_figure(self, fig, name: str, extra: dict[str, Any] | None = None, dpi: int = 120) -> Path:
        """Save a matplotlib figure as ``<notebook>__<name>.png`` (+ provenance)."""
        stem = self._stem(name)
        path = stem.with_suffix(".png")
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        self.written.append(path)
        self._record(stem, "figure", extra)
        return path

    def save_table(self, df, name: str, caption: str = "", extra: dict[str, Any] | None = None,
                   floatfmt: str = ".4g") -> Path:
        """Save a pandas DataFrame as CSV and Markdown (with an optional caption line)."""
        stem = self._stem(name)
        csv_path = stem.with_suffix(".csv")
        df.to_csv(csv_path, index=False)
        md = markdown_table(df, floatfmt)
        md_path = stem.with_suffix(".md")
        md_path.write_text((f"{caption}\n\n" if caption else "") + md + "\n")
        self.written += [csv_path, md_path]
        self._record(stem, "table", extra)
        return md_path


def markdown_table(df, floatfmt: str = ".4g") -> str:
    """A GitHub Markdown table of a DataFrame (floats formatted with ``floatfmt``)."""
    def fmt(v: Any) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, sep, *rows])
