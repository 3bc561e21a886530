"""Where deim keeps what it generates: ``$DEIM_CACHE`` or ``~/.cache/deim``, one folder per kind
(``fashion`` for the built-in data, ``pretrained`` for backbone pre-trainings, ``runs`` for the
experiment runs)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """``$DEIM_CACHE/<kind>`` (``~/.cache/deim/<kind>`` when the variable is unset); not created."""
    root = os.environ.get("DEIM_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "deim") / kind
