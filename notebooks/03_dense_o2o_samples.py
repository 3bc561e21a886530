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
# # What the Dense O2O pipeline makes
#
# Dense O2O keeps one-to-one Hungarian matching but puts more targets into every training image:
# **mosaic** tiles four images on one canvas (output size kept, random affine), **mixup** blends two
# images of a batch (weight β ∈ [0.45, 0.55]) and concatenates their targets. Below, one batch of the
# built-in data (Fashion-MNIST objects on real-image canvases, `deim.data.fashion`) through the real
# training pipeline in each mode. Orange boxes carry mixup weight ≥ 0.5, cyan boxes the other image's.
# The dataset's own statistics close the notebook.

# %% tags=["parameters"]
scale = "smoke"
figures_dir = None
interactive = True

# %%
import matplotlib.pyplot as plt

from deim.analysis.dense_o2o import MODES, draw_batch, sample_batch
from deim.data.coco import CocoDetection
from deim.data.fashion import fashion_splits
from deim.data.statistics import dataset_statistics
from deim.experiments.protocol import get_protocol
from deim.report.writer import FigureWriter

out = FigureWriter("03_dense_o2o_samples", scale, figures_dir)
protocol = get_protocol("smoke" if scale == "smoke" else "reduced")  # the canvases the study trains on
splits = fashion_splits(protocol.fashion_scale, **protocol.canvas)
img_folder, ann_file = splits["train"]
names = CocoDetection(img_folder, ann_file).label_map.names
IMAGE_SIZE, BATCH = 320, 4

# %%
fig, axes = plt.subplots(len(MODES), BATCH, figsize=(3 * BATCH, 3.2 * len(MODES)))
for row, mode in zip(axes, MODES):
    images, targets = sample_batch(img_folder, ann_file, mode, batch_size=BATCH, image_size=IMAGE_SIZE, seed=1)
    draw_batch(images, targets, names, title=mode, ax_row=row)
fig.tight_layout()
out.save_figure(fig, "samples")
plt.show()

# %% [markdown]
# The built-in dataset (train split at this scale): images, objects per image and the object-size
# distribution (COCO area bins: small < 32², medium < 96², large otherwise, in pixels of the 320 px canvas).

# %%
import pandas as pd

rows = []
for split, (folder, ann) in splits.items():
    st = dataset_statistics(ann)
    rows.append({"split": split, "images": st["images"], "objects": st["objects"],
                 "objects/image": round(st["objects_per_image"]["mean"], 2),
                 "min/max per image": f"{st['objects_per_image']['min']}/{st['objects_per_image']['max']}",
                 **{f"{k} (area)": f"{100 * v:.0f}%" for k, v in st["area"].items()},
                 "median box side (px)": round(st["box_side_px"]["median"], 1)})
table = pd.DataFrame(rows)
out.save_table(table, "dataset_statistics", caption="Built-in Fashion-MNIST detection data (deim.data.fashion).")
table
