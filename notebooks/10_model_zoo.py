# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The model zoo (the paper's Tables 1 and 2)
#
# Every DEIM preset built by `deim.build_model`, with the parameter count and GFLOPs our build
# measures (at 640×640, batch 1, deploy model, `torch.utils.flop_counter`) beside the paper's
# numbers. The state dicts of these builds equal the official checkpoints' layout
# (`tests/test_model_zoo.py`), so the official weights load with `deim.load_checkpoint`.
# Latency (TensorRT fp16 on a T4) and COCO AP are quoted from the paper: they need a T4 and COCO.
# At `smoke` scale only the two smallest presets are measured.

# %% tags=["parameters"]
scale = "smoke"
figures_dir = None
interactive = True

# %%
import matplotlib.pyplot as plt

from deim.analysis.model_zoo import PAPER_ZOO, zoo_table
from deim.report.writer import FigureWriter

out = FigureWriter("10_model_zoo", scale, figures_dir)
names = ["deim_dfine_n", "deim_dfine_s"] if scale == "smoke" else list(PAPER_ZOO)
table = zoo_table(names, image_size=640)
out.save_table(table, "model_zoo", caption="Our builds (params, GFLOPs at 640) beside the paper's "
               "Tables 1-2 (COCO val2017 AP, T4 TensorRT fp16 latency).")
table

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for family, marker in (("dfine", "o"), ("rtdetrv2", "s")):
    rows = table[table.model.str.contains(family)]
    ax.plot(rows["GFLOPs"], rows["paper AP"], marker=marker, label=f"DEIM-{'D-FINE' if family == 'dfine' else 'RT-DETRv2'}")
    ax.plot(rows["GFLOPs"], rows["paper baseline AP"], marker=marker, ls="--", alpha=0.6,
            label=f"{'D-FINE' if family == 'dfine' else 'RT-DETRv2'} (baseline)")
ax.set_xlabel("GFLOPs (our count, 640×640)")
ax.set_ylabel("COCO val2017 AP (paper)")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
out.save_figure(fig, "ap_vs_gflops")
plt.show()
