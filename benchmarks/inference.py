"""CPU latency of detection at batch 1, 640 px: eager, eager deploy form, ONNX Runtime (and the official model).

Every path takes the same real image of the built-in data resized to 640 (benchmarks/fixed_batch.py)
and returns detections (labels, ``xyxy`` pixel boxes, scores), so the postprocessor is timed too:

* ``eager``: ``model.eval()`` + postprocessor, NCHW (the layout training uses);
* ``eager-nhwc``: the same model channels-last (``deim.models.detector.for_cpu_inference``), what
  ``deim predict`` / ``deim eval`` and every evaluation during training run on the CPU by default;
* ``deploy``: ``model.deploy()`` (fused re-parameterised convs, unused decoder layers dropped) +
  the postprocessor's deploy form;
* ``deploy-nhwc``: the deploy form, channels-last;
* ``onnxruntime``: the ONNX Runtime session of ``deim.models.onnx_runtime`` + the eager
  postprocessor (``--backend onnxruntime``); exported on first use and cached on disk;
* ``inductor`` (``--inductor``): ``torch.compile`` (inductor, ``freezing=True``: BatchNorm folded
  into the convolutions, weights pre-packed) of the deploy form, channels-last; the compile time and
  the largest difference of its outputs from the eager model's are printed (a candidate fast path,
  not one that ``deim`` offers);
* ``official`` (``--official PATH``): the official DEIM model built from its YAML config with our
  weights loaded, in eval mode, + its postprocessor.

The paths are timed alternately, call by call (benchmarks/interleave.py); the median is printed.
COCO's 80 classes and the presets' defaults (300 queries) throughout.

    python benchmarks/inference.py [--presets deim_dfine_n deim_dfine_s deim_rtdetrv2_r18]
                                   [--runs 20] [--warmup 3] [--threads 2] [--official /path/to/DEIM]
                                   [--ort-profile] [--inductor]

``--ort-profile`` also prints ONNX Runtime's own profile of each preset (share of time per
operator type, ``SessionOptions.enable_profiling``) over ``--runs`` calls.
"""
from __future__ import annotations

import argparse
import collections
import copy
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch

from deim.cache import cache_dir
from deim.models.build import build_model, build_postprocessor
from deim.models.detector import for_cpu_inference
from deim.models.onnx_runtime import onnx_runtime_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixed_batch import fixed_batch  # noqa: E402
from interleave import describe_machine, interleaved, median  # noqa: E402

PRESETS = ("deim_dfine_n", "deim_dfine_s", "deim_rtdetrv2_r18")
SIZE = 640


def compiled_path(model: torch.nn.Module, deployed_nhwc: torch.nn.Module,
                  images: torch.Tensor) -> Callable[[torch.Tensor], dict]:
    """The inductor-compiled deploy form; prints its compile time and how far it is from eager."""
    import torch._inductor.config as inductor_config  # noqa: PLC0415

    inductor_config.freezing = True
    compiled = torch.compile(deployed_nhwc, dynamic=False)
    start = time.perf_counter()
    got = compiled(images)
    want = model(images)
    diffs = {k: float((got[k] - want[k]).abs().max()) for k in ("pred_logits", "pred_boxes")}
    print(f"  inductor: compiled in {time.perf_counter() - start:.0f} s; max |difference| from eager: "
          + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return compiled


def build_paths(preset: str, official: str | None, inductor: bool = False) -> dict[str, Callable[[int], object]]:
    """``name -> call(i)`` running one detection of the fixed image for each path."""
    images, _ = fixed_batch(1, SIZE)
    sizes = torch.tensor([[SIZE, SIZE]])
    torch.manual_seed(0)
    model = build_model(preset, eval_spatial_size=SIZE).eval()
    post = build_postprocessor(preset).eval()
    nhwc = for_cpu_inference(model)
    deployed = copy.deepcopy(model).deploy()
    deployed_nhwc = copy.deepcopy(deployed).channels_last()
    post_deploy = copy.deepcopy(post).deploy()
    runtime = onnx_runtime_model(model, preset, SIZE, threads=torch.get_num_threads())
    paths: dict[str, Callable[[int], object]] = {
        "eager": lambda i: post(model(images), sizes),
        "eager-nhwc": lambda i: post(nhwc(images), sizes),
        "deploy": lambda i: post_deploy(deployed(images), sizes),
        "deploy-nhwc": lambda i: post_deploy(deployed_nhwc(images), sizes),
        "onnxruntime": lambda i: post(runtime(images), sizes),
    }
    if inductor:
        compiled = compiled_path(model, copy.deepcopy(deployed_nhwc), images)
        paths["inductor"] = lambda i: post_deploy(compiled(images), sizes)
    if official:
        from official_deim import OfficialDEIM  # noqa: PLC0415

        theirs = OfficialDEIM(official, preset, {"eval_spatial_size": SIZE}, model.state_dict())
        their_model, their_post = theirs.model.eval(), theirs.postprocessor.eval()
        paths["official"] = lambda i: their_post(their_model(images), sizes)
    return paths


def ort_profile(preset: str, runs: int, threads: int, rows: int = 10) -> None:
    """ONNX Runtime's time per operator type for ``preset`` (the cached export of ``build_paths``)."""
    exported = sorted(cache_dir("onnx").glob(f"{preset}-{SIZE}-*.onnx"), key=lambda p: p.stat().st_mtime)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    session = ort.InferenceSession(str(exported[-1]), options, providers=["CPUExecutionProvider"])
    images = fixed_batch(1, SIZE)[0].numpy()
    for _ in range(runs):
        session.run(None, {"images": images})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"].get("op_name")] += e["dur"]
    total = sum(per_op.values())
    print(f"{preset} ONNX Runtime profile, {total / runs / 1000:.1f} ms per image: "
          + ", ".join(f"{op} {100 * d / total:.1f}%" for op, d in per_op.most_common(rows)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--runs", type=int, default=20, help="timed calls per path")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--official", metavar="PATH", help="checkout of the official DEIM code to compare with")
    parser.add_argument("--ort-profile", action="store_true", help="also print ONNX Runtime's per-operator profile")
    parser.add_argument("--inductor", action="store_true", help="also time the deploy form compiled by inductor")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {describe_machine(args.threads)}")
    rows = []
    with torch.no_grad():
        for preset in args.presets:
            paths = build_paths(preset, args.official, args.inductor)
            times = interleaved(paths, args.runs, args.warmup)
            row = {name: 1000 * median(seconds) for name, seconds in times.items()}
            rows.append((preset, row))
            print(f"{preset}: " + "  ".join(f"{name} {ms:.1f} ms" for name, ms in row.items()))
            if args.ort_profile:
                ort_profile(preset, args.runs, args.threads)
    names = list(rows[0][1])
    header = "preset | " + " | ".join(f"{n} ms" for n in names)
    compared = [n for n in names if n != "official"]
    if args.official:
        header += " | " + " | ".join(f"{n}/official" for n in compared)
    print(f"\nbatch 1, {SIZE} px, median of {args.runs}\n{header}")
    for preset, row in rows:
        line = f"{preset} | " + " | ".join(f"{row[n]:.1f}" for n in names)
        if args.official:
            line += " | " + " | ".join(f"{row[n] / row['official']:.2f}x" for n in compared)
        print(line)


if __name__ == "__main__":
    main()
