"""Throughput of the training data pipeline (decode + transforms + collate) on the built-in data.

Prints images/s for the standard augmentation (the "off" baseline: RT-DETR ops, no mosaic, no
mixup) and for Dense O2O (mosaic with probability 0.5 + batch mixup 0.5) with the mosaic cache off
and on, plus mosaic on every sample (cache off/on) to isolate the cost of reading partners; each
as a ratio to the baseline measured in the same run. Defaults take about a minute::

    python benchmarks/data_pipeline.py [--scale smoke] [--image-size 320] [--batch-size 8]
                                       [--num-workers 0] [--seconds 8]

``--num-workers 0`` measures the per-core cost in the main process; with workers the numbers
also include inter-process transfer.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from deim.data.aug_schedule import AugSchedule
from deim.data.fashion import fashion_splits
from deim.data.loaders import build_train_loader
from deim.data.training_set import dense_o2o_training_set


@dataclass(frozen=True)
class Setting:
    name: str
    mosaic_prob: float
    mixup_prob: float
    cache: bool
    dense: bool


SETTINGS = (
    Setting("standard aug (off)", 0.0, 0.0, False, False),
    Setting("Dense O2O, cache off", 0.5, 0.5, False, True),
    Setting("Dense O2O, cache on", 0.5, 0.5, True, True),
    Setting("mosaic always, cache off", 1.0, 0.0, False, True),
    Setting("mosaic always, cache on", 1.0, 0.0, True, True),
)


def measure(setting: Setting, img_folder, ann_file, args: argparse.Namespace) -> float:
    """Images per second over about ``args.seconds`` of loading (the first batch not counted)."""
    schedule = AugSchedule(policy_epochs=(0, 1000, 2000) if setting.dense else (0, 0, 2000),
                           mixup_epochs=(0, 1000) if setting.dense else (0, 0),
                           mosaic_prob=setting.mosaic_prob, mixup_prob=setting.mixup_prob,
                           base_size=args.image_size, base_size_repeat=None)
    dataset, collator = dense_o2o_training_set(img_folder, ann_file, schedule, args.image_size,
                                               mosaic_cache=setting.cache)
    loader = build_train_loader(dataset, collator, args.batch_size, num_workers=args.num_workers,
                                persistent_workers=args.num_workers > 0)
    images, start, epoch = 0, None, 0
    while start is None or time.perf_counter() - start < args.seconds:
        loader.set_epoch(epoch)
        for batch, _ in loader:
            if start is None:
                start = time.perf_counter()
                continue
            images += batch.shape[0]
            if time.perf_counter() - start >= args.seconds:
                break
        epoch += 1
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="smoke", choices=("smoke", "reduced", "full"))
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per setting")
    args = parser.parse_args()
    img_folder, ann_file = fashion_splits(args.scale)["train"]
    print(f"data: {ann_file}  image size {args.image_size}  batch {args.batch_size}  workers {args.num_workers}")
    baseline = None
    print(f"{'setting':<28}{'images/s':>10}{'vs off':>9}")
    for setting in SETTINGS:
        rate = measure(setting, img_folder, ann_file, args)
        baseline = baseline or rate
        print(f"{setting.name:<28}{rate:>10.1f}{rate / baseline:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
