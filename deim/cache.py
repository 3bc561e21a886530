"""The one cache of everything deim generates or downloads, keyed by content and written atomically.

The root is ``$DEIM_CACHE`` or ``~/.cache/deim`` (:func:`default_cache_dir`); each kind of entry has a
folder there (:func:`cache_dir`) and each entry a path named by its key (:func:`cache_entry`)::

    fashion/<split>-<n>-<key>/     built-in data (images, annotations.json, manifest.json)
    pretrained/<key>.pth           backbone pre-trainings (and <key>.json beside them)
    runs/<key>/                    experiment runs (result.json, last.pth, log.jsonl, config.yaml)
    weights/<name>.pth             downloaded released weights; weights/url/<key>-<file> for URLs
    onnx/<preset>-<size>-<key>.onnx   ONNX exports of a model

A key is a digest of what determines the entry (:func:`content_key`: a recipe as canonical JSON, or a
string) or of a file's bytes (:func:`sha256_file`), so equal inputs share an entry and a changed input
never reuses a stale one. Every entry is written under a temporary name in its own folder and renamed
into place when complete (:func:`atomic_path`), so a reader never sees half an entry and an
interrupted writer leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CACHE_ENV = "DEIM_CACHE"


def default_cache_dir() -> Path:
    """The cache root: ``$DEIM_CACHE``, or ``~/.cache/deim`` when the variable is unset; not created."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "deim"


def cache_dir(kind: str) -> Path:
    """The folder of one kind of entry, ``<root>/<kind>`` (``fashion``, ``pretrained``, ``runs``,
    ``weights``, ``onnx``); not created."""
    return default_cache_dir() / kind


def cache_entry(kind: str, key: str, folder: str | Path | None = None) -> Path:
    """The path of the entry ``key`` of ``kind``: ``<root>/<kind>/<key>``, or ``<folder>/<key>`` when a
    caller keeps that kind somewhere else (a test's temporary folder); not created."""
    return (Path(folder) if folder is not None else cache_dir(kind)) / key


def content_key(content: Any, algorithm: str = "sha1", digits: int = 12) -> str:
    """The first ``digits`` hex digits of the ``algorithm`` digest of ``content``: a string's UTF-8
    bytes, anything else as canonical JSON (sorted keys; values JSON cannot hold as their ``str``)."""
    text = content if isinstance(content, str) else json.dumps(content, sort_keys=True, default=str)
    return hashlib.new(algorithm, text.encode()).hexdigest()[:digits]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, read in ``chunk``-byte blocks (the one checksum every cache uses:
    built-in data manifests, downloaded weights, backbone files in run keys)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str | Path, keep_existing: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Write an entry atomically: yields a fresh temporary path beside ``path`` (same folder, so the
    rename stays on one file system; nothing exists there yet), and when the block finishes renames it
    over ``path`` with :func:`os.replace`. The temporary file or folder, and anything a tool wrote
    beside it under its name as prefix, is removed however the block ends.

    A folder cannot be renamed over a non-empty one: when that rename fails and ``keep_existing(path)``
    says the entry already there is complete (another process finished the same entry first), it is
    kept and the new copy dropped; otherwise the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError:
            if keep_existing is None or not keep_existing(path):
                raise
    finally:
        for leftover in path.parent.glob(f"{tmp.name}*"):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
