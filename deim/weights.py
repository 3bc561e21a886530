"""``NAME | PATH | URL`` -> a local checkpoint file, downloading into the cache when needed.

* a released model's name (``deim_dfine_s_coco``; :mod:`deim.zoo`): downloaded once into
  ``~/.cache/deim/weights/<name>.pth`` (``DEIM_CACHE`` moves it), SHA-256 checked where known;
* an ``http(s)://`` URL: downloaded once into ``~/.cache/deim/weights/url/<hash>-<file name>``;
* a ``file://`` URL or a plain path: used as is (works offline).

Without network the error names the URL and the exact path to put the file at by hand.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from deim.cache import cache_entry, content_key, sha256_file
from deim.download import ChecksumError, DownloadError, download
from deim.zoo import PretrainedModel, find_pretrained, list_pretrained


def cached_path(spec: str) -> Path:
    """Where the name or http(s) URL ``spec`` is (or would be) cached."""
    entry = find_pretrained(spec)
    if entry is not None:
        return cache_entry("weights", f"{entry.name}.pth")
    name = Path(urlparse(spec).path).name or "weights.pth"
    return cache_entry("weights", f"url/{content_key(spec, 'sha256')}-{name}")


def resolve_weights(spec: str | Path, progress: bool = True) -> Path:
    """A local file for ``spec`` (a released model's name, an http(s)/file URL or a path).

    Raises:
        FileNotFoundError: a path that does not exist (the message lists the released names), or
            a download that failed (:class:`~deim.download.DownloadError`, naming the URL and where
            to put the file by hand).
        ChecksumError: the downloaded or cached file does not have the published SHA-256.
    """
    text = str(spec)
    scheme = urlparse(text).scheme.lower()
    if scheme == "file":
        return _existing(Path(unquote(urlparse(text).path)), text)
    entry = find_pretrained(text)
    if entry is None and scheme not in ("http", "https"):
        return _existing(Path(text), text)
    url, sha256 = (entry.url, entry.sha256) if entry is not None else (text, None)
    dest = cached_path(text)
    if dest.is_file():
        if sha256 is not None and sha256_file(dest) != sha256.lower():
            raise ChecksumError(f"cached {dest} does not have the published SHA-256 {sha256}; delete it to "
                                f"download it again")
        return dest
    try:
        return download(url, dest, sha256=sha256, progress=progress)
    except DownloadError as exc:
        raise DownloadError(f"cannot download {_what(entry, text)}: {exc}. Without network: download {url} "
                            f"elsewhere and put it at {dest} (or pass the file's path instead)") from exc


def _what(entry: PretrainedModel | None, text: str) -> str:
    return f"the weights {entry.name!r}" if entry is not None else "the weights"


def _existing(path: Path, spec: str) -> Path:
    if path.is_file():
        return path
    hint = "" if any(c in spec for c in "/\\.") else f"; released models: {', '.join(list_pretrained())}"
    raise FileNotFoundError(f"checkpoint not found: {spec} (neither a file nor a released model's name{hint})")
