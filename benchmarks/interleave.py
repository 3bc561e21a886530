"""Interleaved timing of several implementations in one process, and the machine they ran on.

Timing implementations one after the other on a shared machine lets load changes land on one of
them; alternating them iteration by iteration (the order rotating every round) exposes both to the
same load, so their *ratio* stays meaningful even when absolute times do not.
"""
from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def interleaved(steps: dict[str, Callable[[int], object]], iters: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each ``steps[name](i)`` over ``iters`` rounds after ``warmup`` untimed ones.

    Round ``i`` calls every step once, starting from a different one each round; the torch RNG is
    seeded with ``i`` before each call, so every implementation sees the same random draws
    (e.g. denoising noise) when it makes them in the same order.
    """
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup + iters):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            torch.manual_seed(i)
            start = time.perf_counter()
            steps[name](i)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def describe_machine(threads: int) -> str:
    """One line: CPU model, logical CPUs, torch threads, torch version, load average."""
    import os

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with {threads} thread(s); "
            f"load average {load}")
