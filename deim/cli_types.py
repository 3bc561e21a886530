"""Argument types for the command line that refuse out-of-range numbers while parsing.

Each is an ``argparse`` ``type=`` callable: a bad value raises ``argparse.ArgumentTypeError``,
which the parser turns into one line and exit code 2 (``deim train: error: argument
--image-size: 0 is not a positive multiple of 32``).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

STRIDE = 32  # every preset downsamples by 32: square sizes must be multiples of it


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
    if kind is float and value != value:  # NaN
        raise argparse.ArgumentTypeError(f"{text} is not a number")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An integer >= ``minimum``."""
    def parse(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum of {minimum}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def image_size(text: str) -> int:
    """A square image size in pixels: a positive multiple of 32."""
    value = _number(text, int)
    if value < STRIDE or value % STRIDE:
        raise argparse.ArgumentTypeError(f"{value} is not a positive multiple of {STRIDE} (e.g. 320, 640)")
    return value


def probability(text: str) -> float:
    """A score threshold in [0, 1]."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value:g} is outside [0, 1] (scores are probabilities)")
    return value
