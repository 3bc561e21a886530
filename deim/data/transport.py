"""A collated batch's way from a DataLoader worker to the training process, made cheap.

A worker hands its batch to the main process by pickling it; every ``torch.Tensor`` goes into
its own shared-memory segment, whose file descriptor the main process receives and maps. For the
one large image tensor of a batch that is right, but a batch of 16 detection targets holds
about a hundred tiny tensors (boxes, labels, ids, sizes), and receiving them cost the training
process 40-55 ms of CPU per batch at the reduced protocol's setting, about 5 % of an iteration.
:class:`ByValueTargets` sends the targets' tensors as NumPy arrays instead (pickled by value, one
copy of a few hundred bytes each) and :func:`restore_targets` turns them back into tensors of
the same dtype, shape and values: nothing the training sees changes.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from deim.data.transforms import Target

Batch = tuple[torch.Tensor, list[Target]]


class _Packed:
    """One target whose tensors travel as NumPy arrays (a plain object, so that a pin-memory
    thread passes it through untouched); ``tensor_keys`` names the fields to turn back."""

    __slots__ = ("fields", "tensor_keys")

    def __init__(self, target: Target) -> None:
        self.tensor_keys = tuple(k for k, v in target.items() if isinstance(v, torch.Tensor))
        self.fields = {k: (v.numpy() if k in self.tensor_keys else v) for k, v in target.items()}

    def restore(self) -> Target:
        return {k: (torch.from_numpy(np.asarray(v)) if k in self.tensor_keys else v) for k, v in self.fields.items()}


class ByValueTargets:
    """Wraps a collate function (``BatchCollator``, ``collate_eval``) so that the targets of its
    ``(images [B, 3, H, W], [target, ...])`` travel by value; forwards ``set_epoch``."""

    def __init__(self, collate: Callable[[Sequence[Any]], Batch]) -> None:
        self.collate = collate

    def set_epoch(self, epoch: int) -> None:
        set_epoch = getattr(self.collate, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def __call__(self, items: Sequence[Any]) -> tuple[torch.Tensor, list[_Packed]]:
        images, targets = self.collate(items)
        return images, [_Packed(t) for t in targets]

    def __repr__(self) -> str:
        return f"ByValueTargets({self.collate!r})"


def restore_targets(batch: tuple[torch.Tensor, list[Any]]) -> Batch:
    """The batch as the wrapped collate function made it: packed targets become plain dicts of tensors."""
    images, targets = batch
    return images, [t.restore() if isinstance(t, _Packed) else t for t in targets]
