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
# # Learning-rate and data-augmentation schedules (the paper's Fig. 4)
#
# DEIM trains with a **flat-cosine** learning rate (quadratic warm-up, flat phase, cosine decay to
# `lr * lr_gamma`, held at the minimum in the last *no-aug* epochs) and an epoch-keyed
# augmentation schedule: 4 warm-up epochs without the policy ops, **Dense O2O** (mosaic and
# mixup, p = 0.5 each) until about half of training (`4 + stop_epoch / 2`), standard RT-DETR
# augmentation until `stop_epoch`, then no augmentation. The baselines (D-FINE, RT-DETRv2) keep
# a constant LR after warm-up and never use Dense O2O. Values are the official configs', from
# `deim.presets.schedules`; iterations per epoch are those of COCO train2017 at each preset's batch size.

# %% tags=["parameters"]
scale = "smoke"
figures_dir = None
interactive = True

# %%
import matplotlib.pyplot as plt

from deim.analysis.schedule_curves import plot_schedules, schedule_summary
from deim.report.writer import FigureWriter

DEIM_DFINE = ["deim_dfine_n", "deim_dfine_s", "deim_dfine_m", "deim_dfine_l", "deim_dfine_x"]
DEIM_RT = ["deim_rtdetrv2_r18", "deim_rtdetrv2_r34", "deim_rtdetrv2_r50m", "deim_rtdetrv2_r50", "deim_rtdetrv2_r101"]
BASELINES = ["dfine_n", "dfine_s", "dfine_m", "dfine_l", "dfine_x",
             "rtdetrv2_r18", "rtdetrv2_r34", "rtdetrv2_r50m", "rtdetrv2_r50", "rtdetrv2_r101"]
out = FigureWriter("02_schedules", scale, figures_dir)

# %%
fig = plot_schedules(DEIM_DFINE + DEIM_RT)
out.save_figure(fig, "deim_schedules")
plt.show()

# %% [markdown]
# The baselines for comparison: a constant LR after warm-up and standard augmentation until `stop_epoch`.

# %%
fig = plot_schedules(BASELINES)
out.save_figure(fig, "baseline_schedules")
plt.show()

# %%
table = schedule_summary(DEIM_DFINE + DEIM_RT + BASELINES)
out.save_table(table, "settings", caption="Per-preset schedule settings (official configs; "
               "deim.presets.schedules). Epochs are 0-based stage boundaries.")
table
