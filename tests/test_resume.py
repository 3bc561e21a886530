"""Exact resume on CPU after an interruption, across every augmentation stage boundary.

The reference is one uninterrupted 3-epoch run whose epochs are one per stage (Dense O2O,
standard, no augmentation). Every other run is compared with it tensor by tensor
(``torch.equal`` on the model and the EMA): an interruption, wherever it happens (inside an
epoch, or while ``last.pth`` is being written), must leave the last complete ``last.pth``
readable and let ``--resume`` continue bit for bit.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from deim.engine.fit import Trainer

from test_training import tiny_config, weights

EPOCHS = 3


def staged_config(output_dir, **changes):
    """``tiny_config`` with one epoch per stage (Dense O2O 0, standard 1, no augmentation 2) and
    two iterations per epoch."""
    cfg = tiny_config(output_dir, epochs=EPOCHS, **changes)
    aug = dataclasses.replace(cfg.schedule.aug, policy_epochs=(0, 1, 2), mixup_epochs=(0, 1))
    data = dataclasses.replace(cfg.data, train_subset=8)
    return dataclasses.replace(cfg, data=data, schedule=dataclasses.replace(cfg.schedule, aug=aug, no_aug_epoch=1))


def resumed_config(output_dir, **changes):
    return staged_config(output_dir, resume=str(output_dir / "last.pth"), **changes)


def assert_same_weights(a: Trainer, b: Trainer) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} of {len(wa)} tensors differ, e.g. {different[:3]}"


def assert_last_complete_epoch(output_dir, epoch: int) -> None:
    state = torch.load(output_dir / "last.pth", weights_only=False)
    assert state["epoch"] == epoch
    assert not list(output_dir.glob(".*.tmp")), "a temporary checkpoint file was left behind"


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Trainer:
    trainer = Trainer(staged_config(tmp_path_factory.mktemp("straight")), progress=False)
    trainer.fit()
    assert [row["stage"] for row in trainer.history] == ["dense_o2o", "standard", "no_aug"]
    assert trainer.iters_per_epoch == 2
    return trainer


def test_interruptions_mid_epoch_and_mid_write_keep_the_checkpoint_and_resume_exactly(
        straight, tmp_path, monkeypatch):
    # 1. killed inside epoch 1, after its first optimizer step has already moved the weights
    run = Trainer(staged_config(tmp_path), progress=False)
    calls = {"n": 0}
    forward = run.criterion.forward

    def interrupt_at_the_second_step_of_epoch_1(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == run.iters_per_epoch + 2:
            raise KeyboardInterrupt
        return forward(*args, **kwargs)

    monkeypatch.setattr(run.criterion, "forward", interrupt_at_the_second_step_of_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        run.fit()
    assert_last_complete_epoch(tmp_path, 0)

    # 2. resumed, finishes epoch 1, killed while writing its last.pth (some bytes already written)
    real_save = torch.save

    def die_halfway_through_the_write(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 truncated")
        raise KeyboardInterrupt

    second = Trainer(resumed_config(tmp_path), progress=False)
    assert second.start_epoch == 1
    monkeypatch.setattr(torch, "save", die_halfway_through_the_write)
    with pytest.raises(KeyboardInterrupt):
        second.fit()
    monkeypatch.setattr(torch, "save", real_save)
    assert_last_complete_epoch(tmp_path, 0)

    # 3. resumed again from epoch 0's checkpoint: the same weights and losses as never stopping
    third = Trainer(resumed_config(tmp_path), progress=False)
    assert third.start_epoch == 1
    third.fit()
    assert_same_weights(straight, third)
    assert [r["loss"] for r in third.history] == [r["loss"] for r in straight.history]


def test_resume_with_a_persistent_worker_matches_the_in_process_run(straight, tmp_path):
    """Augmentation is seeded per (seed, epoch, sample), not by a worker's RNG stream, so a run
    with one persistent worker process equals the in-process run, also when resumed at the
    standard -> no-augmentation boundary (a fresh worker with a fresh seed after the resume)."""
    workers = {"data": dataclasses.replace(staged_config(tmp_path).data, num_workers=1)}
    first = Trainer(staged_config(tmp_path, **workers), progress=False)
    assert first.data.train_loader.persistent_workers
    first.fit(max_epochs=2)
    resumed = Trainer(resumed_config(tmp_path, **workers), progress=False)
    assert resumed.start_epoch == 2
    resumed.fit()
    assert_same_weights(straight, resumed)
