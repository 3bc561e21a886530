"""Run the paper notebooks with papermill at a given scale.

The percent-format ``notebooks/NN_topic.py`` files are the source of truth: each is converted
with jupytext, parameterised (``scale``, ``figures_dir``, ``interactive=False``) and executed
by papermill; the executed notebook lands in ``outputs/notebooks/<scale>/`` and the figures in
``figures/<scale>/`` with provenance. An ``INDEX.md`` lists what ran, how long, and its outputs.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deim.report.writer import SCALES, default_figures_dir


# Notebooks that run at smoke scale always but at larger scales only when named in ``only``: the
# protocol pilot trains its own candidate runs, which a reproduction of the study does not need.
OPT_IN = {"12": "the protocol pilot (trains its candidates' runs; hours at reduced scale)"}


@dataclass
class NotebookRun:
    name: str
    seconds: float
    ok: bool
    error: str = ""
    outputs: list[str] = field(default_factory=list)


def discover(notebooks_dir: str | Path, only: list[str] | None = None) -> list[Path]:
    """The ``NN_topic.py`` notebooks in ``notebooks_dir``, sorted; ``only`` filters by name or number."""
    root = Path(notebooks_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {root.resolve()}: run from the repository root "
                                f"or pass --notebooks-dir")
    paths = sorted(p for p in root.glob("[0-9][0-9]_*.py"))
    if only:
        wanted = set(only)
        picked = [p for p in paths if p.stem in wanted or p.stem[:2] in wanted
                  or any(p.stem.startswith(w) for w in wanted)]
        unknown = [w for w in wanted if not any(p.stem == w or p.stem.startswith(w) for p in paths)]
        if unknown:
            raise ValueError(f"unknown notebook(s) {unknown}; available: {[p.stem for p in paths]}")
        paths = picked
    return paths


def run_notebook(path: Path, scale: str, figures_dir: Path, output_dir: Path, cwd: Path,
                 params: dict | None = None, progress: bool = False) -> NotebookRun:
    """Execute one notebook; never raises for a failing notebook, returns the error instead."""
    import jupytext
    import papermill

    output_dir.mkdir(parents=True, exist_ok=True)
    source = output_dir / f"{path.stem}.input.ipynb"
    executed = output_dir / f"{path.stem}.ipynb"
    jupytext.write(jupytext.read(path), source)
    started = time.time()
    parameters = {"scale": scale, "figures_dir": str(figures_dir.resolve()), "interactive": False}
    parameters.update(params or {})
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(str(source), str(executed), parameters=parameters, kernel_name="python3",
                                   cwd=str(cwd), progress_bar=progress, log_output=False)
        ok, error = True, ""
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        ok, error = False, f"{type(exc).__name__}: {exc}"[-4000:]
    finally:
        source.unlink(missing_ok=True)
    # everything the notebook (re)wrote during this run, provenance records aside
    outputs = sorted(p.name for p in figures_dir.glob(f"{path.stem}__*")
                     if not p.name.endswith(".json") and p.stat().st_mtime >= started - 1.0) if figures_dir.exists() else []
    return NotebookRun(path.stem, time.perf_counter() - t0, ok, error, outputs)


def reproduce(scale: str, only: list[str] | None = None, notebooks_dir: str | Path = "notebooks",
              figures_dir: str | Path | None = None, output_dir: str | Path | None = None,
              params: dict | None = None, progress: bool = True, jobs: int = 1) -> list[NotebookRun]:
    """Execute every notebook (or ``only`` some) at ``scale``; write ``INDEX.md`` in the figures dir.

    ``jobs > 1`` first trains the experiment runs the selected notebooks need, that many at a time
    (:func:`deim.experiments.parallel.train_notebook_runs`; a notebook declares the runs it reads by
    importing their setting groups from :mod:`deim.experiments.settings`); the notebooks then read
    them from the run cache.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    paths = discover(notebooks_dir, only)
    if scale != "smoke":
        named = set(only or ())
        skipped = [p.stem for p in paths if p.stem[:2] in OPT_IN and not (named & {p.stem, p.stem[:2]})]
        if skipped and progress:
            print(f"[deim] skipping {', '.join(skipped)} at scale {scale} ({'; '.join(OPT_IN[s[:2]] for s in skipped)}): "
                  f"name it with --only to run it", flush=True)
        paths = [p for p in paths if p.stem not in skipped]
    if jobs > 1:
        from deim.experiments.parallel import train_notebook_runs

        train_notebook_runs(scale, paths, (params or {}).get("data_root"), jobs=jobs,
                            progress=progress)
    cwd = Path(notebooks_dir).resolve().parent
    figures = Path(figures_dir) if figures_dir else cwd / default_figures_dir(scale)
    figures.mkdir(parents=True, exist_ok=True)
    outputs = Path(output_dir) if output_dir else cwd / "outputs" / "notebooks" / scale
    runs = []
    for i, path in enumerate(paths, 1):
        if progress:
            print(f"[{i}/{len(paths)}] {path.stem} (scale={scale}) ...", flush=True)
        run = run_notebook(path, scale, figures, outputs, cwd, params)
        runs.append(run)
        if progress:
            status = "ok" if run.ok else "FAILED"
            print(f"    {status} in {run.seconds:.1f}s; wrote {len(run.outputs)} file(s)", flush=True)
            if not run.ok:
                print("    " + run.error.replace("\n", "\n    ")[-2000:], flush=True)
    write_index(figures / "INDEX.md", scale, runs)
    return runs


def write_index(path: Path, scale: str, runs: list[NotebookRun]) -> None:
    """Update ``INDEX.json`` (kept across partial ``--only`` runs) and render ``INDEX.md`` from it."""
    store = path.with_suffix(".json")
    known = {r["name"]: r for r in json.loads(store.read_text())} if store.exists() else {}
    known.update({r.name: asdict(r) for r in runs})
    ordered = [known[k] for k in sorted(known)]
    store.write_text(json.dumps(ordered, indent=2) + "\n")
    runs = [NotebookRun(**r) for r in ordered]
    lines = [f"# Figures and tables at scale `{scale}`", "",
             "Regenerate with `python -m deim reproduce --scale " + scale + "`.", "",
             "| notebook | status | seconds | outputs |", "|---|---|---|---|"]
    for r in runs:
        files = ", ".join(f"[{o}]({o})" for o in r.outputs) or "-"
        lines.append(f"| {r.name} | {'ok' if r.ok else 'failed'} | {r.seconds:.1f} | {files} |")
    path.write_text("\n".join(lines) + "\n")
