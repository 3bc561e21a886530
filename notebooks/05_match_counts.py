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
# # One-to-one vs one-to-many matching on the same predictions (the paper's Fig. 2)
#
# A partly trained detector (the DEIM run of the protocol, seed 0, shared with `06`/`08` through the run
# cache) predicts on one epoch of training images with the standard augmentation. On those same
# predictions we count the positives of Hungarian matching (O2O, the official cost) and of SimOTA
# (O2M, `deim.losses.simota`). The paper (RT-DETRv2-R50, one COCO epoch): O2O stays below about 10
# positives per image, O2M spreads widely and can exceed 80, up to about 10× the O2O count.

# %% tags=["parameters"]
scale = "smoke"
figures_dir = None
interactive = True
data_root = None

# %%
import matplotlib.pyplot as plt

from deim.analysis.ablation_plots import annotate_figure
from deim.analysis.match_counts import match_counts, match_summary, plot_match_counts
from deim.data.aug_schedule import AugSchedule
from deim.engine.data_build import build_training_data
from deim.engine.inference import load_for_inference
from deim.experiments.aggregate import run_records
from deim.experiments.runs import RunCache
from deim.experiments.settings import dense_o2o_mal_ablation
from deim.report.writer import FigureWriter

out = FigureWriter("05_match_counts", scale, figures_dir, params={"data_root": data_root})
spec = dense_o2o_mal_ablation(scale, data_root)["DEIM (Dense O2O + MAL), 1x"][0]
run = RunCache().get(spec)
out.params["runs"] = run_records({"DEIM (Dense O2O + MAL), 1x": [run]})
detector = load_for_inference(run.checkpoint)
cfg = spec.train_config()
standard = AugSchedule.baseline(stop_epoch=1, base_size=cfg.data.image_size, base_size_repeat=None)
data = build_training_data(cfg.data, standard, batch_size=8, seed=0)
counts = match_counts(detector.model, data.train_loader)
print(f"{len(counts)} images, model from run {run.key} (final AP {100 * run.final['AP']:.1f})")

# %%
fig = plot_match_counts(counts, title="O2O vs O2M positives per image")
annotate_figure(fig, "Matching: one-to-one vs one-to-many (Fig. 2)", scale, "Fig. 2 (RT-DETRv2-R50, one COCO "
                "epoch): O2O mostly below 10 positives per image; SimOTA (O2M) up to more than 80, about 10x O2O "
                "at the extreme")
out.save_figure(fig, "match_counts")
plt.show()

# %%
table = match_summary(counts)
out.save_table(table, "match_counts", caption="Positives per image on the same predictions over one epoch. "
               "Paper (Fig. 2, COCO): O2O mostly < 10, O2M up to > 80, about 10x O2O at the extreme.")
table
