"""One whole run of the reduced protocol (DEIM, seed 0) into a fresh run cache: wall seconds, and per
epoch the training seconds, evaluation seconds, images/s and AP.

To compare two versions of the code fairly on a shared machine, start one copy per checkout at the
same time (each trains with one thread, as the study's workers do), so that both see the same load::

    PYTHONPATH=/path/to/old python benchmarks/whole_run.py /tmp/runs_old &
    PYTHONPATH=/path/to/new python benchmarks/whole_run.py /tmp/runs_new &

The built-in data and the pre-trained backbone come from the normal cache (``~/.cache/deim``); the
run itself is written to the given folder, so it is trained even when the study's cache has it.
"""
from __future__ import annotations

import argparse
import time

import torch

from deim.experiments.runs import RunCache, RunSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_folder", help="an empty folder for the run (its cache)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = RunSpec(scale="reduced", loss="mal", gamma=1.5, mosaic_prob=0.5, mixup_prob=0.5, seed=args.seed)
    start = time.perf_counter()
    result = RunCache(args.runs_folder).get(spec)
    print(f"{args.runs_folder}: {time.perf_counter() - start:.0f} s, final AP {result.final['AP']:.4f}")
    print("epoch | train s | eval s | images/s | AP %")
    for h in result.history:
        print(f"{h['epoch']} | {h['train_seconds']:.1f} | {h.get('eval_seconds', float('nan')):.1f} | "
              f"{h['images_per_s']:.2f} | {100 * h['AP']:.2f}")


if __name__ == "__main__":
    main()
