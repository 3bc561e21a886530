"""Where one training iteration of ours spends its CPU, and the layout and optimiser alternatives.

CPU time of this thread (``time.thread_time``; pass ``--threads 1`` so that all of torch's work
runs in it), which a busy machine disturbs far less than wall time. Settings as in
``train_step.py`` (``reduced``, ``n96``, ``n320``). Four measurements:

* ``phases``: the iteration by phase (forward, criterion, backward, gradient clipping, AdamW, EMA),
  median of ``--iters`` after two untimed ones;
* ``layout``: forward and backward of the backbone and of the encoder, NCHW vs channels-last
  (NHWC), alternately;
* ``eval``: the eval-mode forward per image at batch 8 and 32, NCHW vs NHWC (and whether the
  outputs are bitwise equal to NCHW at batch 8);
* ``adamw``: one AdamW step over the model's parameter groups: per-tensor loop, ``foreach``, fused.

    python benchmarks/step_parts.py [--settings reduced] [--parts phases layout eval adamw] [--threads 1]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from deim.engine.param_groups import OptimizerConfig, param_groups
from deim.models.build import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixed_batch import clone_targets, fixed_batch  # noqa: E402
from interleave import describe_machine  # noqa: E402
from train_step import OursStep, Setting, settings  # noqa: E402

NHWC = torch.channels_last


def _cpu_ms(fn: Callable[[], object]) -> float:
    start = time.thread_time()
    fn()
    return 1000 * (time.thread_time() - start)


def phases(setting: Setting, iters: int) -> None:
    images, targets = fixed_batch(setting.batch_size, setting.image_size)
    step = OursStep(setting, images, targets)
    times: dict[str, list[float]] = {}
    for i in range(iters + 2):
        tg = clone_targets(targets)
        holder: dict[str, object] = {}
        parts = {
            "forward": lambda: holder.update(out=step.model(images, tg)),
            "criterion": lambda: holder.update(loss=sum(step.criterion(holder["out"], tg).values())),
            "backward": lambda: (step.optimizer.zero_grad(set_to_none=True), holder["loss"].backward()),
            "clip": lambda: torch.nn.utils.clip_grad_norm_(step.model.parameters(), 0.1),
            "adamw": step.optimizer.step,
            "ema": lambda: step.ema.update(step.model),
        }
        for name, fn in parts.items():
            ms = _cpu_ms(fn)
            if i >= 2:
                times.setdefault(name, []).append(ms)
    medians = {k: statistics.median(v) for k, v in times.items()}
    total = sum(medians.values())
    print(f"{setting.name} phases (ms): " + "  ".join(f"{k} {v:.1f}" for k, v in medians.items())
          + f"  | total {total:.1f} -> {1000 * setting.batch_size / total:.1f} images/s of CPU")


def layout(setting: Setting, iters: int) -> None:
    images, _ = fixed_batch(setting.batch_size, setting.image_size)
    nchw = build_model(setting.preset, **setting.model_overrides()).train()
    nhwc = copy.deepcopy(nchw).to(memory_format=NHWC)
    models = {"NCHW": (nchw, images), "NHWC": (nhwc, images.contiguous(memory_format=NHWC))}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for i in range(iters + 1):
        for name in (list(models) if i % 2 else list(models)[::-1]):
            model, x = models[name]
            for part in ("backbone", "encoder"):
                start = time.thread_time()
                feats = model.backbone(x)
                if part == "encoder":
                    feats = [f.detach().requires_grad_() for f in feats]
                    start = time.thread_time()
                    feats = model.encoder(feats)
                fwd = time.thread_time() - start
                loss = sum(f.float().mean() for f in feats)
                start = time.thread_time()
                loss.backward()
                if i:
                    times.setdefault((part, name), []).append((1000 * fwd, 1000 * (time.thread_time() - start)))
    for (part, name), values in times.items():
        fwd, bwd = statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
        print(f"{setting.name} {part:8s} {name}: forward {fwd:.0f} ms  backward {bwd:.0f} ms")


@torch.no_grad()
def evaluation(setting: Setting, iters: int) -> None:
    model = build_model(setting.preset, **setting.model_overrides()).eval()
    fast = copy.deepcopy(model).channels_last()
    x = torch.rand(64, 3, setting.image_size, setting.image_size, generator=torch.Generator().manual_seed(0))
    reference = torch.cat([model(x[i:i + 8])["pred_logits"] for i in range(0, 64, 8)])
    for name, m in (("NCHW", model), ("NHWC", fast)):
        for batch in (8, 32):
            outputs: list[torch.Tensor] = []
            ms = min(_cpu_ms(lambda: outputs.extend(m(x[i:i + batch])["pred_logits"] for i in range(0, 64, batch)))
                     for _ in range(max(1, iters // 4)))
            same = torch.equal(torch.cat(outputs[-(64 // batch):]), reference)
            print(f"{setting.name} eval forward {name} batch {batch}: {ms / 64:.1f} ms/image"
                  f"  (bitwise equal to NCHW batch 8: {same})")


def adamw(setting: Setting, iters: int) -> None:
    model = build_model(setting.preset, **setting.model_overrides())
    grads = [torch.randn_like(p) if p.is_floating_point() else None for p in model.parameters()]
    variants = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    runs = {}
    for name, kwargs in variants.items():
        m = copy.deepcopy(model)
        for p, g in zip(m.parameters(), grads):
            p.grad = None if g is None else g.clone()
        cfg = OptimizerConfig(4e-4, 2e-4, 1e-4, no_decay_bias=True)
        runs[name] = (m, torch.optim.AdamW(param_groups(m, cfg), lr=cfg.lr, **kwargs))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(iters + 2):
        for name, (_, opt) in runs.items():
            ms = _cpu_ms(opt.step)
            if i >= 2:
                times[name].append(ms)
    loop = list(runs["loop"][0].parameters())
    for name, values in times.items():
        diff = max(float((a.detach() - b.detach()).abs().max()) for a, b in zip(runs[name][0].parameters(), loop))
        print(f"{setting.name} AdamW step {name:8s}: {statistics.median(values):.1f} ms"
              f"  (max |param - loop's| after {iters + 2} steps: {diff:.1e})")


PARTS = {"phases": phases, "layout": layout, "eval": evaluation, "adamw": adamw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["reduced"], choices=list(settings()))
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {describe_machine(args.threads)}")
    for name in args.settings:
        for part in args.parts:
            PARTS[part](settings()[name], args.iters)


if __name__ == "__main__":
    main()
