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
# # Convergence: AP versus epochs and wall-clock (the paper's Fig. 0a)
#
# DEIM (Dense O2O + MAL) against the baseline (VFL, standard augmentation, 2× budget), mean and ±1 std
# band over seeds. The runs are those of `08_dense_o2o_mal` (shared through the run cache). The paper:
# DEIM converges faster than the baselines for the same training cost. The third panel is the training
# log's number of one-to-one matches per training image (the final decoder layer's Hungarian matches),
# epoch by epoch: Dense O2O's effect on the supervision, and where it stops (the schedule's later stages).

# %% tags=["parameters"]
scale = "smoke"
figures_dir = None
interactive = True
data_root = None

# %%
import matplotlib.pyplot as plt

from deim.analysis.ablation_plots import annotate_figure, plot_curves
from deim.experiments.aggregate import crossings, final_metric, run_records, run_settings
from deim.experiments.settings import dense_o2o_mal_ablation
from deim.report.writer import FigureWriter

out = FigureWriter("09_convergence", scale, figures_dir, params={"data_root": data_root})
ablation = dense_o2o_mal_ablation(scale, data_root)
results = run_settings({k: ablation[k] for k in ("baseline (VFL), 2x", "DEIM (Dense O2O + MAL), 1x",
                                                 "+ Dense O2O, 1x", "+ MAL, 1x")})
out.params["runs"] = run_records(results)  # run keys and training commits go into the provenance

# %%
import numpy as np

target = float(np.mean([final_metric(r) for r in results["baseline (VFL), 2x"]]))
fig, (a, b, c) = plt.subplots(1, 3, figsize=(17, 4))
plot_curves(results, x="epoch", ax=a, title="AP vs epoch")
plot_curves(results, x="hours", ax=b, title="AP vs training wall time (Fig. 0a)")
for ax in (a, b):
    ax.axhline(target, color="tab:red", ls=":", lw=1)
    ax.text(ax.get_xlim()[0], target, " 2x baseline's final AP", color="tab:red", fontsize=7, va="bottom")
plot_curves(results, "positives_per_image", ax=c, percent=False,
            title="one-to-one positives per training image (final layer)")
fig.tight_layout()
annotate_figure(fig, "Convergence (Fig. 0a, Table 6)", scale, "Fig. 0a: DEIM converges faster than the baselines "
                "for the same training cost; Table 6: at 1x (36 epochs) it reaches the baseline's 2x (72) AP")
out.save_figure(fig, "convergence")
plt.show()

# %% [markdown]
# **Table 6's headline, asked directly.** Does each run at 1x reach the 2x baseline's final AP (the mean
# over its seeds, the red line), and at which epoch and after how many training hours does it first get
# there? `None`: never within its budget.

# %%
reach = crossings(results, target)
out.save_table(reach, "crossings", caption=f"First epoch (1-based) and training hours at which each run's AP reaches "
               f"the 2x baseline's mean final AP ({target:.2f}); {len(results['baseline (VFL), 2x'])} seeds per "
               "setting; training hours exclude evaluation.")
reach
