"""Exponential moving average of a model's weights (parameters and floating-point buffers).

``decay_t = decay * (1 - exp(-t / warmups))`` after ``t`` updates (``decay`` if ``warmups == 0``).
Unlike the official ``ModelEMA``, whose decay is frozen into a closure at construction so that
later assignments (``ema.decay = ...`` at the stop epoch) do nothing, ``decay`` here is read at
every update: :meth:`restart` and assignments take effect.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


class ModelEMA:
    """EMA copy of ``model`` in eval mode; call :meth:`update` after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmups: int = 1000) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmups = warmups
        self.updates = 0

    def current_decay(self) -> float:
        if self.warmups == 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-self.updates / self.warmups))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``ema = d * ema + (1 - d) * model`` for floating tensors (one fused ``_foreach`` call per
        dtype group, the same arithmetic as a per-tensor loop); integer buffers are copied."""
        self.updates += 1
        d = self.current_decay()
        floats, source_floats, ints, source_ints = self._pairs(unwrap(model))
        if floats:
            torch._foreach_mul_(floats, d)
            torch._foreach_add_(floats, source_floats, alpha=1.0 - d)
        for value, src in zip(ints, source_ints):
            value.copy_(src)

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], ...]:
        """The EMA's tensors and the model's matching ones, split into floating and other; cached
        while the model and its tensors are the same objects (they are updated in place)."""
        source = model.state_dict(keep_vars=True)
        key = (id(model), tuple(id(t) for t in source.values()))
        if getattr(self, "_cache_key", None) != key:
            floats, source_floats, ints, source_ints = [], [], [], []
            for name, value in self.module.state_dict().items():
                src = source[name].detach()
                if value.dtype.is_floating_point:
                    if src.dtype != value.dtype:
                        raise ValueError(f"EMA tensor {name} is {value.dtype} but the model's is {src.dtype}")
                    floats.append(value)
                    source_floats.append(src)
                else:
                    ints.append(value)
                    source_ints.append(src)
            self._cache_key, self._cache = key, (floats, source_floats, ints, source_ints)
        return self._cache

    def restart(self, decay: float | None = None) -> None:
        """Continue averaging with a new target decay (the official stage-2 ``ema_restart_decay``)."""
        if decay is not None:
            self.decay = decay

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay,
                "warmups": self.warmups}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state.get("updates", 0))
        self.decay = float(state.get("decay", self.decay))
        self.warmups = int(state.get("warmups", self.warmups))
