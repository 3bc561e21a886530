"""What ``torch.compile`` (inductor, CPU, fp32) of the backbone and encoder does to a training iteration.

The compiled model is ``train_step.OursStep`` after ``model.backbone.compile(dynamic=False)`` and
``model.encoder.compile(dynamic=False)`` (``nn.Module.compile`` keeps the ``state_dict()`` keys:
no ``_orig_mod.`` prefix; checked); the decoder, whose shapes follow the targets, stays eager.
Settings as in ``train_step.py``. Each part runs in a fresh child process whose
``TORCHINDUCTOR_CACHE_DIR`` (``--cache-dir`` or a new temporary folder; a subfolder per setting)
is set before torch is imported:

* ``compile``: wall and CPU time of compiled iterations 1 + 2 minus two normal ones (median of
  iterations 3-5): dynamo, AOT autograd and inductor for forward and backward, plus the encoder's
  recompile in iteration 2 (its first call fills its position-embedding cache, a dict dynamo
  guards on; ``--prefill-pos`` fills it before compiling). Twice: ``cold`` (empty folder), then
  ``warm`` (the FX graph and AOT autograd caches the cold process wrote). CPU is the process's (all
  threads) plus its waited-for children's (g++), hence in-process compiling (``--compile-threads
  1``). A child still running after 15 minutes is killed and the setting skipped.
* ``steady``: eager and compiled from the same weights, batch and RNG seeds. Numerics: the loss
  terms and the (clipped) gradients of iteration 1, parameters and a backbone BatchNorm's
  ``running_mean`` after 3 iterations (the warm-up). Then ``--iters`` rounds alternating the two,
  whole iteration and backbone + encoder forward + backward: medians of this thread's CPU time
  (``time.thread_time``; ``--threads 1`` runs all of torch's work in it) and of wall time, and the
  median of the per-round ratios. Graph, graph-break and compile counts
  (``torch._dynamo.utils.counters``; recompile reasons go to stderr), and the cost of the first
  compiled backbone + encoder call in eval mode under ``no_grad`` and of the next training one.

    python benchmarks/compile_step.py [--settings reduced n320] [--iters 8] [--threads 1] [--cache-dir DIR]
                                      [--mode default] [--compile-threads 1] [--prefill-pos]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixed_batch import fixed_batch  # noqa: E402
from interleave import describe_machine  # noqa: E402
from train_step import OursStep, Setting, settings  # noqa: E402

LIMIT_S = 15 * 60
RESULT = "RESULT "


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its waited-for children (g++)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _counts(since: dict[str, int] | None = None) -> dict[str, int]:
    """Dynamo graphs and graph breaks, inductor compiles (FX graph cache misses + hits + bypasses),
    FX graph and AOT autograd cache hits: so far, or since the counts ``since``."""
    from torch._dynamo.utils import counters  # noqa: PLC0415

    ind = counters["inductor"]
    now = {"graphs": counters["stats"]["unique_graphs"], "graph_breaks": sum(counters["graph_break"].values()),
           "inductor_compiles": ind["fxgraph_cache_miss"] + ind["fxgraph_cache_hit"] + ind["fxgraph_cache_bypass"],
           "fx_cache_hits": ind["fxgraph_cache_hit"], "aot_cache_hits": counters["aot_autograd"]["autograd_cache_hit"]}
    return {k: v - (since or {}).get(k, 0) for k, v in now.items()}


def build(setting: Setting, mode: str, compiled: bool, like: OursStep | None = None, prefill: bool = False
          ) -> OursStep:
    """``OursStep`` from seed 0 (with ``like``'s weights if given), backbone + encoder compiled if asked;
    ``prefill``: one eval-mode ``no_grad`` forward first, which fills the encoder's position-embedding
    cache (a dict the compiled forward would otherwise fill in its first call and recompile after)."""
    images, targets = fixed_batch(setting.batch_size, setting.image_size)
    torch.manual_seed(0)
    step = OursStep(setting, images, targets)
    if like is not None:
        step.model.load_state_dict(like.model.state_dict())
        step.ema.module.load_state_dict(like.ema.module.state_dict())
    if compiled and prefill:
        with torch.no_grad():
            step.model.eval().encoder(step.model.backbone(images))
        step.model.train()
    if compiled:
        options: dict[str, Any] = {"dynamic": False, "mode": None if mode == "default" else mode}
        step.model.backbone.compile(**options)
        step.model.encoder.compile(**options)
    return step


def _timed(fn: Callable[[], object]) -> tuple[float, float, float]:
    """(wall s, process + children CPU s, this thread's CPU s) of one call."""
    wall, cpu, thread = time.perf_counter(), _cpu(), time.thread_time()
    fn()
    return time.perf_counter() - wall, _cpu() - cpu, time.thread_time() - thread


def compile_child(setting: Setting, mode: str, prefill: bool) -> dict[str, Any]:
    """Iterations 1 and 2 (either may compile), and a normal one (the median of iterations 3-5)."""
    step = build(setting, mode, compiled=True, prefill=prefill)
    runs: list[tuple[float, float, float]] = []
    counts: list[int] = []
    for i in range(5):
        torch.manual_seed(i)
        runs.append(_timed(lambda: step(i)))
        counts.append(_counts()["graphs"])
    normal = [statistics.median(r[k] for r in runs[2:]) for k in (0, 1)]
    return {"runs": [r[:2] for r in runs[:2]], "normal": normal, "graphs_per_iteration": counts,
            "counts": _counts()}


def _backbone_encoder(step: OursStep) -> None:
    feats = step.model.encoder(step.model.backbone(step.images))
    step.model.zero_grad(set_to_none=True)
    sum(f.mean() for f in feats).backward()


def steady_child(setting: Setting, mode: str, iters: int, prefill: bool) -> dict[str, Any]:
    eager = build(setting, mode, compiled=False)
    comp = build(setting, mode, compiled=True, like=eager, prefill=prefill)
    out: dict[str, Any] = {"same_keys": list(eager.model.state_dict()) == list(comp.model.state_dict())
                           and list(eager.ema.module.state_dict()) == list(comp.ema.module.state_dict())}
    losses: dict[str, list[dict[str, float]]] = {"eager": [], "compiled": []}
    steps = {"eager": eager, "compiled": comp}
    for name, step in steps.items():  # the loss dict of every iteration, as the trainer logs it
        step.criterion.register_forward_hook(
            lambda _m, _a, result, name=name: losses[name].append({k: float(v.detach()) for k, v in result.items()}))
    bns = [n for n, m in eager.model.backbone.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bn_e, bn_c = eager.model.backbone.get_submodule(bns[0]), comp.model.backbone.get_submodule(bns[0])
    for i in range(3):  # numerics; also the warm-up (the compiled one compiles in the first two)
        for step in steps.values():
            torch.manual_seed(i)
            step(i)
        if i == 0:  # the gradients of the first iteration (clipped) are still in .grad
            out["bn_first"] = float((bn_e.running_mean - bn_c.running_mean).abs().max())
            out["grad_rel"] = {}
            for part in ("backbone", "encoder", "decoder"):
                ge, gc = (torch.cat([p.grad.flatten() for p in getattr(st.model, part).parameters()
                                     if p.grad is not None]) for st in (eager, comp))
                out["grad_rel"][part] = float((gc - ge).norm() / ge.norm())
    first_e, first_c = losses["eager"][0], losses["compiled"][0]
    out["loss_diff"] = {k: (abs(first_c[k] - v), abs(first_c[k] - v) / max(abs(v), 1e-12)) for k, v in first_e.items()}
    diff = torch.cat([(a - b).detach().abs().flatten()
                      for a, b in zip(eager.model.parameters(), comp.model.parameters())])
    out["param_diff"] = (float(diff.max()), float(diff.mean()), float((diff > 1e-5).float().mean()))
    out["bn"] = {"name": f"backbone.{bns[0]}", "diff": float((bn_e.running_mean - bn_c.running_mean).abs().max()),
                 "moved": float(bn_c.running_mean.abs().max()), "batches": int(bn_c.num_batches_tracked)}
    out["counts_warmup"] = _counts()
    for part, fn in (("step", lambda s, i: s(i)), ("fwd_bwd", lambda s, i: _backbone_encoder(s))):
        times: dict[str, list[tuple[float, float, float]]] = {"eager": [], "compiled": []}
        for r in range(iters):
            for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
                torch.manual_seed(3 + r)
                times[name].append(_timed(lambda: fn(steps[name], 3 + r)))
        out[part] = {name: {"wall_ms": 1000 * statistics.median(t[0] for t in ts),
                            "cpu_ms": 1000 * statistics.median(t[2] for t in ts),
                            "cpu_min_ms": 1000 * min(t[2] for t in ts)} for name, ts in times.items()}
        out[part]["paired"] = statistics.median(c[2] / e[2] for e, c in zip(times["eager"], times["compiled"]))
    out["counts_timed"] = _counts(since=out["counts_warmup"])
    before = _counts()
    with torch.no_grad():
        comp.model.eval()
        out["eval"] = [_timed(lambda: comp.model.encoder(comp.model.backbone(comp.images)))[:2] for _ in range(2)]
    out["eval_counts"], before = _counts(since=before), _counts()
    comp.model.train()
    out["back_to_train"] = (*_timed(lambda: comp(99))[:2], _counts(since=before))
    return out


def run_child(kind: str, name: str, cache: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """Run this script as ``--child kind`` in a new process; ``None`` after ``LIMIT_S`` seconds."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache),
           "TORCHINDUCTOR_COMPILE_THREADS": str(args.compile_threads)}
    command = [sys.executable, __file__, "--child", kind, "--settings", name, "--iters", str(args.iters),
               "--threads", str(args.threads), "--mode", args.mode] + ["--prefill-pos"] * args.prefill_pos
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    if proc.returncode:
        raise RuntimeError(f"{kind} child for {name} failed (exit {proc.returncode}); its stderr is above")
    return json.loads(next(line for line in stdout.splitlines() if line.startswith(RESULT))[len(RESULT):])


def report(compiles: dict[str, dict[str, Any]], steady: dict[str, Any]) -> None:
    for label, c in compiles.items():
        (w1, c1), (w2, c2), (wn, cn) = *c["runs"], c["normal"]
        print(f"  compile {label}: iteration 1 {w1:.1f} s wall / {c1:.1f} s CPU, iteration 2 {w2:.1f} / {c2:.1f},"
              f" normal {wn:.2f} / {cn:.2f} -> compile {w1 + w2 - 2 * wn:.1f} s wall, {c1 + c2 - 2 * cn:.1f} s"
              f" CPU; graphs after each iteration {c['graphs_per_iteration']}  {c['counts']}")
    print(f"  state_dict keys unchanged by compile: {steady['same_keys']}")
    for part, title in (("step", "whole iteration"), ("fwd_bwd", "backbone+encoder fwd+bwd")):
        e, c = steady[part]["eager"], steady[part]["compiled"]
        print(f"  {title}: eager {e['cpu_ms']:.0f} ms CPU ({e['wall_ms']:.0f} wall, min CPU {e['cpu_min_ms']:.0f}),"
              f" compiled {c['cpu_ms']:.0f} ms CPU ({c['wall_ms']:.0f} wall, min CPU {c['cpu_min_ms']:.0f});"
              f" compiled/eager {c['cpu_ms'] / e['cpu_ms']:.3f} CPU, {c['wall_ms'] / e['wall_ms']:.3f} wall,"
              f" {c['cpu_min_ms'] / e['cpu_min_ms']:.3f} min CPU, {steady[part]['paired']:.3f} per-round CPU median")
    print("  first-iteration losses, |compiled - eager| (abs/rel): " + ", ".join(
        f"{k} {a:.1e}/{r:.1e}" for k, (a, r) in steady["loss_diff"].items()))
    print("  first iteration's (clipped) gradients, |compiled - eager| / |eager| (L2): "
          + ", ".join(f"{k} {v:.1e}" for k, v in steady["grad_rel"].items()))
    (big, mean, share), bn = steady["param_diff"], steady["bn"]
    print(f"  after 3 iterations: |param diff| max {big:.2e}, mean {mean:.1e}, {100 * share:.2f} % of elements"
          f" over 1e-5; {bn['name']}.running_mean max diff {steady['bn_first']:.1e} after 1 iteration,"
          f" {bn['diff']:.1e} after 3 (max |value| {bn['moved']:.3f}, num_batches_tracked {bn['batches']})")
    print(f"  counts after warm-up {steady['counts_warmup']}; added by the timed rounds {steady['counts_timed']}")
    (w1, c1), (w2, c2) = steady["eval"]
    print(f"  eval mode + no_grad, backbone+encoder: first call {w1:.1f} s wall / {c1:.1f} s CPU, second"
          f" {1000 * w2:.0f} ms / {1000 * c2:.0f} ms  {steady['eval_counts']}")
    wall, cpu, counts = steady["back_to_train"]
    print(f"  back to train mode, next iteration: {wall:.2f} s wall / {cpu:.2f} s CPU  {counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["reduced"], choices=list(settings()))
    parser.add_argument("--iters", type=int, default=8, help="timed rounds (eager and compiled each)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--cache-dir", type=Path, help="inductor cache folder (default: a new temporary one)")
    parser.add_argument("--mode", default="default", help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    parser.add_argument("--compile-threads", type=int, default=1, help="inductor's parallel compile workers")
    parser.add_argument("--prefill-pos", action="store_true",
                        help="fill the encoder's position-embedding cache before compiling (no recompile)")
    parser.add_argument("--child", choices=("compile", "steady"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        torch._logging.set_logs(graph_breaks=True, recompiles=True)  # reasons go to stderr
        setting = settings()[args.settings[0]]
        if args.child == "compile":
            result = compile_child(setting, args.mode, args.prefill_pos)
        else:
            result = steady_child(setting, args.mode, args.iters, args.prefill_pos)
        print(RESULT + json.dumps(result), flush=True)
        return
    root = args.cache_dir or Path(tempfile.mkdtemp(prefix="deim-compile-cache-"))
    print(f"machine: {describe_machine(args.threads)}\ninductor cache: {root} (kept; one subfolder per setting)"
          f"\nmode {args.mode}, compile threads {args.compile_threads}, {args.iters} timed rounds,"
          f" position-embedding cache prefilled: {args.prefill_pos}")
    for name in args.settings:
        setting = settings()[name]
        print(f"\n== {name}: {setting.preset} {setting.overrides} at {setting.image_size} px, "
              f"batch {setting.batch_size}", flush=True)
        cache = root / name
        first = "cold" if not cache.exists() or not any(cache.iterdir()) else "first (cache not empty)"
        compiles: dict[str, dict[str, Any]] = {}
        for label in (first, "warm"):
            result = run_child("compile", name, cache, args)
            if result is None:
                print(f"  {label} compile: aborted after {LIMIT_S // 60} minutes")
                break
            compiles[label] = result
        if len(compiles) < 2:
            continue
        steady = run_child("steady", name, cache, args)
        if steady is None:
            print(f"  steady-state child aborted after {LIMIT_S // 60} minutes")
            continue
        report(compiles, steady)


if __name__ == "__main__":
    main()
