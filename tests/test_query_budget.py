"""Queries vs the encoder's memory positions at small inputs: counted exactly, refused with the
exact --set before any work, capped with a notice where the user did not choose."""
from __future__ import annotations

import argparse

import pytest
import torch

from deim.cli_defaults import FASHION_DEFAULTS, cap_queries, fill_builtin_defaults
from deim.engine.config import DataConfig, TrainConfig
from deim.engine.input_sizes import training_sizes
from deim.models.build import build_model
from deim.models.query_budget import check_query_budget, memory_positions
from deim.presets.catalog import get_preset
from deim.presets.resolve import resolve_model


@pytest.mark.parametrize("preset, size", [("deim_dfine_n", 96), ("deim_dfine_n", 100), ("deim_dfine_s", 160)])
def test_memory_positions_equal_the_encoders_output(preset, size):
    model = build_model(preset, num_classes=2, num_queries=4).eval()
    with torch.no_grad():
        feats = model.encoder(model.backbone(torch.rand(1, 3, size, size)))
    assert memory_positions(resolve_model(preset), size) == sum(f.shape[-1] * f.shape[-2] for f in feats)


def test_refusal_gives_the_exact_set():
    with pytest.raises(ValueError, match=r"only 125 memory positions: add --set model.num_queries=125"):
        check_query_budget(resolve_model("deim_dfine_n"), [160])
    check_query_budget(resolve_model("deim_dfine_n", num_queries=125), [160, 192])


def test_multiscale_sizes_count():
    schedule = get_preset("deim_dfine_s").schedule
    sizes = training_sizes(schedule, 320)
    assert min(sizes) == 224 and 320 in sizes


def test_trainer_refuses_before_building_data(tmp_path):
    from deim.engine.fit import Trainer

    cfg = TrainConfig.from_preset("deim_dfine_n", epochs=1, batch_size=8,
                                  data=DataConfig(dataset="custom", image_size=160, train_images="nowhere/",
                                                  train_ann="nowhere.json", val_images="nowhere/",
                                                  val_ann="nowhere.json"),
                                  output_dir=str(tmp_path), device="cpu")
    with pytest.raises(ValueError, match="--set model.num_queries=125"):
        Trainer(cfg, progress=False)


def test_cap_only_when_not_chosen():
    model, notice = cap_queries(resolve_model("deim_dfine_n"), {}, [160])
    assert model == {"num_queries": 125} and "125 queries instead of 300" in notice
    n = resolve_model("deim_dfine_n")
    assert cap_queries(resolve_model(n, num_queries=200), {"num_queries": 200}, [160]) == ({"num_queries": 200}, None)
    assert cap_queries(n, {}, [640]) == ({}, None)


def test_fashion_defaults_fill_only_what_is_unset():
    args = argparse.Namespace(data="fashion", fashion_scale="smoke", image_size=None, batch_size=None, epochs=3,
                              set=["data.num_workers=0"])
    filled = fill_builtin_defaults(args)
    d = FASHION_DEFAULTS["smoke"]
    assert (args.image_size, args.batch_size, args.epochs) == (d.image_size, d.batch_size, 3)
    assert args.set == [f"schedule.warmup_iter={d.warmup_iter}", "data.num_workers=0"]
    assert filled == ["--image-size 160", "--batch-size 16", "--set schedule.warmup_iter=5"]
    coco = argparse.Namespace(data="coco", image_size=None, batch_size=None, epochs=None, set=None)
    assert fill_builtin_defaults(coco) == [] and coco.image_size is None
