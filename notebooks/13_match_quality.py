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
# # Match quality: what MAL changes in the trained detector (beyond the paper)
#
# The paper's case for MAL (Sec. 3.3, Fig. 3) is about matched pairs: VFL gives a low-IoU match almost
# no loss, so the detector may learn confident scores for poorly placed boxes; MAL's `IoU^γ` target
# punishes that. The paper shows losses and final AP; here we look inside the trained models. The runs
# are the ablation's "baseline (VFL), 1x" and "+ MAL, 1x" (same data pipeline, no Dense O2O, every
# seed), read from the run cache with the EMA weights each run kept at a few evenly spaced epochs.
#
# 1. **Matched pairs**: the final decoder layer's one-to-one Hungarian matches (the training matcher)
#    on the validation images; per pair the IoU of the matched box with its ground truth and the score
#    (sigmoid) of the ground truth's class. Spearman ρ of IoU and score, and the share of matches with
#    IoU < 0.5 scored above the median.
# 2. **Calibration of detections**: the post-processor's detections scored at least `score_threshold`;
#    per detection its IoU with the best ground truth of its class. Reliability diagrams and the expected
#    calibration error (ECE, 10 score bins), "correct" meaning IoU ≥ 0.5 and IoU ≥ 0.75.
# 3. **The question**: does MAL make the score a better predictor of localisation (higher ρ, lower
#    ECE at IoU 0.75), and does that show up as AP75 rather than AP50 (the paper's Table 6)? Paired
#    t-tests by seed.

# %% tags=["parameters"]
scale = "smoke"
figures_dir = None
interactive = True
data_root = None
score_threshold = 0.1
device = "cpu"

# %%
import matplotlib.pyplot as plt

from deim.analysis.match_quality_plots import plot_epoch_curves, plot_pair_histograms, plot_reliability
from deim.analysis.match_quality_runs import epoch_table, measure_runs, run_summary
from deim.analysis.match_quality_verdicts import paired_verdicts, verdict_line
from deim.experiments.aggregate import run_records, run_settings
from deim.experiments.settings import dense_o2o_mal_ablation
from deim.report.writer import FigureWriter

BASELINE, MAL = "baseline (VFL), 1x", "+ MAL, 1x"
out = FigureWriter("13_match_quality", scale, figures_dir,
                   params={"data_root": data_root, "score_threshold": score_threshold})
ablation = dense_o2o_mal_ablation(scale, data_root)
settings = {k: ablation[k] for k in (BASELINE, MAL)}
results = run_settings(settings)  # cached runs (trained here when missing, e.g. at smoke)
out.params["runs"] = run_records(results)  # run keys and training commits go into the provenance
records = measure_runs(settings, device=device, min_score=score_threshold)
summary = run_summary(records)
epochs = sorted(summary.epoch.unique())
final = int(max(epochs))
out.save_table(summary, "per_run", caption="Per run and snapshot epoch (0-based): matched pairs, their mean IoU, "
               "Spearman ρ(IoU, score), share of matches with IoU < 0.5 scored above the median, detections "
               f"scored ≥ {score_threshold:g} and their ECE (fractions) at IoU 0.5 / 0.75.")
table = epoch_table(summary)
out.save_table(table, "per_epoch", caption="Mean ± std over seeds per setting and epoch (epochs trained).")
table

# %% [markdown]
# ## 1. Matched pairs: IoU against the score of the target class
#
# Each panel pools the seeds' matches of one setting after one epoch (colour: share of the matches,
# log scale; dashed: IoU 0.5). A score that tracks localisation puts the mass on the rising diagonal;
# the top-left corner holds the confident, badly placed matches MAL is meant to remove.

# %%
fig = plot_pair_histograms(records.pairs, summary, list(settings), epochs)
out.save_figure(fig, "pairs")
plt.show()

# %%
fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
plot_epoch_curves(summary, "spearman", ax=a, ylabel="Spearman ρ(IoU, score)",
                  title="rank correlation of IoU and score, matched pairs")
plot_epoch_curves(summary, "confident_poor_share", ax=b, scale=100.0, ylabel="% of matches",
                  title="IoU < 0.5 but score above the median")
fig.tight_layout()
out.save_figure(fig, "correlation")
plt.show()

# %% [markdown]
# ## 2. Calibration of the final detections
#
# Detections of the final EMA model scored at least `score_threshold`, seeds pooled: per score bin the
# share of detections lying at IoU ≥ t of a ground truth of their class. On the diagonal the score
# *is* the probability of a good box; the ECE is the count-weighted distance to it.

# %%
fig = plot_reliability(records.detections, summary, list(settings), final, score_threshold)
out.save_figure(fig, "reliability")
plt.show()

# %% [markdown]
# ## 3. Does MAL make the score a better predictor of localisation, and is it AP75 that gains?
#
# MAL minus VFL at the final epoch, paired by seed (match quality from the snapshots above, AP50/AP75
# from each run's final evaluation). "AP75 − AP50" tests whether the AP75 gain exceeds the AP50 gain.

# %%
verdicts = paired_verdicts(results, summary, BASELINE, MAL, epoch=final)
line = verdict_line(verdicts)
out.save_table(verdicts, "verdict", caption=f"{MAL} vs {BASELINE} after {final + 1} epochs. {line} "
               "'difference': MAL minus VFL (ρ in its own units, the others in percentage points); 'p': paired "
               "t-test over seeds (same seed = same initialisation and data order); 'better'/'worse' for MAL, "
               "by the metric's direction, when p < 0.05.")
print(line)
verdicts
