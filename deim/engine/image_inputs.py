"""The images ``deim predict`` reads, and where their annotated copies go, so that nothing is lost.

* :func:`find_images` collects image files from files and folders; a file that is not an image
  (a ``.csv``, a ``.jpg`` that is not one) is skipped with one warning counting and naming them.
* :func:`output_names` gives every input a distinct output name: its path relative to the
  inputs' common folder, its file name kept whole (``img0.jpg`` -> ``img0.jpg.png``; a PNG keeps
  its name), so ``img0.jpg`` and ``img0.png`` never overwrite each other.
* :func:`check_output_folder` refuses an output folder that holds any of the inputs.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import PIL.Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable image (its header is read), or ``None`` when it is one."""
    try:
        with PIL.Image.open(path) as image:
            image.size  # noqa: B018 - the header is parsed on open
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def find_images(inputs: Sequence[str | Path], warn: bool = True) -> list[Path]:
    """Image files among ``inputs`` (files, or folders searched non-recursively for image
    suffixes), in order, without duplicates. Files that are not images are skipped with a warning
    on stderr; ``FileNotFoundError`` for a missing input, ``ValueError`` when no image is left."""
    candidates: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            candidates += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            candidates.append(item)
        else:
            raise FileNotFoundError(f"no such image or folder: {item}")
    found, skipped, seen = [], [], set()
    for path in candidates:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        problem = image_problem(path)
        if problem is None:
            found.append(path)
        else:
            skipped.append(path)
    if skipped and warn:
        names = ", ".join(str(p) for p in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        print(f"[deim] warning: skipped {len(skipped)} file(s) that are not readable images: {names}",
              file=sys.stderr)
    if not found:
        raise ValueError(f"no readable images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return found


def _common_folder(paths: Sequence[Path]) -> Path:
    parents = [str(p.resolve().parent) for p in paths]
    return Path(os.path.commonpath(parents)) if parents else Path(".")


def output_names(paths: Sequence[Path]) -> list[Path]:
    """A distinct relative output path (``.png``) for each input (see the module docstring)."""
    root = _common_folder(paths)
    names = []
    for path in paths:
        relative = path.resolve().relative_to(root)
        names.append(relative if relative.suffix.lower() == ".png" else relative.with_name(relative.name + ".png"))
    clashes = {n for n in names if names.count(n) > 1}
    if clashes:
        raise ValueError(f"inputs would share the output name(s) {', '.join(map(str, sorted(clashes)))}")
    return names


def check_output_folder(output_dir: str | Path, inputs: Sequence[Path]) -> None:
    """``ValueError`` in one line when ``output_dir`` is a folder that holds an input image, or
    one of its outputs would replace an input."""
    out = Path(output_dir).resolve()
    sources = {p.resolve() for p in inputs}
    holding = sorted({str(p.parent) for p in sources if p.parent == out})
    if holding:
        raise ValueError(f"--output-dir {output_dir} is the folder of the input images: the annotated copies must "
                         f"go elsewhere (e.g. --output-dir {Path(output_dir) / 'predictions'})")
    clash = [str(p) for p, name in zip(inputs, output_names(list(inputs))) if (out / name) in sources]
    if clash:
        raise ValueError(f"writing into {output_dir} would replace the input image(s) {', '.join(clash[:3])}; "
                         f"choose another --output-dir")
