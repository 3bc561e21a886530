"""Pre-flight check of a dataset's image files, before any training or evaluation starts.

Every image the annotation file lists must exist, its header must decode, and its size must be
the one the JSON gives. Only headers are read (about 0.1 ms an image), so a whole dataset is
checked in seconds; a file whose *data* is damaged (a truncated JPEG) is found when it is
loaded, and that error names the file too (``CocoDetection.load_image``).
"""
from __future__ import annotations

from pathlib import Path

import PIL.Image

from deim.data.annotations import AnnotationError

_SHOWN = 3  # how many file names an error lists


def _examples(names: list[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def check_image_files(img_folder: str | Path, ann_file: str | Path, file_names: list[str],
                      sizes: list[tuple[int, int]]) -> None:
    """Raise in one line unless every ``file_names[i]`` under ``img_folder`` is an image of
    ``sizes[i]`` (width, height).

    Raises:
        FileNotFoundError: listed images are missing (the message counts and names them).
        AnnotationError: a file is not a readable image, or its size differs from the JSON's.
    """
    folder = Path(img_folder)
    missing = [name for name in file_names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of the {len(file_names)} images listed in {ann_file} are missing "
                                f"from {folder}: {_examples(missing)}")
    for name, (width, height) in zip(file_names, sizes):
        path = folder / name
        try:
            with PIL.Image.open(path) as image:
                size = image.size
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise AnnotationError(f"{path} (listed in {ann_file}) is not a readable image: {reason}") from None
        if size != (width, height):
            raise AnnotationError(f"{path} is {size[0]} x {size[1]} but {ann_file} gives {width} x {height}")
