"""Targets travel from DataLoader workers by value and come back unchanged."""
from __future__ import annotations

import pickle

import torch

from deim.data.collate import stack_batch
from deim.data.transport import ByValueTargets, restore_targets


def _target(n: int) -> dict:
    return {"boxes": torch.rand(n, 4), "labels": torch.arange(n), "image_id": torch.tensor(7),
            "iscrowd": torch.zeros(n, dtype=torch.bool), "orig_size": torch.tensor([96, 64]), "note": "kept"}


def test_packed_targets_pickle_without_tensors_and_restore_exactly():
    items = [(torch.rand(3, 32, 32), _target(n)) for n in (0, 1, 3)]
    collate = ByValueTargets(stack_batch)
    images, packed = collate(items)
    blob = pickle.dumps((images, packed))
    # the only tensor storage left in the message is the images' (the targets are NumPy bytes)
    assert all(not isinstance(v, torch.Tensor) for p in packed for v in p.fields.values())
    images2, targets = restore_targets(pickle.loads(blob))
    assert torch.equal(images2, images)
    for (_, want), got in zip(items, targets):
        assert want.keys() == got.keys() and got["note"] == "kept"
        for key, value in want.items():
            if isinstance(value, torch.Tensor):
                assert got[key].dtype == value.dtype and got[key].shape == value.shape
                assert torch.equal(got[key], value), key


class _Epochs:
    def __init__(self) -> None:
        self.epoch = -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, items):
        return stack_batch(items)


def test_set_epoch_reaches_the_wrapped_collator_and_plain_batches_pass_through():
    inner = _Epochs()
    ByValueTargets(inner).set_epoch(3)
    assert inner.epoch == 3
    ByValueTargets(stack_batch).set_epoch(1)  # a collate function without set_epoch is fine
    batch = stack_batch([(torch.zeros(3, 8, 8), _target(2))])
    assert restore_targets(batch)[1][0] is batch[1][0]
