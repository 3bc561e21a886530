"""Defaults of ``deim train`` that fit the data: the built-in data's scale, and the query count.

``--data fashion`` without ``--image-size`` / ``--batch-size`` / ``--epochs`` gets values that
fit the scale (the smoke set has 64 training images: a batch of 128 or 160 paper epochs would not
make sense). A model that selects more queries than its smallest training input has memory
positions gets its queries capped, with a one-line notice, unless ``model.num_queries`` was set
explicitly (then the run is refused with the exact ``--set`` that fixes it).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from deim.models.query_budget import max_queries
from deim.presets.sections import ModelPreset


@dataclass(frozen=True)
class ScaleDefaults:
    """``epochs`` / ``warmup_iter``: ``None`` keeps the paper schedule's."""

    image_size: int
    batch_size: int
    epochs: int | None
    warmup_iter: int | None


# smoke: 64 images -> 4 iterations per epoch, 24 in all; reduced: 4,000 -> 250 per epoch.
FASHION_DEFAULTS = {
    "smoke": ScaleDefaults(image_size=160, batch_size=16, epochs=6, warmup_iter=5),
    "reduced": ScaleDefaults(image_size=320, batch_size=16, epochs=12, warmup_iter=150),
    "full": ScaleDefaults(image_size=320, batch_size=32, epochs=None, warmup_iter=None),
}


def fill_builtin_defaults(args: argparse.Namespace) -> list[str]:
    """Fill the unset ``--image-size``, ``--batch-size``, ``--epochs`` (and the LR warm-up, unless a
    ``--set schedule.warmup_iter`` is given) of a ``--data fashion`` run in place; returns the options
    filled, as command-line text, for a notice."""
    if getattr(args, "data", None) != "fashion":
        return []
    d = FASHION_DEFAULTS[args.fashion_scale]
    filled = []
    for option, value in (("image_size", d.image_size), ("batch_size", d.batch_size), ("epochs", d.epochs)):
        if getattr(args, option, None) is None and value is not None:
            setattr(args, option, value)
            filled.append(f"--{option.replace('_', '-')} {value}")
    sets = list(getattr(args, "set", None) or [])
    if d.warmup_iter is not None and not any(s.startswith("schedule.warmup_iter=") for s in sets):
        args.set = [f"schedule.warmup_iter={d.warmup_iter}", *sets]
        filled.append(f"--set schedule.warmup_iter={d.warmup_iter}")
    return filled


def cap_queries(preset: ModelPreset, model: dict, sizes: list[int]) -> tuple[dict, str | None]:
    """``model`` overrides (``preset`` is the model they resolved to) with ``num_queries`` capped to
    the memory positions of the smallest of ``sizes``, and a notice; unchanged (and no notice) when
    they fit or ``num_queries`` is set."""
    if "num_queries" in model or "decoder.num_queries" in model:
        return model, None
    queries = preset.decoder.num_queries
    positions, size = max_queries(preset, sizes)
    if queries <= positions:
        return model, None
    notice = (f"[deim] note: {positions} queries instead of {queries}: at {size} px (the smallest training size) "
              f"the encoder has {positions} memory positions (--set model.num_queries=N to choose)")
    return {**model, "num_queries": positions}, notice
