"""Images/s of one full training iteration (fp32, CPU), ours and optionally the official DEIM's.

An iteration is what the trainer does per batch (deim/engine/train_loop.py) minus data loading and
the LR schedule: forward in train mode (denoising queries included) + criterion + backward +
gradient clipping at 0.1 + AdamW step + EMA update. Ours is built exactly as ``deim.engine.fit``
builds it (``build_model`` / ``build_criterion``, ``build_optimizer`` over our parameter groups,
``ModelEMA``). Every implementation trains on one fixed batch of real images of the built-in
data (benchmarks/fixed_batch.py), identical for all. Settings (``--settings``, default all):

* ``reduced``: the reduced protocol's own model, image size and batch (``get_protocol("reduced")``);
* ``n96``: ``deim_dfine_n`` with 40 queries and 20 denoising queries at 96 px, batch 16;
* ``n320``: DEIM-D-FINE-N with the preset's defaults at 320 px, batch 4.

All use 10 classes (the built-in data's). ``--official PATH`` also builds the official model,
criterion, AdamW (its regex groups) and ModelEMA from its YAML config with the same overrides,
loads *our* initial weights into it, and times the two alternately in one process
(benchmarks/interleave.py), printing ours/official median time.

Peak memory is measured in a fresh child process per implementation and setting (``--no-memory``
skips it): ``peak RSS`` is the child's RSS high-water mark (``VmHWM`` of ``/proc/self/status``; not
``getrusage().ru_maxrss``, which a forked child inherits from its parent) after setup +
``warmup + 2`` iterations; ``step memory`` is that minus the RSS right after the imports and the
input batch, i.e. what the weights, gradients, AdamW moments, EMA copy, the iteration's
activations and the allocator's caches add. ``--profile`` prints the top 10 operators
by self CPU time (torch.profiler, 2 iterations per implementation).

    python benchmarks/train_step.py [--settings reduced n96 n320] [--iters 10] [--warmup 2]
                                    [--threads 2] [--profile] [--official /path/to/DEIM]
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deim.engine.ema import ModelEMA
from deim.engine.param_groups import OptimizerConfig, build_optimizer
from deim.experiments.protocol import get_protocol
from deim.losses.build import build_criterion
from deim.models.build import build_model
from deim.presets.catalog import get_preset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixed_batch import clone_targets, fixed_batch  # noqa: E402
from interleave import describe_machine, interleaved, median  # noqa: E402

NUM_CLASSES = 10
CLIP_MAX_NORM = 0.1


@dataclass(frozen=True)
class Setting:
    """One benchmarked configuration: preset + ``build_model`` overrides, square input size, batch."""

    name: str
    preset: str
    image_size: int
    batch_size: int
    overrides: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None
    backbone_lr: float | None = None

    def model_overrides(self) -> dict[str, Any]:
        return {**self.overrides, "num_classes": NUM_CLASSES}


def settings() -> dict[str, Setting]:
    reduced = get_protocol("reduced")
    return {
        "reduced": Setting("reduced", reduced.preset, reduced.image_size, reduced.batch_size, dict(reduced.model),
                           reduced.lr, reduced.backbone_lr),
        "n96": Setting("n96", "deim_dfine_n", 96, 16,
                       {"num_queries": 40, "num_denoising": 20, "eval_spatial_size": 96}),
        "n320": Setting("n320", "deim_dfine_n", 320, 4, {"eval_spatial_size": 320}),
    }


# ---------------------------------------------------------------------------------------- ours
class OursStep:
    """Our training iteration, built and run as the trainer does (fit.py / train_loop.py)."""

    def __init__(self, setting: Setting, images: torch.Tensor, targets: list[dict]) -> None:
        overrides = setting.model_overrides()
        self.model = build_model(setting.preset, **overrides)
        self.criterion = build_criterion(setting.preset, **overrides)
        entry = get_preset(setting.preset)
        paper = entry.schedule
        lr = setting.lr if setting.lr is not None else paper.lr
        backbone_lr = setting.backbone_lr if setting.backbone_lr is not None else paper.backbone_lr
        no_decay_bias = entry.optimizer_groups.no_decay_bias
        self.optimizer = build_optimizer(self.model, OptimizerConfig(lr, backbone_lr, paper.weight_decay,
                                                                     no_decay_bias=no_decay_bias))
        self.ema = ModelEMA(self.model, paper.ema_decay, paper.ema_warmups)
        self.images, self.targets = images, targets
        self.model.train()
        self.criterion.train()

    def __call__(self, i: int) -> float:
        targets = clone_targets(self.targets)
        outputs = self.model(self.images, targets)
        loss_dict = self.criterion(outputs, targets)
        loss = sum(loss_dict.values())
        self.optimizer.zero_grad(set_to_none=True)
        if not bool(torch.isfinite(loss).all()):  # the trainer's NonFiniteGuard check
            raise FloatingPointError(f"non-finite loss at iteration {i}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP_MAX_NORM)
        self.optimizer.step()
        self.ema.update(self.model)
        values = {k: float(v.detach()) for k, v in loss_dict.items()}  # the trainer's logging
        values["loss"] = float(loss.detach())
        return values["loss"]


# ------------------------------------------------------------------------------------ official
class OfficialStep:
    """The official iteration (engine/solver/det_engine.py ``train_one_epoch``, fp32 branch)."""

    def __init__(self, path: str, setting: Setting, state_dict: dict, images: torch.Tensor,
                 targets: list[dict]) -> None:
        from official_deim import OfficialDEIM  # noqa: PLC0415

        official = OfficialDEIM(path, setting.preset, setting.model_overrides(), state_dict)
        self.model, self.criterion = official.model, official.criterion
        self.ema = official.ema  # made from the model with our weights, as its solver's _setup does
        self.optimizer = official.optimizer
        self.images, self.targets = images, targets
        self.model.train()
        self.criterion.train()

    def __call__(self, i: int) -> float:
        targets = clone_targets(self.targets)
        outputs = self.model(self.images, targets=targets)
        loss_dict = self.criterion(outputs, targets, epoch=0, step=i, global_step=i, epoch_step=1)
        loss = sum(loss_dict.values())
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP_MAX_NORM)
        self.optimizer.step()
        self.ema.update(self.model)
        value = float(sum(v.detach() for v in loss_dict.values()))  # its reduce_dict + metric logger
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite official loss at iteration {i}")
        return value


def build_steps(setting: Setting, official: str | None, which: tuple[str, ...] = ("ours", "official")
                ) -> dict[str, Callable[[int], float]]:
    """The steps of ``which`` on the setting's fixed batch; all start from our seed-0 initial weights."""
    images, targets = fixed_batch(setting.batch_size, setting.image_size)
    torch.manual_seed(0)
    steps: dict[str, Callable[[int], float]] = {}
    if "ours" in which:
        steps["ours"] = OursStep(setting, images, targets)
        weights = steps["ours"].model.state_dict()
    else:
        weights = build_model(setting.preset, **setting.model_overrides()).state_dict()
    if official and "official" in which:
        steps["official"] = OfficialStep(official, setting, weights, images, targets)
    return steps


# -------------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (resident high-water mark) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (peak memory needs Linux)")


def memory_child(setting: Setting, impl: str, official: str | None, warmup: int) -> dict[str, float]:
    """Peak RSS (MiB) of this process after building ``impl`` and ``warmup + 2`` iterations, and
    that minus the RSS after the imports and the input batch (see the module docstring)."""
    fixed_batch(setting.batch_size, setting.image_size)  # reads the files: the baseline includes it
    if impl == "official":
        from official_deim import import_official  # noqa: PLC0415

        import_official(official)
    base = _status_kib("VmRSS")
    steps = build_steps(setting, official, which=(impl,))
    step = steps[impl]
    for i in range(warmup + 2):
        torch.manual_seed(i)
        step(i)
    peak = _status_kib("VmHWM")
    return {"peak_rss_mib": peak / 1024, "step_mib": (peak - base) / 1024}


def measure_memory(name: str, impl: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--memory-child", impl, "--settings", name, "--threads",
               str(args.threads), "--warmup", str(args.warmup)]
    if args.official:
        command += ["--official", args.official]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------- profile
def profile(step: Callable[[int], float], title: str, rows: int = 10) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile  # noqa: PLC0415

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(2):
            torch.manual_seed(i)
            step(i)
    print(f"\n-- {title}: top {rows} operators by self CPU time (2 iterations)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


# ---------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(settings()), choices=list(settings()))
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per implementation")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--profile", action="store_true", help="top-10 operators by self CPU time")
    parser.add_argument("--official", metavar="PATH", help="checkout of the official DEIM code to compare with")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--memory-child", choices=("ours", "official"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = settings()
    if args.memory_child:
        print(json.dumps(memory_child(table[args.settings[0]], args.memory_child, args.official, args.warmup)))
        return
    print(f"machine: {describe_machine(args.threads)}")
    rows = []
    for name in args.settings:
        setting = table[name]
        steps = build_steps(setting, args.official)
        if args.official:
            from official_deim import SHIMMED  # noqa: PLC0415

            if SHIMMED:
                print(f"[official] stand-in modules for: {', '.join(SHIMMED)}")
        times = interleaved(steps, args.iters, args.warmup)
        row: dict[str, Any] = {"setting": name}
        for impl, seconds in times.items():
            row[f"{impl}_img_s"] = setting.batch_size / median(seconds)
            row[f"{impl}_s"] = median(seconds)
        if args.official:
            row["ratio"] = row["ours_s"] / row["official_s"]
        if not args.no_memory:
            for impl in steps:
                row[f"{impl}_mem"] = measure_memory(name, impl, args)
        rows.append(row)
        print(_describe(setting, row))
        if args.profile:
            for impl, step in steps.items():
                profile(step, f"{name} / {impl}")
        del steps
    print("\nsetting | ours img/s | ours s/iter" + (" | official img/s | ours/official" if args.official else ""))
    for row in rows:
        line = f"{row['setting']} | {row['ours_img_s']:.2f} | {row['ours_s']:.3f}"
        if args.official:
            line += f" | {row['official_img_s']:.2f} | {row['ratio']:.2f}x"
        print(line)


def _describe(setting: Setting, row: dict[str, Any]) -> str:
    lines = [f"\n== {setting.name}: {setting.preset} {setting.overrides} at {setting.image_size} px, "
             f"batch {setting.batch_size}"]
    for impl in ("ours", "official"):
        if f"{impl}_s" not in row:
            continue
        text = f"   {impl:8s} {row[f'{impl}_s']:.3f} s/iter (median)  {row[f'{impl}_img_s']:.2f} images/s"
        if f"{impl}_mem" in row:
            mem = row[f"{impl}_mem"]
            text += f"  peak RSS {mem['peak_rss_mib']:.0f} MiB, step memory {mem['step_mib']:.0f} MiB"
        lines.append(text)
    if "ratio" in row:
        lines.append(f"   ours/official time: {row['ratio']:.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
