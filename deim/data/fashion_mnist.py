"""Read the Fashion-MNIST IDX files (70,000 grey 28x28 images, 10 classes, MIT licence).

Where the files are looked for, in order: the folder named by ``$DEIM_FASHION_MNIST``, then
``/usr/share/datasets/fashion-mnist/`` (Debian/Ubuntu package ``dataset-fashion-mnist``). The
four files keep their official names, gzipped or not: ``{train,t10k}-images-idx3-ubyte[.gz]``
and ``{train,t10k}-labels-idx1-ubyte[.gz]``.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "DEIM_FASHION_MNIST"
_SPLITS = ("train", "t10k")


def fashion_mnist_dir() -> Path:
    """The folder holding the IDX files; ``FileNotFoundError`` explaining how to get them."""
    env = os.environ.get(ENV_VAR)
    candidates = [Path(env)] if env else []
    candidates.append(SYSTEM_DIR)
    for folder in candidates:
        if _find(folder, "train", "images") is not None:
            return folder
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"Fashion-MNIST IDX files not found (looked in {looked}). Install them with "
        f"`apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu), or download the four files of the "
        f"official release (train/t10k images/labels) and set {ENV_VAR} to their folder.")


def load_fashion_mnist(split: str, folder: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images [N, 28, 28] uint8, labels [N] uint8)`` of ``split`` (``train`` or ``t10k``)."""
    if split not in _SPLITS:
        raise ValueError(f"Fashion-MNIST split must be one of {_SPLITS}, got {split!r}")
    folder = fashion_mnist_dir() if folder is None else Path(folder)
    paths = {kind: _find(folder, split, kind) for kind in ("images", "labels")}
    for kind, path in paths.items():
        if path is None:
            raise FileNotFoundError(f"Fashion-MNIST {split} {kind} file not found in {folder}")
    images = read_idx(paths["images"])
    labels = read_idx(paths["labels"])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST {split} files disagree: images {images.shape}, labels {labels.shape}")
    return images, labels


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) holding unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {len(data) - offset} values")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _find(folder: Path, split: str, kind: str) -> Path | None:
    name = f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None
