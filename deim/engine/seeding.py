"""One seed for Python, NumPy, torch and the DataLoader workers.

``seed_everything(seed, rank)`` seeds the main process with ``seed + rank`` (as the official
code); each DataLoader worker gets ``torch.initial_seed()`` derived from the loader's generator,
and ``deim.data.loaders.seed_worker`` propagates it to ``random`` and NumPy (the official code has
none, so its workers' NumPy/random streams repeat across workers). CUDA kernels such as ``grid_sample``'s
backward are not deterministic, so GPU runs are reproducible in distribution, not bitwise.
"""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> torch.Generator:
    """Seed every RNG; returns a ``torch.Generator`` for samplers/DataLoaders seeded the same way."""
    s = seed + rank
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
    g = torch.Generator()
    g.manual_seed(s)
    return g


def rng_state() -> dict:
    """Every RNG's state, for exact resume."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
