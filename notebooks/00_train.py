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
# # Train a DEIM model
#
# At `full` scale on a GPU node this cell launches `torchrun --nproc_per_node=<gpus>` with the paper's
# schedule for `preset` on COCO (`data_root` holds `train2017/`, `val2017/`, `annotations/`) and shows the
# live log; checkpoints and `log.jsonl` go to `outputs/train/<preset>`. At `smoke`/`reduced` it trains the
# same code in this process on the built-in data on CPU (the protocol of that scale, README): the DEIM
# run of seed 0, kept in the run cache and shared with the reproduction notebooks. It plots loss and AP
# per epoch. The same run from a shell: `deim train --preset ... --data ...` (README).

# %% tags=["parameters"]
scale = "smoke"
figures_dir = None
interactive = True
preset = "deim_dfine_s"
data_root = None
gpus = 1

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt

from deim.analysis.training_curves import plot_history
from deim.report.writer import FigureWriter

out = FigureWriter("00_train", scale, figures_dir, params={"preset": preset, "data_root": data_root, "gpus": gpus})

if scale == "full":
    from deim.engine.launch import stream, torchrun_command

    if data_root is None:
        raise ValueError("scale='full' trains on COCO: set data_root")
    output_dir = f"outputs/train/{preset}"
    code = stream(torchrun_command(preset, data_root, gpus, output_dir))
    if code != 0:
        raise RuntimeError(f"training exited with code {code}; see the log above")
    history = [json.loads(line) for line in (Path(output_dir) / "log.jsonl").read_text().splitlines()]
else:
    from deim.experiments.aggregate import run_records
    from deim.experiments.runs import RunCache
    from deim.experiments.settings import dense_o2o_mal_ablation

    spec = dense_o2o_mal_ablation(scale)["DEIM (Dense O2O + MAL), 1x"][0]  # seed 0: the run 06, 08 and 09 use too
    cfg = spec.train_config()
    print(f"{spec.label()}: {cfg.preset} {cfg.model} on the built-in data ({cfg.data.fashion_scale}), "
          f"{cfg.resolved_schedule().epochs} epochs (run {spec.key()}, trained unless cached)")
    result = RunCache().get(spec, progress=interactive)
    history = result.history
    out.params["runs"] = run_records({spec.label(): [result]})

# %%
fig = plot_history(history, title=f"{preset if scale == 'full' else 'protocol model'} ({scale})")
out.save_figure(fig, "training_curves")
plt.show()
