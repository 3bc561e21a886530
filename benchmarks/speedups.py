"""Each training speed-up of issue 11 against the code it replaced, interleaved in one process.

* ``iou_crop``: the crop search of :class:`deim.data.iou_crop.FastIoUCrop` vs torchvision's
  ``RandomIoUCrop.make_params`` on the same zoomed-out samples of the built-in data (the same
  generator state before each call, so both search for, and find, the same crops);
* ``data``: the whole standard-augmentation sample pipeline with either crop search;
* ``ema``: :meth:`deim.engine.ema.ModelEMA.update` (one ``_foreach`` call) vs the per-tensor loop it
  replaced, on the reduced protocol's model;
* ``adamw``: ``AdamW(foreach=True)`` vs the per-tensor loop torch picks on CPU by default.

Prints milliseconds per call (median of ``--repeats`` rounds, the two variants alternating) and the
ratio new / old::

    python benchmarks/speedups.py [--repeats 7] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision.transforms.v2 as T

from deim.data.iou_crop import FastIoUCrop


def _median_ms(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return 1000.0 * (time.perf_counter() - start) / calls


def interleave(old: Callable[[], object], new: Callable[[], object], calls: int, repeats: int) -> tuple[float, float]:
    """Median ms per call of ``old`` and ``new``, measured in alternating rounds."""
    old(), new()  # warm-up
    times_old, times_new = [], []
    for _ in range(repeats):
        times_old.append(_median_ms(old, calls))
        times_new.append(_median_ms(new, calls))
    return statistics.median(times_old), statistics.median(times_new)


def _zoomed_samples(n: int) -> list[tuple[object, object]]:
    """``n`` (image, boxes) pairs of the built-in data after torchvision's zoom-out, as the IoU crop sees them."""
    from torchvision import tv_tensors

    from deim.data.coco import CocoDetection
    from deim.data.fashion import fashion_splits

    folder, ann = fashion_splits("reduced")["train"]
    dataset = CocoDetection(folder, ann)
    zoom = T.RandomZoomOut(fill=0, p=1.0)
    torch.manual_seed(0)
    samples = []
    for i in range(n):
        image, target = dataset.load_item(i)
        image = tv_tensors.Image(T.functional.pil_to_tensor(image))
        samples.append(zoom(image, target["boxes"]))
    return samples


def bench_iou_crop(repeats: int) -> tuple[float, float]:
    samples = _zoomed_samples(64)
    reference, fast = T.RandomIoUCrop(), FastIoUCrop()

    def run(op: T.RandomIoUCrop) -> Callable[[], None]:
        def go() -> None:
            for k, (image, boxes) in enumerate(samples):
                torch.manual_seed(k)
                op.make_params([image, boxes])
        return go
    old, new = interleave(run(reference), run(fast), 1, repeats)
    return old / len(samples), new / len(samples)


def bench_data(repeats: int) -> tuple[float, float]:
    import deim.data.transforms as transforms
    from deim.data.aug_schedule import AugSchedule
    from deim.data.coco import CocoDetection
    from deim.data.fashion import fashion_splits
    from deim.data.pipeline import build_train_transforms

    folder, ann = fashion_splits("reduced")["train"]
    schedule = AugSchedule(policy_epochs=(0, 0, 1000), mixup_epochs=(0, 0), mosaic_prob=0.0, mixup_prob=0.0,
                           base_size=96, base_size_repeat=None)
    fast = CocoDetection(folder, ann, build_train_transforms(schedule, 96, seed=0))
    slow_transforms = build_train_transforms(schedule, 96, seed=0)
    slow_transforms._ops["iou_crop"] = T.RandomApply([T.RandomIoUCrop()], p=0.8)
    slow = CocoDetection(folder, ann, slow_transforms)
    assert isinstance(transforms.iou_crop().transforms[0], FastIoUCrop)
    for ds in (fast, slow):
        ds.set_epoch(1)
    n = 48
    old, new = interleave(lambda: [slow[i] for i in range(n)], lambda: [fast[i] for i in range(n)], 1, repeats)
    return old / n, new / n


def _protocol_model() -> torch.nn.Module:
    from deim.experiments.protocol import get_protocol
    from deim.models.build import build_model

    p = get_protocol("reduced")
    return build_model(p.preset, num_classes=10, **p.model)


def bench_ema(repeats: int) -> tuple[float, float]:
    from deim.engine.ema import ModelEMA

    model = _protocol_model()
    ema = ModelEMA(model, 0.9999, 100)
    reference = ModelEMA(model, 0.9999, 100)

    @torch.no_grad()
    def per_tensor() -> None:  # the update this change replaced
        reference.updates += 1
        d = reference.current_decay()
        source = model.state_dict()
        for name, value in reference.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach().to(value.dtype), alpha=1.0 - d)
            else:
                value.copy_(source[name])
    return interleave(per_tensor, lambda: ema.update(model), 10, repeats)


def bench_adamw(repeats: int) -> tuple[float, float]:
    from deim.engine.param_groups import OptimizerConfig, param_groups

    model = _protocol_model()
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn_like(p) * 1e-3
    cfg = OptimizerConfig(4e-4, 2e-4, 1e-4, no_decay_bias=True)
    loop = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
    fused = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return interleave(loop.step, fused.step, 5, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); ms per call, median of {args.repeats} alternating rounds")
    print(f"{'change':<42}{'old ms':>10}{'new ms':>10}{'new/old':>10}")
    for name, bench in (("IoU-crop search (per zoomed-out sample)", bench_iou_crop),
                        ("standard-aug sample, 96 px (whole pipeline)", bench_data),
                        ("EMA update (reduced protocol model)", bench_ema),
                        ("AdamW step (reduced protocol model)", bench_adamw)):
        old, new = bench(args.repeats)
        print(f"{name:<42}{old:>10.2f}{new:>10.2f}{new / old:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
