"""One worker of :func:`deim.experiments.parallel.train_missing`: train one run into the run cache.

Usage: ``python -m deim.experiments.worker <cache root> <RunSpec as JSON> <torch threads>``.
"""
from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    import torch

    from deim.experiments.runs import RunCache, RunSpec

    root, spec_json, threads = argv
    torch.set_num_threads(int(threads))
    spec = RunSpec(**json.loads(spec_json))
    result = RunCache(root).get(spec)
    print(f"[deim] run {result.key} finished: AP {result.final.get('AP', float('nan')):.4f} "
          f"in {result.seconds:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
