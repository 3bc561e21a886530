"""How the current epoch reaches DataLoader workers, persistent ones included.

The official code stores the epoch as a plain attribute of the dataset and relies on the train
workers being re-created (re-forked) every epoch to see a new value; with
``persistent_workers=True`` its workers would keep the epoch they started with, and the
augmentation schedule would never advance.

``SharedEpoch`` keeps the value in a one-element int64 tensor in shared memory. The dataset and the
batch collator hold the *same* ``SharedEpoch``; a worker started by ``fork`` maps the same memory
page, and one started by ``spawn``/``forkserver`` receives it through torch's shared-memory
pickling, so ``set(epoch)`` in the main process is visible to every worker before the next
``iter(loader)`` sends them indices. (Prefetched batches of the previous epoch are all consumed
by then: a DataLoader iterator only starts prefetching the new epoch when it is created.)
"""
from __future__ import annotations

import torch


class SharedEpoch:
    """An epoch counter shared between the main process and DataLoader workers."""

    def __init__(self, epoch: int = 0) -> None:
        self._value = torch.full((1,), int(epoch), dtype=torch.int64).share_memory_()

    def set(self, epoch: int) -> None:
        if int(epoch) < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self._value.fill_(int(epoch))

    def get(self) -> int:
        return int(self._value.item())

    def __repr__(self) -> str:
        return f"SharedEpoch({self.get()})"
