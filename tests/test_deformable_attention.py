"""Multi-scale deformable attention against a brute-force loop (bilinear and nearest sampling),
the initial sampling pattern, and the parameter layout of the official checkpoints."""
from __future__ import annotations

import math

import pytest
import torch

from deim.models.deformable_attention import MSDeformableAttention, deformable_sampling, split_value_levels

SHAPES = [(5, 7), (3, 4)]  # non-square maps catch swapped x / y
POINTS = [2, 3]
B, Q, D, H = 2, 3, 8, 2


def randomize_(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def bilinear(image: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample ``image [c, h, w]`` at normalised (x, y), pixel centres at (i + 0.5) / size, zeros outside."""
    _, h, w = image.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(image.shape[0], dtype=torch.float64)
    for xi, yi in [(x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)]:
        if 0 <= xi < w and 0 <= yi < h:
            out += (1 - abs(px - xi)) * (1 - abs(py - yi)) * image[:, yi, xi].double()
    return out


def nearest(image: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """The grid point nearest ``(x * w, y * h)``, clamped into the map."""
    _, h, w = image.shape
    xi = min(max(math.floor(x * w + 0.5), 0), w - 1)
    yi = min(max(math.floor(y * h + 0.5), 0), h - 1)
    return image[:, yi, xi].double()


def brute_force(attn: MSDeformableAttention, query, ref, memory, shapes, sample, value_mask=None):
    """The attention written as loops over batch, query, head, level and point."""
    value = memory
    if not attn.dfine_mode:
        value = attn.value_proj(memory)
        if value_mask is not None:
            value = value * value_mask.unsqueeze(-1)
    offsets = attn.sampling_offsets(query).reshape(B, Q, H, sum(POINTS), 2)
    logits = attn.attention_weights(query).reshape(B, Q, H, sum(POINTS))
    head_dim = D // H
    out = torch.zeros(B, Q, D, dtype=torch.float64)
    for b in range(B):
        for q in range(Q):
            for h in range(H):
                weights = torch.softmax(logits[b, q, h].double(), 0)
                acc = torch.zeros(head_dim, dtype=torch.float64)
                p, start = 0, 0
                for level, ((hl, wl), n) in enumerate(zip(shapes, POINTS)):
                    image = value[b, start:start + hl * wl, h * head_dim:(h + 1) * head_dim].T.reshape(head_dim, hl, wl)
                    r = ref[b, q, level if ref.shape[2] > 1 else 0].double()
                    for _ in range(n):
                        dx, dy = offsets[b, q, h, p].double()
                        if r.shape[0] == 4:
                            x = r[0] + dx / n * r[2] * 0.5
                            y = r[1] + dy / n * r[3] * 0.5
                        else:
                            x, y = r[0] + dx / wl, r[1] + dy / hl
                        acc += weights[p] * sample(image, float(x), float(y))
                        p += 1
                    start += hl * wl
                out[b, q, h * head_dim:(h + 1) * head_dim] = acc
    if not attn.dfine_mode:
        out = attn.output_proj(out.float()).double()
    return out


def inputs(seed: int = 0, ref_dim: int = 4, ref_levels: int = 1):
    g = torch.Generator().manual_seed(seed)
    n = sum(h * w for h, w in SHAPES)
    query, memory = torch.randn(B, Q, D, generator=g), torch.randn(B, n, D, generator=g)
    ref = torch.rand(B, Q, ref_levels, ref_dim, generator=g) * 0.8 + 0.1
    return query, ref, memory


@pytest.mark.parametrize("dfine_mode", [True, False])
@pytest.mark.parametrize("ref_dim,ref_levels", [(4, 1), (2, 1), (2, 2), (4, 2)])
def test_bilinear_matches_brute_force(dfine_mode, ref_dim, ref_levels):
    attn = MSDeformableAttention(D, H, len(SHAPES), POINTS, dfine_mode=dfine_mode)
    randomize_(attn)
    query, ref, memory = inputs(ref_dim=ref_dim, ref_levels=ref_levels)
    with torch.no_grad():
        got = attn(query, ref, memory, SHAPES)
        expected = brute_force(attn, query, ref, memory, SHAPES, bilinear)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dfine_mode", [True, False])
def test_discrete_matches_nearest_brute_force(dfine_mode):
    attn = MSDeformableAttention(D, H, len(SHAPES), POINTS, method="discrete", dfine_mode=dfine_mode)
    randomize_(attn)
    with torch.no_grad():
        attn.sampling_offsets.weight.mul_(6)  # push points beyond the maps: exercises the clamps
    query, ref, memory = inputs(seed=1)
    with torch.no_grad():
        got = attn(query, ref, memory, SHAPES)
        expected = brute_force(attn, query, ref, memory, SHAPES, nearest)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)
    assert not any(p.requires_grad for p in attn.sampling_offsets.parameters())
    assert attn.attention_weights.weight.requires_grad


def test_dfine_mode_accepts_presplit_values():
    attn = MSDeformableAttention(D, H, len(SHAPES), POINTS)
    randomize_(attn)
    query, ref, memory = inputs()
    per_level = split_value_levels(memory, SHAPES, H)
    assert [tuple(v.shape) for v in per_level] == [(B, H, D // H, 35), (B, H, D // H, 12)]
    torch.testing.assert_close(attn(query, ref, per_level, SHAPES), attn(query, ref, memory, SHAPES), atol=0, rtol=0)


def test_value_mask_hides_masked_positions():
    attn = MSDeformableAttention(D, H, len(SHAPES), POINTS, dfine_mode=False)
    randomize_(attn)
    query, ref, memory = inputs()
    mask = torch.rand(B, memory.shape[1], generator=torch.Generator().manual_seed(3)) > 0.5
    with torch.no_grad():
        got = attn(query, ref, memory, SHAPES, value_mask=mask)
        changed = attn(query, ref, torch.where(mask.unsqueeze(-1), memory, memory + 100.0), SHAPES, value_mask=mask)
        expected = brute_force(attn, query, ref, memory, SHAPES, bilinear, value_mask=mask.float())
    torch.testing.assert_close(got, changed, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)


def test_core_weights_heads_separately():
    """One head, one level, one point at a pixel centre: the output is that pixel's value."""
    value = [torch.arange(12.0).reshape(1, 1, 1, 12)]  # [B, n_head, c, H*W] of a 3x4 map
    loc = torch.tensor([(2 + 0.5) / 4, (1 + 0.5) / 3]).reshape(1, 1, 1, 1, 2)
    out = deformable_sampling(value, [(3, 4)], loc, torch.ones(1, 1, 1, 1), [1])
    assert out.shape == (1, 1, 1) and out.item() == pytest.approx(6.0)  # row 1, column 2


def test_initial_sampling_pattern():
    """At init the attention is uniform and the furthest point of each level lies on the box edge
    along the head's direction (0, 90, 180, 270 degrees for 4 heads)."""
    attn = MSDeformableAttention(16, 4, 2, [2, 4])
    assert torch.equal(attn.num_points_scale, torch.tensor([1 / 2] * 2 + [1 / 4] * 4))
    offsets = attn.sampling_offsets.bias.reshape(4, 6, 2)
    torch.testing.assert_close(offsets[0, :, 0], torch.tensor([1.0, 2, 1, 2, 3, 4]))
    torch.testing.assert_close(offsets[1, :, 1], torch.tensor([1.0, 2, 1, 2, 3, 4]))
    torch.testing.assert_close(offsets[2, :, 0], -torch.tensor([1.0, 2, 1, 2, 3, 4]))
    torch.testing.assert_close(offsets[3, :, 1], -torch.tensor([1.0, 2, 1, 2, 3, 4]))
    box = torch.tensor([0.5, 0.5, 0.2, 0.4]).reshape(1, 1, 1, 4)
    loc = attn._sampling_locations(box, offsets.reshape(1, 1, 4, 6, 2), [(4, 4), (2, 2)])
    torch.testing.assert_close(loc[0, 0, 0, [1, 5]], torch.tensor([[0.6, 0.5], [0.6, 0.5]]))  # right edge
    torch.testing.assert_close(loc[0, 0, 3, [1, 5]], torch.tensor([[0.5, 0.3], [0.5, 0.3]]), atol=1e-6, rtol=0)
    assert torch.all(attn.attention_weights.weight == 0) and torch.all(attn.attention_weights.bias == 0)


def test_modes_have_the_official_parameters():
    dfine = MSDeformableAttention(256, 8, 3, [3, 6, 3])
    assert [(k, tuple(v.shape)) for k, v in dfine.state_dict().items()] == [
        ("num_points_scale", (12,)), ("sampling_offsets.weight", (192, 256)), ("sampling_offsets.bias", (192,)),
        ("attention_weights.weight", (96, 256)), ("attention_weights.bias", (96,))]
    rt = MSDeformableAttention(256, 8, 3, 4, dfine_mode=False)
    assert [k for k in rt.state_dict()] == [
        "num_points_scale", "sampling_offsets.weight", "sampling_offsets.bias", "attention_weights.weight",
        "attention_weights.bias", "value_proj.weight", "value_proj.bias", "output_proj.weight", "output_proj.bias"]


@pytest.mark.parametrize("manifest,dfine_mode,points", [
    ("deim_hgnetv2_s_coco.tsv", True, [3, 6, 3]),
    ("deim_hgnetv2_n_coco.tsv", True, [6, 6]),
    ("deim_r18vd_120e_coco.tsv", False, 4),
])
def test_layout_matches_official_manifest(manifest, dfine_mode, points, manifest_dir):
    prefix = "decoder.decoder.layers.0.cross_attn."
    rows = []
    for line in (manifest_dir / manifest).read_text().splitlines()[1:]:
        key, shape = line.split("\t")
        if key.startswith(prefix):
            rows.append((key[len(prefix):], tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    dim = 128 if "_n_" in manifest else 256
    levels = 2 if "_n_" in manifest else 3
    attn = MSDeformableAttention(dim, 8, levels, points, dfine_mode=dfine_mode)
    assert [(k, tuple(v.shape)) for k, v in attn.state_dict().items()] == rows


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="divisible"):
        MSDeformableAttention(10, 3, 2, 2)
    with pytest.raises(ValueError, match="num_points"):
        MSDeformableAttention(8, 2, 3, [2, 2])
    with pytest.raises(ValueError, match="nearest"):
        MSDeformableAttention(8, 2, 2, 2, method="nearest")
    attn = MSDeformableAttention(D, H, len(SHAPES), POINTS)
    query, ref, memory = inputs()
    with pytest.raises(ValueError, match="2 or 4"):
        attn(query, torch.rand(B, Q, 1, 3), memory, SHAPES)
    with pytest.raises(ValueError, match="cover"):
        attn(query, ref, memory[:, :-1], SHAPES)
    with pytest.raises(ValueError, match="value_mask"):
        attn(query, ref, memory, SHAPES, value_mask=torch.ones(B, memory.shape[1], dtype=torch.bool))
    with pytest.raises(ValueError, match="flattened memory"):
        MSDeformableAttention(D, H, len(SHAPES), POINTS, dfine_mode=False)(
            query, ref, split_value_levels(memory, SHAPES, H), SHAPES)
