"""How many queries a model can select at an input size.

The decoder's queries are the top-k positions of the encoder's memory (every pixel of every
feature level). A small input has few positions: DEIM-D-FINE-N (strides 16 and 32) has
``10·10 + 5·5 = 125`` at 160 px, fewer than its 300 queries. Multi-scale training also runs at
``0.75×`` the training size, so the smallest training size is what counts.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from deim.presets.sections import ModelPreset


def level_strides(preset: ModelPreset) -> list[int]:
    """The stride of each memory level (levels beyond the encoder's are strided by 2 again)."""
    strides = list(preset.decoder.feat_strides)
    while len(strides) < preset.decoder.num_levels:
        strides.append(strides[-1] * 2)
    return strides[: preset.decoder.num_levels]


def memory_positions(preset: ModelPreset, image_size: int) -> int:
    """Memory positions of an ``image_size`` × ``image_size`` input: the sum over levels of ``ceil(S / stride)²``."""
    return sum(math.ceil(image_size / s) ** 2 for s in level_strides(preset))


def max_queries(preset: ModelPreset, sizes: Iterable[int]) -> tuple[int, int]:
    """``(positions, size)``: the fewest memory positions over ``sizes`` and the size that has them."""
    size = min(sizes)
    return memory_positions(preset, size), size


def check_query_budget(preset: ModelPreset, sizes: Iterable[int]) -> None:
    """Refuse (``ValueError``) a model that selects more queries than its smallest input has positions;
    the message gives the exact ``--set`` that fixes it."""
    positions, size = max_queries(preset, sizes)
    queries = preset.decoder.num_queries
    if queries > positions:
        raise ValueError(f"{preset.name} selects {queries} queries but at {size} px (the smallest training size) "
                         f"its encoder has only {positions} memory positions: add --set model.num_queries={positions} "
                         f"(or train at a larger --image-size)")
