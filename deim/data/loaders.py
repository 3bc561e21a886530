"""DataLoaders for training and evaluation, seeded and epoch-aware.

``build_train_loader`` shuffles with a ``DistributedSampler`` (also on one process: its
permutation is a function of ``(seed, epoch)``, so a resumed run sees the same order), collates with
a ``BatchCollator`` and seeds the workers' ``random``/NumPy from their torch seed (the official code
does not, so its workers' NumPy streams repeat). ``DetectionLoader.set_epoch(epoch)`` informs the
sampler, the dataset and the collator; the last two hold ``SharedEpoch`` counters, so it works
with ``persistent_workers=True`` (see ``deim.data.epoch``). Call it before iterating each epoch.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler

from deim.data.collate import BatchCollator, stack_batch
from deim.data.transport import ByValueTargets, restore_targets
from deim.data.transforms import Target


class DetectionLoader(DataLoader):
    """A ``DataLoader`` with ``set_epoch`` for the sampler, the dataset and the collate function.

    With workers, the targets of each batch travel by value (``deim.data.transport``): the same
    batches, at a fraction of the main process's cost of receiving them.
    """

    def __init__(self, dataset: Dataset, *, collate_fn, num_workers: int = 0, **kwargs) -> None:
        if num_workers > 0:
            collate_fn = ByValueTargets(collate_fn)
        super().__init__(dataset, collate_fn=collate_fn, num_workers=num_workers, **kwargs)

    def __iter__(self):
        batches = super().__iter__()
        return batches if self.num_workers == 0 else map(restore_targets, batches)

    def set_epoch(self, epoch: int) -> None:
        for part in (self.sampler, self.dataset, self.collate_fn):
            set_part_epoch = getattr(part, "set_epoch", None)
            if callable(set_part_epoch):
                set_part_epoch(epoch)


def seed_worker(worker_id: int) -> None:
    """Seed ``random`` and NumPy in a DataLoader worker from its (per-worker) torch seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _replicas() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def build_train_loader(dataset: Dataset, collator: BatchCollator, batch_size: int, *, num_workers: int = 2,
                       seed: int = 0, persistent_workers: bool = False, drop_last: bool = True,
                       pin_memory: bool = False) -> DetectionLoader:
    """The training loader; ``batch_size`` is per process. Share ``dataset.epoch_counter`` with
    the collator (``BatchCollator(schedule, epoch=dataset.epoch_counter)``) or rely on
    ``set_epoch``, which sets both."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    world, rank = _replicas()
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                 drop_last=drop_last)
    generator = torch.Generator().manual_seed(seed + rank)
    return DetectionLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                           collate_fn=collator, drop_last=drop_last, pin_memory=pin_memory,
                           worker_init_fn=seed_worker, generator=generator,
                           persistent_workers=persistent_workers and num_workers > 0)


def collate_eval(items: Sequence[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """Evaluation collate: stack the images, keep the targets as a list."""
    return stack_batch(items)


def build_val_loader(dataset: Dataset, batch_size: int, *, num_workers: int = 2,
                     pin_memory: bool = False) -> DetectionLoader:
    """The evaluation loader, in dataset order (each process takes its share when distributed;
    the last images may repeat to even the shares, harmless for the evaluator which keys by id)."""
    world, rank = _replicas()
    sampler = (DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
               if world > 1 else SequentialSampler(dataset))
    return DetectionLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                           collate_fn=collate_eval, drop_last=False, pin_memory=pin_memory,
                           worker_init_fn=seed_worker)
