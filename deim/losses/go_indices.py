"""The union ("GO") match set of DEIM: one ground truth per query, pooled over all decoder layers.

Each supervised output (last decoder layer, every auxiliary layer, D-FINE's ``pre`` head,
the encoder proposals) is matched to the targets on its own by the Hungarian matcher. The
union set pools those one-to-one matches per image: every query that any output matched is
kept, assigned to the ground truth it was matched to most often. A ground truth may thus be
covered by several queries. DEIM uses this set for the box losses (L1, GIoU, FGL, DDF).

Ties between ground truths matched equally often to a query go to the smaller ground-truth
index: pairs are ranked by count with a *stable* descending sort over the lexicographically
sorted unique ``(query, gt)`` pairs, and the first pair seen for a query wins. This equals
what the official code produces on CPU, and it is deterministic on every device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

MatchIndices = list[tuple[Tensor, Tensor]]
"""Per image ``(query_idx [K] int64, gt_idx [K] int64)``, as the Hungarian matcher returns."""


def _union_one_image(query_idx: Tensor, gt_idx: Tensor) -> tuple[Tensor, Tensor]:
    """Majority ground truth per query for one image's pooled pairs ``[K]``, ``[K]``."""
    if query_idx.numel() == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=query_idx.device)
        return empty, empty.clone()
    pairs = torch.stack([query_idx, gt_idx], dim=1).long()
    unique_pairs, counts = torch.unique(pairs, dim=0, return_counts=True)  # lexicographic order
    ranked = unique_pairs[torch.sort(counts, descending=True, stable=True).indices]
    queries, inverse = torch.unique(ranked[:, 0], return_inverse=True)
    positions = torch.arange(len(ranked), device=ranked.device)
    first_seen = torch.full((len(queries),), len(ranked), dtype=torch.int64, device=ranked.device)
    first_seen = first_seen.scatter_reduce(0, inverse, positions, reduce="amin")
    kept = ranked[first_seen.sort().values]  # in rank order, like the official dict insertion
    return kept[:, 0].contiguous(), kept[:, 1].contiguous()


def union_match_indices(per_output_indices: Sequence[MatchIndices]) -> MatchIndices:
    """Pool the matches of several outputs into one set per image.

    Args:
        per_output_indices: one entry per supervised output, in the order main, aux layers,
            pre, encoder; each entry is the per-image list of ``(query_idx, gt_idx)``.
    Returns:
        Per image ``(query_idx [K'] int64, gt_idx [K'] int64)`` with distinct queries, ordered by
        how often the kept pair was matched (most first).
    """
    if not per_output_indices:
        raise ValueError("per_output_indices is empty: need the matches of at least one output")
    num_images = len(per_output_indices[0])
    if any(len(ind) != num_images for ind in per_output_indices):
        raise ValueError(f"every output needs matches for {num_images} images, got "
                         f"{[len(ind) for ind in per_output_indices]}")
    union = []
    for image in range(num_images):
        query_idx = torch.cat([ind[image][0] for ind in per_output_indices])
        gt_idx = torch.cat([ind[image][1] for ind in per_output_indices])
        union.append(_union_one_image(query_idx, gt_idx))
    return union
