"""Where deim keeps what it generates: ``$DEIM_CACHE`` or ``~/.cache/deim``, one folder per kind
(``fashion`` for the built-in data, ``pretrained`` for backbone pre-trainings, ``runs`` for the
experiment runs)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """``$DEIM_CACHE/<kind>`` (``~/.cache/deim/<kind>`` when the variable is unset); not created."""
    root = os.environ.get("DEIM_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "deim") / kind


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, read in ``chunk``-byte blocks (the one checksum every cache uses:
    built-in data manifests, downloaded weights, backbone files in run keys)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
