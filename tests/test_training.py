"""The training engine end to end on the built-in data: exact resume across a Dense O2O stage
boundary, checkpoints, logs, fine-tuning to another number of classes."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from deim.engine.config import DataConfig, TrainConfig, rescale_epochs
from deim.engine.fit import Trainer
from deim.presets.catalog import get_preset

TINY_MODEL = {"eval_spatial_size": 96, "num_queries": 12, "num_denoising": 6, "decoder.num_layers": 2}


def tiny_config(output_dir, epochs: int = 3, **changes) -> TrainConfig:
    """DEIM-D-FINE-N, narrowed, on 16 smoke images of 96 px; Dense O2O in epoch 0, standard after."""
    schedule = rescale_epochs(get_preset("deim_dfine_s").schedule, epochs).scaled_to_batch(4)
    schedule = dataclasses.replace(schedule, warmup_iter=4, ema_warmups=4,
                                   aug=dataclasses.replace(schedule.aug, policy_epochs=(0, 1, epochs),
                                                           mixup_epochs=(0, 1), base_size_repeat=None))
    data = DataConfig(dataset="fashion", fashion_scale="smoke", image_size=96, num_workers=0,
                      train_subset=12, val_subset=4, val_batch_size=4)
    cfg = TrainConfig(preset="deim_dfine_n", model=dict(TINY_MODEL), data=data, schedule=schedule,
                      output_dir=str(output_dir), eval_every=100, seed=7)
    return dataclasses.replace(cfg, **changes)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {**{f"model.{k}": v for k, v in trainer.model.state_dict().items()},
            **{f"ema.{k}": v for k, v in trainer.ema.module.state_dict().items()}}


def test_resume_continues_exactly_across_the_dense_o2o_boundary(tmp_path):
    straight = Trainer(tiny_config(tmp_path / "straight"), progress=False)
    straight.fit()

    first = Trainer(tiny_config(tmp_path / "split"), progress=False)
    first.fit(max_epochs=1)  # the Dense O2O epoch only
    resumed = Trainer(tiny_config(tmp_path / "split", resume=str(tmp_path / "split" / "last.pth")), progress=False)
    assert resumed.start_epoch == 1 and resumed.iteration == first.iteration
    resumed.fit()

    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ after resume, e.g. {different[:3]}"
    assert straight.history[-1]["loss"] == resumed.history[-1]["loss"]


def test_checkpoint_and_logs_hold_what_a_run_needs(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, epochs=2), progress=False)
    history = trainer.fit()
    state = torch.load(tmp_path / "last.pth", weights_only=False)
    for key in ("model", "ema", "optimizer", "epoch", "iteration", "rng", "config", "label_map", "history"):
        assert key in state, key
    assert state["epoch"] == 1 and state["config"]["preset"] == "deim_dfine_n"
    assert len(state["label_map"]["names"]) == 10
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1] and "AP" in rows[-1] and "loss_mal" in rows[0]
    assert (tmp_path / "log.csv").read_text().splitlines()[0].startswith("epoch,")
    assert history[-1]["stage"] == "standard" and history[0]["stage"] == "dense_o2o"
    assert (tmp_path / "best.pth").is_file()


def test_finetune_from_a_checkpoint_with_other_classes(tmp_path):
    source = Trainer(tiny_config(tmp_path / "src", epochs=1), progress=False)
    source.fit()
    ckpt = tmp_path / "src" / "last.pth"
    state = torch.load(ckpt, weights_only=False)
    state["model"] = {k: (v[:3] if "class_embed" in k or "score_head" in k else v) for k, v in state["model"].items()}
    torch.save({"model": state["model"]}, tmp_path / "three_classes.pth")  # a weights file of a 3-class model
    tuned = Trainer(tiny_config(tmp_path / "tuned", epochs=1, finetune=str(tmp_path / "three_classes.pth")),
                    progress=False)
    backbone_key = next(k for k in state["model"] if k.startswith("backbone.") and k.endswith("conv.weight"))
    assert torch.equal(tuned.model.state_dict()[backbone_key], state["model"][backbone_key])
    tuned.fit()


def test_resuming_with_other_categories_is_refused(tmp_path):
    Trainer(tiny_config(tmp_path / "a", epochs=1), progress=False).fit()
    state = torch.load(tmp_path / "a" / "last.pth", weights_only=False)
    state["label_map"] = {"category_ids": [1, 2], "names": ["x", "y"]}
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other categories"):
        Trainer(tiny_config(tmp_path / "b", epochs=1, resume=str(tmp_path / "other.pth")), progress=False)


def test_non_finite_losses_skip_the_step_and_stop_after_repeats():
    from deim.engine.train_loop import NonFiniteGuard, NonFiniteLossError

    guard = NonFiniteGuard(max_consecutive=3)
    finite, nan = torch.tensor(1.0), torch.tensor(float("nan"))
    assert guard.check(finite, {"loss_mal": finite}, epoch=0, it=0)
    assert not guard.check(nan, {"loss_mal": nan, "loss_bbox": finite}, epoch=0, it=1)
    assert guard.events == [{"epoch": 0, "iteration": 1, "terms": ["loss_mal"]}]
    assert guard.check(finite, {}, epoch=0, it=2) and guard.consecutive == 0  # a good step resets the count
    guard.check(nan, {}, epoch=0, it=3)
    guard.check(torch.tensor(float("inf")), {}, epoch=0, it=4)
    with pytest.raises(NonFiniteLossError, match="3 consecutive non-finite losses"):
        guard.check(nan, {}, epoch=0, it=5)
    assert guard.skipped == 4


def test_evaluation_of_ground_truth_predictions_scores_ap_1():
    """The whole evaluation chain (real post-processor: boxes scaled to the original size, labels
    back to category ids, image ids) scores perfect predictions AP 1 on the built-in data."""
    from deim.engine.config import DataConfig
    from deim.engine.data_build import build_eval_data
    from deim.engine.train_loop import evaluate_coco
    from deim.models.build import build_postprocessor

    val, loader = build_eval_data(DataConfig(dataset="fashion", fashion_scale="smoke", image_size=96,
                                             num_workers=0, val_subset=8, val_batch_size=3))
    queries = 8

    class GroundTruthModel(torch.nn.Module):  # returns, batch after batch, the loader's own targets
        def __init__(self) -> None:
            super().__init__()
            self.targets = (targets for _, targets in loader)

        def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
            logits = torch.full((images.shape[0], queries, val.label_map.num_classes), -20.0)
            boxes = torch.full((images.shape[0], queries, 4), 0.5)
            for i, t in enumerate(next(self.targets)):
                n = len(t["labels"])
                logits[i, torch.arange(n), t["labels"]] = 20.0
                boxes[i, :n] = t["boxes"]
            return {"pred_logits": logits, "pred_boxes": boxes}

    post = build_postprocessor("deim_dfine_n", num_classes=val.label_map.num_classes, num_top_queries=40)
    stats = evaluate_coco(GroundTruthModel(), post, loader, val.ann_file, val.label_map, torch.device("cpu"),
                          progress=False)
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
