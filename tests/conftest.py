"""Shared pytest helpers: where the parity fixtures and state-dict manifests live.

They ship with the repository in ``tests/fixtures/`` (see ``tests/fixtures/README.md``), so a clone
anywhere runs every parity and manifest test. ``DEIM_SHARED`` may point to a folder with the same
layout (``parity/``, ``official_state_dict/``) that holds more fixtures, e.g. the other seven presets.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"


def notebook_sources(*numbers: str) -> list[Path]:
    """The jupytext sources ``notebooks/NN_*.py`` of the given notebook numbers (``"06"``)."""
    return [next((REPO_ROOT / "notebooks").glob(f"{n}_*.py")) for n in numbers]


def fixtures_dir() -> Path:
    """``$DEIM_SHARED`` when set, else ``tests/fixtures`` of this checkout."""
    shared = os.environ.get("DEIM_SHARED")
    return Path(shared) if shared else FIXTURES


def _required(kind: str) -> Path:
    path = fixtures_dir() / kind
    if not path.is_dir():  # the fixtures are committed: missing means a broken checkout, not a skip
        pytest.fail(f"fixtures not found at {path} (they ship in tests/fixtures/{kind})")
    return path


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return _required("parity")


@pytest.fixture(scope="session")
def manifest_dir() -> Path:
    return _required("official_state_dict")
