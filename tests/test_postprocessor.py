"""PostProcessor: hand-made logits -> expected detections, deploy tuple, COCO remapping, and the
official fixtures' detections."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from deim.models.postprocessor import PostProcessor

# one image (w=100, h=50), 3 queries, 2 classes
LOGITS = torch.tensor([[[2.0, -1.0], [0.0, 3.0], [-2.0, 1.0]]])
BOXES = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.5], [0.1, 0.1, 0.2, 0.2]]])
SIZES = torch.tensor([[100, 50]])
PIXELS = [[40.0, 15.0, 60.0, 35.0], [0.0, 25.0, 50.0, 50.0], [0.0, 0.0, 20.0, 10.0]]  # xyxy of each query


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_sigmoid_scores_rank_query_class_pairs():
    (result,) = PostProcessor(num_classes=2, num_top_queries=4)({"pred_logits": LOGITS, "pred_boxes": BOXES}, SIZES)
    # pairs by score: (q1, c1) 3.0, (q0, c0) 2.0, (q2, c1) 1.0, (q1, c0) 0.0
    assert result["labels"].tolist() == [1, 0, 1, 0] and result["labels"].dtype == torch.int64
    torch.testing.assert_close(result["scores"], torch.tensor([sigmoid(3), sigmoid(2), sigmoid(1), 0.5]))
    torch.testing.assert_close(result["boxes"], torch.tensor([PIXELS[1], PIXELS[0], PIXELS[2], PIXELS[1]]))


def test_softmax_scores_take_the_best_real_class_per_query():
    # last column is "no object"; softmax rows: q0 [4, 1, 1]/6, q1 [1, 3, 6]/10, q2 [2, 1, 7]/10
    logits = torch.log(torch.tensor([[[4.0, 1, 1], [1, 3, 6], [2, 1, 7]]]))
    post = PostProcessor(num_classes=3, num_top_queries=2, use_focal_loss=False)
    (result,) = post({"pred_logits": logits, "pred_boxes": BOXES}, SIZES)
    assert result["labels"].tolist() == [0, 1]
    torch.testing.assert_close(result["scores"], torch.tensor([4 / 6, 0.3]))
    torch.testing.assert_close(result["boxes"], torch.tensor([PIXELS[0], PIXELS[1]]))
    # fewer queries than num_top_queries: all are kept, best first
    (all_queries,) = PostProcessor(3, 10, use_focal_loss=False)({"pred_logits": logits, "pred_boxes": BOXES}, SIZES)
    assert all_queries["labels"].tolist() == [0, 1, 0] and all_queries["boxes"].shape == (3, 4)


def _batch(seed: int = 0, b: int = 3, q: int = 10, c: int = 80):
    g = torch.Generator().manual_seed(seed)
    outputs = {"pred_logits": torch.randn(b, q, c, generator=g), "pred_boxes": torch.rand(b, q, 4, generator=g)}
    return outputs, torch.randint(100, 900, (b, 2), generator=g)


def test_deploy_tuple_equals_the_list_form():
    outputs, sizes = _batch()
    post = PostProcessor(num_classes=80, num_top_queries=20)
    per_image = post(outputs, sizes)
    labels, boxes, scores = post.deploy()(outputs, sizes)
    assert post.deploy_mode and not post.training
    assert labels.shape == (3, 20) and boxes.shape == (3, 20, 4) and scores.shape == (3, 20)
    assert torch.equal(labels, torch.stack([r["labels"] for r in per_image]))
    assert torch.equal(boxes, torch.stack([r["boxes"] for r in per_image]))
    assert torch.equal(scores, torch.stack([r["scores"] for r in per_image]))


def test_deploy_graph_has_a_dynamic_batch():
    """Traced at batch 2, the deploy graph runs at batch 3: no Python loop over the batch."""
    outputs, sizes = _batch()
    post = PostProcessor(num_classes=80, num_top_queries=20).deploy()
    small = {k: v[:2] for k, v in outputs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(lambda logits, boxes, s: post({"pred_logits": logits, "pred_boxes": boxes}, s),
                                 (small["pred_logits"], small["pred_boxes"], sizes[:2]), check_trace=False)
    for got, expected in zip(traced(outputs["pred_logits"], outputs["pred_boxes"], sizes), post(outputs, sizes)):
        assert torch.equal(got, expected)


def test_coco_remapping():
    logits = torch.full((1, 3, 80), -10.0)
    logits[0, 0, 0], logits[0, 1, 11], logits[0, 2, 79] = 3.0, 2.0, 1.0  # person, stop sign, toothbrush
    outputs = {"pred_logits": logits, "pred_boxes": torch.rand(1, 3, 4)}
    plain = PostProcessor(80, 3)(outputs, SIZES)[0]
    remapped = PostProcessor(80, 3, remap_mscoco_category=True)(outputs, SIZES)[0]
    assert plain["labels"].tolist() == [0, 11, 79]
    assert remapped["labels"].tolist() == [1, 13, 90] and remapped["labels"].dtype == torch.int64
    assert torch.equal(plain["boxes"], remapped["boxes"]) and torch.equal(plain["scores"], remapped["scores"])


def test_bad_usage_is_rejected():
    with pytest.raises(ValueError, match="remap_mscoco_category=False"):
        PostProcessor(80, 10, remap_mscoco_category=True).deploy()
    with pytest.raises(ValueError, match="num_classes=80"):
        PostProcessor(10, 10, remap_mscoco_category=True)
    with pytest.raises(ValueError, match="num_top_queries=7"):
        PostProcessor(2, 7)({"pred_logits": LOGITS, "pred_boxes": BOXES}, SIZES)
    with pytest.raises(ValueError, match="orig_target_sizes"):
        PostProcessor(2, 3)({"pred_logits": LOGITS, "pred_boxes": BOXES}, torch.tensor([100, 50]))
    with pytest.raises(ValueError, match="num_classes=5"):
        PostProcessor(5, 3)({"pred_logits": LOGITS, "pred_boxes": BOXES}, SIZES)


@pytest.mark.parametrize("name", ["n", "s", "r18"])
def test_official_fixture_detections(name, parity_dir):
    """The official postprocessor's detections for the official eval outputs, reproduced exactly."""
    path = parity_dir / f"{name}.pt"
    if not path.exists():
        pytest.skip(f"no fixture {path}")
    fx = torch.load(path)
    outputs = {"pred_logits": fx["eval_pred_logits"], "pred_boxes": fx["eval_pred_boxes"]}
    sizes = fx["eval_orig_target_sizes"]
    for remap, label_key in [(True, "post_labels"), (False, "post_labels_raw")]:
        results = PostProcessor(80, fx["post_num_top_queries"], remap_mscoco_category=remap)(outputs, sizes)
        for i, result in enumerate(results):
            assert torch.equal(result["labels"], fx[f"{label_key}_{i}"])
            assert torch.equal(result["boxes"], fx[f"post_boxes_{i}"])
            assert torch.equal(result["scores"], fx[f"post_scores_{i}"])
