"""Anchors (grid, logit space, validity at the border, caching) and top-k query selection."""
from __future__ import annotations

import pytest
import torch

from deim.models.query_selection import (
    AnchorCache,
    build_enc_output,
    generate_anchors,
    inverse_sigmoid,
    select_topk_queries,
    topk_indices,
)


def test_anchor_grid_by_hand():
    """2x3 map at level 0 and 1x1 at level 1: centres of the cells, sides 0.05 and 0.1."""
    anchors, valid = generate_anchors([(2, 3), (1, 1)], eps=0.01)
    assert anchors.shape == (1, 7, 4) and valid.shape == (1, 7, 1) and valid.dtype == torch.bool
    assert valid.all()
    expected = torch.tensor([[x / 6, y / 4, 0.05, 0.05] for y in (1, 3) for x in (1, 3, 5)] + [[0.5, 0.5, 0.1, 0.1]])
    torch.testing.assert_close(torch.sigmoid(anchors[0]), expected)
    torch.testing.assert_close(anchors[0], torch.log(expected / (1 - expected)))


def test_anchors_touching_the_border_are_invalid():
    # 16x16 map: centres 1/32 .. 31/32, side 0.05; with eps = 0.04 the outer ring is invalid
    anchors, valid = generate_anchors([(16, 16)], eps=0.04)
    grid = valid[0, :, 0].reshape(16, 16)
    inner = torch.zeros(16, 16, dtype=torch.bool)
    inner[1:15, 1:15] = True
    assert torch.equal(grid, inner)
    assert torch.isinf(anchors[0, ~valid[0, :, 0]]).all()
    assert torch.isfinite(anchors[0, valid[0, :, 0]]).all()
    # a level whose side 0.05 * 2**5 = 1.6 exceeds 1 is invalid everywhere (and no NaN leaks out)
    anchors, valid = generate_anchors([(1, 1)] * 6, eps=0.01)
    assert valid[0, :, 0].tolist() == [True] * 5 + [False]
    assert not torch.isnan(anchors).any()


def test_level_shapes_and_official_eval_size():
    cache = AnchorCache([8, 16, 32], eps=0.01)
    assert cache.level_shapes((640, 480)) == [(80, 60), (40, 30), (20, 15)]
    assert cache.level_shapes((100, 100)) == [(12, 12), (6, 6), (3, 3)]
    anchors, valid = cache.for_image_size((640, 640))
    assert anchors.shape == (1, 8400, 4)
    # only the outer ring of the stride-8 grid (centre 0.5 / 80 < 0.01) is invalid
    assert int(valid.sum()) == 8400 - 4 * 79


def test_cache_reuses_per_shape_and_device():
    cache = AnchorCache([8, 16], eps=0.01)
    first = cache.for_level_shapes([(4, 4), (2, 2)])
    assert cache.for_level_shapes([(4, 4), (2, 2)], device="cpu")[0] is first[0]
    other = cache.for_level_shapes([(6, 4), (3, 2)])
    assert other[0] is not first[0] and other[0].shape == (1, 30, 4)
    # image-size anchors are copies: editing them (e.g. as loaded buffers) leaves the cache intact
    anchors, valid = cache.for_image_size((32, 32))
    assert anchors is not first[0] and torch.equal(anchors, first[0]) and torch.equal(valid, first[1])
    anchors.add_(1.0)
    assert torch.equal(cache.for_level_shapes([(4, 4), (2, 2)])[0], first[0])
    assert not torch.equal(anchors, first[0])


def test_bad_cache_arguments():
    with pytest.raises(ValueError, match="feat_strides"):
        AnchorCache([0, 8])
    with pytest.raises(ValueError, match="level shapes"):
        AnchorCache([8, 16]).for_level_shapes([(4, 4)])
    with pytest.raises(ValueError, match="image_size"):
        AnchorCache([8]).level_shapes((64, 64, 3))


def test_inverse_sigmoid():
    x = torch.tensor([0.1, 0.5, 0.9])
    torch.testing.assert_close(torch.sigmoid(inverse_sigmoid(x)), x)
    edge = inverse_sigmoid(torch.tensor([-0.5, 0.0, 1.0, 2.0]))
    big = torch.log(torch.tensor(1 / 1e-5))
    torch.testing.assert_close(edge, torch.stack([-big, -big, big, big]))


def test_enc_output_names():
    enc = build_enc_output(16)
    assert [k for k in enc.state_dict()] == ["proj.weight", "proj.bias", "norm.weight", "norm.bias"]
    assert isinstance(enc.norm, torch.nn.LayerNorm)


def _random(seed: int = 0, b: int = 2, n: int = 20, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, 8, generator=g), torch.randn(b, n, c, generator=g), torch.randn(1, n, 4, generator=g)


def test_default_selection_is_a_sort_of_the_best_class_logit():
    memory, logits, anchors = _random()
    top_memory, top_logits, top_anchors = select_topk_queries(memory, logits, anchors, 6)
    for b in range(2):
        order = sorted(range(20), key=lambda i: -logits[b, i].max().item())[:6]
        assert torch.equal(top_memory[b], memory[b, order])
        assert torch.equal(top_logits[b], logits[b, order])
        assert torch.equal(top_anchors[b], anchors[0, order])  # one anchor set shared by the batch


def test_one2many_and_agnostic_selection():
    memory, logits, anchors = _random(1)
    index = topk_indices(logits, 7, "one2many")
    for b in range(2):
        pairs = sorted(range(100), key=lambda i: -logits[b].flatten()[i].item())[:7]
        assert index[b].tolist() == [p // 5 for p in pairs]
    per_batch = torch.randn(2, 20, 4)  # RT-DETRv2 gathers per-image boxes instead of shared anchors
    _, _, boxes = select_topk_queries(memory, logits[..., :1], per_batch, 4, "agnostic")
    for b in range(2):
        order = torch.argsort(logits[b, :, 0], descending=True)[:4]
        assert torch.equal(boxes[b], per_batch[b, order])


def test_selection_errors():
    memory, logits, anchors = _random()
    with pytest.raises(ValueError, match="k=21"):
        select_topk_queries(memory, logits, anchors, 21)
    with pytest.raises(ValueError, match="'best'"):
        topk_indices(logits, 3, "best")
    with pytest.raises(ValueError, match="agnostic"):
        topk_indices(logits, 3, "agnostic")
