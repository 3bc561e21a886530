"""What a run of the reduced protocol spends outside the training step: batch delivery and evaluation.

Two measurements on the reduced protocol's own data (``RunSpec(scale="reduced")``: 96 px canvases,
batch 16, one loader worker, the 500 validation images), each comparing the code of today with
the code it replaced, alternately in one process:

* **Batch delivery**: two loaders over the same dataset, sampler and collator, each with one
  persistent worker: ours (``DetectionLoader``: targets travel by value, ``deim.data.transport``)
  and a plain ``torch.utils.data.DataLoader`` (every target tensor in its own shared-memory
  segment, as before). Per batch: the training process's CPU time to receive it, and the wall time
  to get it while the training process does nothing else (the worker's production time). Epoch 1
  (Dense O2O: mosaic and mixup) and epoch 3 (standard augmentation).
* **One evaluation** (``deim.engine.train_loop.evaluate_coco``, what every epoch of a run does) of
  the same weights with the model channels-last (``for_cpu_inference``, today) and NCHW (the model
  wrapped, so that it is not converted): wall seconds and the training process's CPU seconds.

    python benchmarks/run_overheads.py [--threads 1] [--batches 20] [--evals 2]
"""
from __future__ import annotations

import argparse
import copy
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from deim.engine.data_build import build_training_data
from deim.engine.run_preset import resolve_run_preset
from deim.engine.train_loop import evaluate_coco
from deim.experiments.runs import RunSpec
from deim.models.build import build_model, build_postprocessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import describe_machine  # noqa: E402


class NCHW(nn.Module):
    """Hides a detector from ``for_cpu_inference`` so that it runs in its own (NCHW) layout."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> dict:
        return self.model(images)


def _timed_batches(batches: Iterator, count: int) -> tuple[float, float]:
    """Mean (main-process CPU ms, wall ms) per batch over ``count`` batches."""
    next(batches)  # the worker is warm and a batch is queued
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        next(batches)
    return 1000 * (time.process_time() - cpu) / count, 1000 * (time.perf_counter() - wall) / count


def delivery(data, batches: int) -> None:
    ours = data.train_loader
    plain = DataLoader(ours.dataset, batch_size=ours.batch_size, sampler=ours.sampler, num_workers=1,
                       collate_fn=ours.collate_fn.collate, drop_last=True, worker_init_fn=ours.worker_init_fn,
                       generator=ours.generator, persistent_workers=True)
    print("batch delivery (one worker, batch 16): main-process CPU ms / wall ms per batch")
    for epoch, stage in ((1, "Dense O2O"), (3, "standard")):
        ours.set_epoch(epoch)  # the dataset and the collator are shared, so this sets both loaders
        rows = {}
        for name, loader in (("tensors (before)", plain), ("by value (ours)", ours),
                             ("tensors (before) ", plain), ("by value (ours) ", ours)):
            cpu, wall = _timed_batches(iter(loader), batches)
            rows.setdefault(name.strip(), []).append((cpu, wall))
        for name, values in rows.items():
            cpu = sum(c for c, _ in values) / len(values)
            wall = sum(w for _, w in values) / len(values)
            print(f"  epoch {epoch} ({stage}) {name:17s} CPU {cpu:5.1f} ms  wall {wall:6.1f} ms")


def evaluation(spec: RunSpec, data, evals: int) -> None:
    cfg = spec.train_config()
    preset = resolve_run_preset(cfg, cfg.resolved_schedule(), data.label_map.num_classes)
    model = build_model(preset.model).eval()
    post = build_postprocessor(preset.postprocessor).eval()
    print(f"one evaluation of {len(data.val_loader.dataset)} images (batch {data.val_loader.batch_size}):")
    paths = {"NCHW (before)": NCHW(model), "channels-last (ours)": copy.deepcopy(model)}
    for name, m in list(paths.items()) * evals:
        wall, cpu = time.perf_counter(), time.process_time()
        stats = evaluate_coco(m, post, data.val_loader, data.val.ann_file, data.label_map, torch.device("cpu"),
                              progress=False)
        print(f"  {name:21s} wall {time.perf_counter() - wall:5.1f} s  main CPU {time.process_time() - cpu:5.1f} s"
              f"  AP {stats['AP']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the training process")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per loader and epoch")
    parser.add_argument("--evals", type=int, default=2, help="evaluations per layout")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {describe_machine(args.threads)}")
    spec = RunSpec(scale="reduced", loss="mal", gamma=1.5, seed=0)
    cfg = spec.train_config(tempfile.mkdtemp())
    data = build_training_data(cfg.data, cfg.schedule.aug, batch_size=cfg.schedule.total_batch_size, seed=0)
    delivery(data, args.batches)
    evaluation(spec, data, args.evals)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
