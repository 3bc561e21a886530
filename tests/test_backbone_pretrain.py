"""Backbone pre-training on Fashion-MNIST (the reduced scale's stand-in for ImageNet)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deim.data.fashion_mnist import load_fashion_mnist
from deim.engine.backbone_pretrain import BackbonePretrain, place_items, pretrain_key, pretrained_backbone
from deim.models.build import build_model

MODEL = {"num_queries": 12, "num_denoising": 6, "decoder.num_layers": 2}


def test_canvases_hold_one_visible_item_each():
    images, _ = load_fashion_mnist("t10k")
    rng = np.random.default_rng(0)
    x = place_items(images[:16], 48, 20, rng)
    assert x.shape == (16, 3, 48, 48) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.equal(x[:, 0], x[:, 2])  # grey, replicated to 3 channels
    blank = place_items(np.zeros_like(images[:16]), 48, 20, np.random.default_rng(0))
    changed = (x - blank).abs().flatten(1).gt(0.05).sum(1)
    assert bool((changed >= 20).all())  # every canvas shows its item (not just the same background)


def test_recipe_is_validated():
    with pytest.raises(ValueError, match="min_item"):
        BackbonePretrain(image_size=32, min_item=40)
    with pytest.raises(ValueError, match="positive"):
        BackbonePretrain(iterations=0)


def test_key_depends_on_everything_that_changes_the_weights():
    r = BackbonePretrain()
    assert pretrain_key("deim_dfine_n", MODEL, r) == pretrain_key("deim_dfine_n", dict(MODEL), BackbonePretrain())
    assert pretrain_key("deim_dfine_n", MODEL, r) != pretrain_key("deim_dfine_s", MODEL, r)
    assert pretrain_key("deim_dfine_n", MODEL, r) != pretrain_key("deim_dfine_n", MODEL, BackbonePretrain(seed=1))
    assert pretrain_key("deim_dfine_n", MODEL, r) != pretrain_key("deim_dfine_n", {**MODEL, "backbone.use_lab": False}, r)


def test_runs_that_build_the_same_backbone_share_the_pretraining():
    r = BackbonePretrain()
    decoder_only = {**MODEL, "decoder.num_layers": 1, "num_queries": 7}
    assert pretrain_key("deim_dfine_n", MODEL, r) == pretrain_key("deim_dfine_n", decoder_only, r)
    assert pretrain_key("deim_dfine_n", MODEL, r) == pretrain_key("dfine_n", MODEL, r)  # the same HGNetv2-B0
    torch.manual_seed(0)
    a = build_model("deim_dfine_n", **MODEL).backbone.state_dict()
    torch.manual_seed(0)
    b = build_model("deim_dfine_n", **decoder_only).backbone.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # so the shared weights are the ones either would train


def test_pretraining_learns_and_is_cached(tmp_path):
    recipe = BackbonePretrain(image_size=32, min_item=20, iterations=60, batch_size=32, lr=3e-3, warmup=5)
    path = pretrained_backbone("deim_dfine_n", MODEL, recipe, cache_dir=tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["recipe"] == {**recipe.__dict__}
    assert meta["t10k_accuracy"] > 0.3  # ten classes: chance is 0.1
    stamp = path.stat().st_mtime_ns
    assert pretrained_backbone("deim_dfine_n", MODEL, recipe, cache_dir=tmp_path) == path
    assert path.stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_trainer_starts_from_the_pretrained_backbone(tmp_path, monkeypatch):
    from deim.cache import cache_dir
    from deim.engine.fit import Trainer
    from deim.experiments.runs import RunSpec

    monkeypatch.setenv("DEIM_CACHE", str(tmp_path / "cache"))
    cfg = RunSpec("smoke").train_config(tmp_path / "run")
    assert cfg.backbone_pretrain is not None
    trainer = Trainer(cfg, progress=False)
    path = cache_dir("pretrained") / f"{pretrain_key(cfg.preset, cfg.model, cfg.backbone_pretrain)}.pth"
    saved = torch.load(path, weights_only=True)
    for name, value in trainer.model.backbone.state_dict().items():
        assert torch.equal(value, saved[name]), name
