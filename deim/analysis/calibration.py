"""Calibration of scores against a yes/no outcome: reliability bins and expected calibration error.

A detector's score is *calibrated for localisation* at IoU threshold ``t`` when, among the
detections scored about ``s``, a share ``s`` lies at IoU >= ``t`` of a ground truth. The scores are
cut into ``bins`` equal-width bins of ``[0, 1]`` (a score of exactly 1 falls in the last bin);
per bin the *confidence* is the mean score and the *accuracy* the share of correct detections.
The expected calibration error (Guo et al., 2017) is the count-weighted mean gap between them::

    ECE = sum_b (n_b / N) * |accuracy_b - confidence_b|

Empty bins contribute nothing; with no detection at all the ECE is NaN.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _bin_index(scores: np.ndarray, bins: int) -> np.ndarray:
    """Bin of each score in ``[0, 1]``: ``floor(score * bins)``, the score 1 in the last bin."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if scores.size and (scores.min() < 0 or scores.max() > 1):
        raise ValueError(f"scores must lie in [0, 1], got range [{scores.min():.3g}, {scores.max():.3g}]")
    return np.minimum((scores * bins).astype(np.int64), bins - 1)


def _as_arrays(scores, correct) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    c = np.asarray(correct, dtype=np.float64).ravel()
    if s.shape != c.shape:
        raise ValueError(f"scores and correct differ in length: {s.size} vs {c.size}")
    return s, c


def reliability_bins(scores, correct, bins: int = 10) -> pd.DataFrame:
    """One row per score bin: ``lo``, ``hi``, ``count``, ``confidence`` (mean score), ``accuracy``
    (mean of ``correct``) and ``gap = accuracy - confidence`` (NaN in an empty bin).

    Args:
        scores: ``[N]`` scores in ``[0, 1]``.
        correct: ``[N]`` booleans (or values in ``[0, 1]``, e.g. IoU for a mean-IoU diagram).
        bins: number of equal-width bins over ``[0, 1]``.
    """
    s, c = _as_arrays(scores, correct)
    index = _bin_index(s, bins)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(index, weights=s, minlength=bins) / count
        accuracy = np.bincount(index, weights=c, minlength=bins) / count
    edges = np.linspace(0.0, 1.0, bins + 1)
    return pd.DataFrame({"lo": edges[:-1], "hi": edges[1:], "count": count, "confidence": confidence,
                         "accuracy": accuracy, "gap": accuracy - confidence})


def expected_calibration_error(scores, correct, bins: int = 10) -> float:
    """``sum_b (n_b / N) |accuracy_b - confidence_b|`` over :func:`reliability_bins`; NaN when ``N = 0``."""
    table = reliability_bins(scores, correct, bins)
    total = int(table["count"].sum())
    if total == 0:
        return float("nan")
    filled = table[table["count"] > 0]
    return float((filled["count"] * filled["gap"].abs()).sum() / total)
