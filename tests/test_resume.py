"""Exact resume on CPU after an interruption, across every augmentation stage boundary.

The reference is one uninterrupted 3-epoch run whose epochs are one per stage (Dense O2O,
standard, no augmentation). Every other run is compared with it tensor by tensor
(``torch.equal`` on the model and the EMA): an interruption, wherever it happens, must leave the
last complete ``last.pth`` readable and let ``--resume`` continue bit for bit.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from deim.engine.fit import Trainer

from test_training import tiny_config, weights

EPOCHS = 3


def staged_config(output_dir, **changes):
    """``tiny_config`` with one epoch per stage: Dense O2O (0), standard (1), no augmentation (2)."""
    cfg = tiny_config(output_dir, epochs=EPOCHS, **changes)
    aug = dataclasses.replace(cfg.schedule.aug, policy_epochs=(0, 1, 2), mixup_epochs=(0, 1))
    return dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, aug=aug, no_aug_epoch=1))


def assert_same_weights(a: Trainer, b: Trainer) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} of {len(wa)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Trainer:
    trainer = Trainer(staged_config(tmp_path_factory.mktemp("straight")), progress=False)
    trainer.fit()
    assert [row["stage"] for row in trainer.history] == ["dense_o2o", "standard", "no_aug"]
    return trainer


def _resume(output_dir, **changes) -> Trainer:
    trainer = Trainer(staged_config(output_dir, resume=str(output_dir / "last.pth"), **changes), progress=False)
    trainer.fit()
    return trainer


def test_interrupt_mid_epoch_keeps_the_last_checkpoint_and_resume_is_exact(straight, tmp_path, monkeypatch):
    run = Trainer(staged_config(tmp_path), progress=False)
    calls = {"n": 0}
    forward = run.criterion.forward

    def interrupt_in_the_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == run.iters_per_epoch + 2:  # epoch 1, second iteration: weights already moved
            raise KeyboardInterrupt
        return forward(*args, **kwargs)

    monkeypatch.setattr(run.criterion, "forward", interrupt_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run.fit()
    state = torch.load(tmp_path / "last.pth", weights_only=False)
    assert state["epoch"] == 0 and state["iteration"] == run.iters_per_epoch
    assert not list(tmp_path.glob(".*.tmp")), "a temporary checkpoint file was left behind"

    resumed = _resume(tmp_path)
    assert resumed.start_epoch == 1
    assert_same_weights(straight, resumed)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]


def test_interrupt_while_writing_a_checkpoint_leaves_the_previous_one_intact(straight, tmp_path, monkeypatch):
    run = Trainer(staged_config(tmp_path), progress=False)
    real_save = torch.save
    saves = {"n": 0}

    def save_then_die_halfway(obj, f, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 2:  # last.pth of epoch 1: some bytes reach the temporary file, then the process dies
            f.write(b"PK\x03\x04 truncated")
            raise KeyboardInterrupt
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_die_halfway)
    with pytest.raises(KeyboardInterrupt):
        run.fit()
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(tmp_path / "last.pth", weights_only=False)["epoch"] == 0
    assert not list(tmp_path.glob(".*.tmp")), "a temporary checkpoint file was left behind"

    resumed = _resume(tmp_path)
    assert resumed.start_epoch == 1
    assert_same_weights(straight, resumed)


def test_resume_with_a_persistent_worker_matches_the_in_process_run(straight, tmp_path):
    """Augmentation is seeded per (seed, epoch, sample), not by the worker's RNG stream, so a
    run with one persistent worker process equals the in-process run, also when resumed at the
    standard -> no-augmentation boundary (a fresh worker with a fresh seed after the resume)."""
    workers = {"data": dataclasses.replace(staged_config(tmp_path).data, num_workers=1)}
    first = Trainer(staged_config(tmp_path, **workers), progress=False)
    assert first.data.train_loader.persistent_workers
    first.fit(max_epochs=2)
    resumed = _resume(tmp_path, **workers)
    assert resumed.start_epoch == 2
    assert_same_weights(straight, resumed)
