"""Train the runs of a reproduction in parallel worker processes: the runner and its worker in one module.

A small model on a 2-core CPU uses its cores poorly from one process (Python overhead, data
loading, small kernels); two runs side by side with one thread each get more done per minute than
one run with two threads. :func:`train_missing` starts one ``python -m deim.experiments.parallel``
process per run (:func:`worker_main`, below), ``jobs`` at a time, longest runs first, each writing
its log to ``<run folder>/worker.log``; the notebooks afterwards find every run in the cache. A
worker that fails stops the whole call with the tail of its log (finished runs stay cached;
unfinished ones resume from their ``last.pth`` next time). :func:`train_notebook_runs` is what
``deim reproduce --jobs`` calls: the runs the selected notebooks read, trained before they execute.

Timing: a run's seconds per epoch are measured while another run shares the machine. Notebook 11
compares settings trained under the same load, and says so.

Worker usage: ``python -m deim.experiments.parallel <cache root> <RunSpec as JSON> <torch threads>``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from deim.experiments.runs import RunCache, RunSpec
from deim.experiments.settings import notebook_runs

WORKER_MODULE = "deim.experiments.parallel"  # what each worker process runs (``python -m``)


def _launch(spec: RunSpec, cache: RunCache, threads: int) -> tuple[subprocess.Popen, Path]:
    folder = cache.folder(spec)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "worker.log"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", WORKER_MODULE, str(cache.root), json.dumps(dataclasses.asdict(spec)),
           str(threads)]
    with open(log, "ab") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    return proc, log


def _prepare_shared_inputs(specs: list[RunSpec], progress: bool) -> None:
    """Build what the runs share (the built-in data, the backbone pre-trainings) here, once, before
    the workers start; otherwise each worker would build its own copy at the same time."""
    from deim.engine.backbone_pretrain import pretrained_backbone
    from deim.engine.data_build import data_paths

    built: set[str] = set()
    for spec in specs:
        data = spec.train_config().data
        recipe = json.dumps([data.fashion_scale, data.fashion_canvas], sort_keys=True)
        if data.dataset == "fashion" and recipe not in built:
            data_paths(data)
            built.add(recipe)
    for preset, model, recipe in {(s.protocol.preset, json.dumps(s.protocol.model, sort_keys=True),
                                   s.protocol.backbone_pretrain) for s in specs}:
        if recipe is not None:
            pretrained_backbone(preset, json.loads(model), recipe, progress=progress)


def train_missing(specs: list[RunSpec], jobs: int = 2, threads: int = 1, cache: RunCache | None = None,
                  progress: bool = True) -> list[str]:
    """Train every spec not yet in ``cache``, ``jobs`` processes at a time; returns the keys trained."""
    cache = cache or RunCache()
    if jobs < 1 or threads < 1:
        raise ValueError(f"jobs and threads must be positive, got {jobs}, {threads}")
    todo = sorted((s for s in specs if cache.load(s) is None), key=lambda s: -s.epoch_factor)
    # One thread, as in the workers: with two OpenMP threads on a 2-core machine that runs anything
    # else, every parallel region waits for a descheduled thread (measured: a pre-training step 7x slower).
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _prepare_shared_inputs(todo, progress)
    finally:
        torch.set_num_threads(previous)
    if progress:
        print(f"[deim] {len(specs) - len(todo)} of {len(specs)} runs cached; training {len(todo)} "
              f"({jobs} at a time, {threads} thread(s) each)", flush=True)
    running: list[tuple[subprocess.Popen, Path, RunSpec, float]] = []
    done: list[str] = []
    pending = list(todo)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                spec = pending.pop(0)
                proc, log = _launch(spec, cache, threads)
                running.append((proc, log, spec, time.perf_counter()))
            time.sleep(0.5)
            for item in list(running):
                proc, log, spec, t0 = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                if proc.returncode != 0 or cache.load(spec) is None:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"run {spec.key()} ({spec.label()}, seed {spec.seed}) failed with exit code "
                                       f"{proc.returncode}; end of {log}:\n{tail}")
                done.append(spec.key())
                if progress:
                    print(f"[deim] [{len(done)}/{len(todo)}] {spec.label()}, seed {spec.seed} "
                          f"({spec.key()}) in {time.perf_counter() - t0:.0f}s", flush=True)
    finally:
        for proc, *_ in running:
            proc.terminate()
        for proc, *_ in running:
            proc.wait()
    return done


def train_notebook_runs(scale: str, notebooks: list[str | Path], data_root: str | None = None, jobs: int = 2,
                        threads: int = 1, cache: RunCache | None = None, progress: bool = True) -> list[str]:
    """Train what ``deim reproduce --jobs`` trains before the notebooks: every run the notebooks
    ``notebooks`` (their ``.py`` sources) read (:func:`deim.experiments.settings.declared_groups`) that ``cache``
    lacks, ``jobs`` at a time; nothing when none of them reads runs. Returns the keys trained."""
    specs = notebook_runs(scale, notebooks, data_root)
    if not specs:
        return []
    t0 = time.perf_counter()
    done = train_missing(specs, jobs=jobs, threads=threads, cache=cache, progress=progress)
    if progress:
        print(f"[deim] experiment runs ready in {time.perf_counter() - t0:.0f}s", flush=True)
    return done


def worker_main(argv: list[str]) -> int:
    """One worker of :func:`train_missing`: train the run ``argv = [cache root, RunSpec as JSON,
    torch threads]`` into the run cache (or read it when it is there already)."""
    root, spec_json, threads = argv
    torch.set_num_threads(int(threads))
    spec = RunSpec(**json.loads(spec_json))
    result = RunCache(root).get(spec)
    print(f"[deim] run {result.key} finished: AP {result.final.get('AP', float('nan')):.4f} "
          f"in {result.seconds:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
