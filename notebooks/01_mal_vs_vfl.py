# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # MAL vs VFL: the loss a matched query gets, as a function of its confidence
#
# The paper's **Fig. 1 (bottom)** and **Fig. 3**. DEIM replaces the Varifocal Loss (VFL) of
# D-FINE/RT-DETRv2 with the **Matchability-Aware Loss** (MAL, Eq. 4):
#
# | | positive (matched class, IoU $q$) | negative |
# |---|---|---|
# | VFL | $-q\,(q\log p + (1-q)\log(1-p))$ | $-\alpha\,p^\gamma \log(1-p)$, $\alpha=0.75$, $\gamma=2$ |
# | MAL | $-(q^\gamma\log p + (1-q^\gamma)\log(1-p))$ | $-p^\gamma \log(1-p)$, $\gamma=1.5$ |
#
# VFL weights a positive by its IoU, so a **low-quality match** (IoU 0.05) barely contributes: its
# loss is small and almost flat in $p$. MAL weights every positive by 1 and lowers the target to
# $q^\gamma$, so a low-IoU match with high confidence is penalised hard. For a high-IoU match
# (0.95) the two are close. The curves below are computed by the loss functions the criterion
# trains with (`deim.losses.classification`).

# %% tags=["parameters"]
scale = "smoke"          # smoke | reduced | full: this notebook is cheap, every scale computes the same curves
figures_dir = None       # default: figures/<scale>
interactive = True       # show the ipywidgets explorer (papermill runs pass False)

# %%
import matplotlib.pyplot as plt

from deim.analysis.loss_curves import LossSettings, loss_curves, plot_loss_curves, summary_table
from deim.report.writer import FigureWriter

settings = LossSettings()
out = FigureWriter("01_mal_vs_vfl", scale, figures_dir, params={"settings": settings.__dict__})
curves = loss_curves(ious=(0.05, 0.95), settings=settings)

# %% [markdown]
# ## Loss versus predicted confidence (Fig. 3)

# %%
fig = plot_loss_curves(curves, "loss", title="MAL (γ=1.5) vs VFL (α=0.75, γ=2)")
out.save_figure(fig, "loss_vs_confidence")
plt.show()

# %% [markdown]
# ## Gradients with respect to the logit
# What the optimiser sees. At IoU 0.05 the VFL gradient is pushed toward zero almost everywhere;
# MAL keeps a strong gradient that drives the confidence down to $q^\gamma \approx 0.011$.

# %%
fig = plot_loss_curves(curves, "grad_logit", title="d loss / d logit")
out.save_figure(fig, "grad_vs_confidence")
plt.show()

# %% [markdown]
# ## The numbers

# %%
table = summary_table(curves)
out.save_table(table, "values", caption="Loss of one query-class pair at chosen confidences "
               "(deim.losses.classification, computed).")
table

# %% [markdown]
# ## Explore (JupyterLab only)
# Sliders over IoU, γ and α; papermill runs skip this cell's widgets.

# %%
if interactive:
    import ipywidgets as widgets

    def _show(iou: float, mal_gamma: float, vfl_gamma: float, vfl_alpha: float) -> None:
        s = LossSettings(mal_gamma=mal_gamma, vfl_gamma=vfl_gamma, vfl_alpha=vfl_alpha)
        plot_loss_curves(loss_curves(ious=(iou,), settings=s), "loss")
        plt.show()

    widgets.interact(_show, iou=widgets.FloatSlider(0.05, min=0.01, max=1.0, step=0.01),
                     mal_gamma=widgets.FloatSlider(1.5, min=0.5, max=3.0, step=0.1),
                     vfl_gamma=widgets.FloatSlider(2.0, min=0.5, max=3.0, step=0.1),
                     vfl_alpha=widgets.FloatSlider(0.75, min=0.05, max=1.0, step=0.05))
