"""Pre-flight check of an output folder: it can be created, it is writable, it is no input folder.

Run before any training, so that a folder below a regular file, on a read-only file system or
without permission is refused in one line at the start instead of after an epoch.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


class OutputFolderError(OSError):
    """The output folder cannot be created or written to."""


def _blocking_file(path: Path) -> Path | None:
    """The first part of ``path`` that exists but is not a folder."""
    for part in [*reversed(path.parents), path]:
        if part.exists() and not part.is_dir():
            return part
    return None


def prepare_output_folder(path: str | Path, input_folders: Iterable[str | Path | None] = ()) -> Path:
    """Create ``path`` if needed and prove it writable (a probe file is written and removed).

    Raises:
        ValueError: ``path`` is one of ``input_folders`` (the outputs would mix with the inputs).
        OutputFolderError: it cannot be created (a part of it is a file, no permission, read-only)
            or written to.
    """
    path = Path(path)
    for folder in input_folders:
        if folder is not None and Path(folder).resolve() == path.resolve():
            raise ValueError(f"the output folder {path} is an input folder ({folder}); choose another --output-dir")
    blocking = _blocking_file(path)
    if blocking is not None:
        raise OutputFolderError(f"cannot create the output folder {path}: {blocking} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".deim-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputFolderError(f"cannot write into the output folder {path}: {exc.strerror or exc}") from None
    return path
