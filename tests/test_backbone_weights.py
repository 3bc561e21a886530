"""Pretrained backbone files (the paper's ImageNet initialisation): loading, run keys, the trainer."""
from __future__ import annotations

import shutil

import pytest
import torch

from deim.models.build import build_model
from deim.engine.checkpointing import load_backbone_weights

TINY = {"num_queries": 12, "num_denoising": 6, "decoder.num_layers": 2}


def _backbone(preset: str = "deim_dfine_n", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(preset, **TINY).backbone


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def test_plain_and_wrapped_files_load_strictly(tmp_path):
    source, target = _backbone(seed=1), _backbone(seed=2)
    assert not _equal(source, target)
    plain = tmp_path / "PPHGNetV2_B0_stage1.pth"
    torch.save(source.state_dict(), plain)
    assert load_backbone_weights(target, plain) == len(source.state_dict())
    assert _equal(source, target)
    wrapped = tmp_path / "detector.pth"  # a detector checkpoint: only its backbone.* entries are taken
    torch.save({"model": {**{f"backbone.{k}": v for k, v in _backbone(seed=3).state_dict().items()},
                          "decoder.x": torch.zeros(1)}}, wrapped)
    load_backbone_weights(target, wrapped)
    assert _equal(_backbone(seed=3), target)


def test_a_file_of_another_backbone_is_refused_with_the_reason(tmp_path):
    other = tmp_path / "b4.pth"
    torch.save(_backbone("deim_dfine_l").state_dict(), other)
    with pytest.raises(ValueError, match="does not fit this backbone"):
        load_backbone_weights(_backbone(), other)
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        load_backbone_weights(_backbone(), tmp_path / "missing.pth")


def test_full_scale_runs_take_the_file_from_the_environment_and_key_it_by_content(tmp_path, monkeypatch):
    from deim.experiments.runs import RunSpec

    spec = RunSpec("full", data_root=str(tmp_path / "coco"))
    monkeypatch.delenv("DEIM_BACKBONE_WEIGHTS", raising=False)
    assert spec.train_config().backbone_weights is None
    without = spec.key()
    a, b = tmp_path / "a.pth", tmp_path / "elsewhere" / "a.pth"
    torch.save({"w": torch.ones(2)}, a)
    b.parent.mkdir()
    shutil.copy(a, b)
    monkeypatch.setenv("DEIM_BACKBONE_WEIGHTS", str(a))
    assert spec.train_config().backbone_weights == str(a)
    key_a = spec.key()
    monkeypatch.setenv("DEIM_BACKBONE_WEIGHTS", str(b))
    assert spec.key() == key_a != without  # same content, another path: the same run
    torch.save({"w": torch.zeros(2)}, b)
    assert spec.key() != key_a
    assert RunSpec("smoke").train_config().backbone_weights is None  # only the full protocol reads it


def test_trainer_starts_from_the_given_backbone(tmp_path):
    from deim.engine.fit import Trainer
    from deim.experiments.runs import RunSpec

    cfg = RunSpec("smoke").train_config(tmp_path / "run")
    source = build_model(cfg.preset, **cfg.model).backbone
    torch.nn.init.normal_(next(iter(source.parameters())))
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    cfg.backbone_weights = str(path)
    trainer = Trainer(cfg, progress=False)
    assert _equal(source, trainer.model.backbone)
