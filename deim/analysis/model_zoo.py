"""The paper's model zoo (Tables 1 and 2) beside what our builds measure.

Parameters and GFLOPs are counted on our models (``deim.models.flops``). Latency and COCO AP are
quoted from the paper (T4 TensorRT fp16; the official weights on COCO): neither can be measured
meaningfully on a shared 2-core CPU.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from deim.models.build import build_model
from deim.models.flops import count_gflops, count_parameters

#: Tables 1 and 2 of the paper: (AP, baseline AP, params M, T4 latency ms, GFLOPs)
PAPER_ZOO: dict[str, tuple[float, float, float, float, float]] = {
    "deim_dfine_n": (43.0, 42.8, 4, 2.12, 7),
    "deim_dfine_s": (49.0, 48.7, 10, 3.49, 25),
    "deim_dfine_m": (52.7, 52.3, 19, 5.62, 57),
    "deim_dfine_l": (54.7, 54.0, 31, 8.07, 91),
    "deim_dfine_x": (56.5, 55.8, 62, 12.89, 202),
    "deim_rtdetrv2_r18": (49.0, 47.9, 20, 4.59, 60),
    "deim_rtdetrv2_r34": (50.9, 49.9, 31, 6.40, 92),
    "deim_rtdetrv2_r50m": (53.2, 51.9, 33, 6.90, 100),
    "deim_rtdetrv2_r50": (54.3, 53.4, 42, 9.15, 136),
    "deim_rtdetrv2_r101": (55.5, 54.3, 76, 13.66, 259),
}


def zoo_table(names: Sequence[str], image_size: int = 640) -> pd.DataFrame:
    """One row per preset: our parameter count and GFLOPs at ``image_size`` beside the paper's AP,
    parameters, T4 latency and GFLOPs."""
    rows = []
    for name in names:
        torch.manual_seed(0)
        model = build_model(name, eval_spatial_size=image_size)
        paper_ap, paper_base, paper_params, paper_ms, paper_gflops = PAPER_ZOO[name]
        row = {"model": name, "params (M)": round(count_parameters(model) / 1e6, 2), "paper params (M)": paper_params,
               "GFLOPs": round(count_gflops(model, image_size), 1), "paper GFLOPs": paper_gflops}
        row.update({"paper T4 latency (ms)": paper_ms, "paper AP": paper_ap, "paper baseline AP": paper_base})
        rows.append(row)
    return pd.DataFrame(rows)
