"""Shared pytest helpers: where the project's shared fixtures live."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The folder `shared/` beside the checkout (override with DEIM_SHARED)."""
    return Path(os.environ.get("DEIM_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    path = shared_dir() / "parity"
    if not path.is_dir():
        pytest.skip(f"parity fixtures not found at {path}")
    return path


@pytest.fixture(scope="session")
def manifest_dir() -> Path:
    path = shared_dir() / "official_state_dict"
    if not path.is_dir():
        pytest.skip(f"state-dict manifests not found at {path}")
    return path
