"""Download one file into place: progress bar, atomic write, optional SHA-256 check.

``http(s)`` URLs are read with ``urllib``; Google Drive links with ``gdown`` (``pip install
'deim[weights]'``), which handles Drive's confirmation pages. Either way the bytes go to a
temporary file beside the destination that is renamed over it only when complete and (when a
checksum is given) verified, so an interrupted or failed download never leaves a partial file.
"""
from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from deim.cache import atomic_path, sha256_file

CHUNK = 1 << 20


class DownloadError(FileNotFoundError):
    """The file could not be fetched; the message names the URL and how to place it by hand."""


class ChecksumError(ValueError):
    """The downloaded (or cached) file's SHA-256 is not the expected one."""


def is_google_drive(url: str) -> bool:
    return (urlparse(url).hostname or "").endswith(("drive.google.com", "drive.usercontent.google.com"))


def download(url: str, dest: str | Path, sha256: str | None = None, progress: bool = True,
             timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically; verify ``sha256`` when given. Returns ``dest``.

    Raises:
        DownloadError: no network, HTTP error, connection closed early, ``gdown`` missing.
        ChecksumError: the bytes do not hash to ``sha256`` (nothing is left at ``dest``).
    """
    dest = Path(dest)
    fetch = _fetch_drive if is_google_drive(url) else _fetch_http
    with atomic_path(dest) as tmp:  # also removes any partial file gdown kept beside the temporary one
        fetch(url, tmp, progress, timeout)
        if sha256 is not None:
            actual = sha256_file(tmp)
            if actual != sha256.lower():
                raise ChecksumError(f"{url}: SHA-256 {actual} does not match the expected {sha256}; "
                                    f"the download was discarded")
    return dest


def _progress_bar(total: int | None, name: str, enabled: bool) -> Callable[[int], None]:
    if not enabled:
        return lambda n: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, dynamic_ncols=True)
    return bar.update


def _fetch_http(url: str, tmp: Path, progress: bool, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "deim"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            update = _progress_bar(total, Path(urlparse(url).path).name or url, progress)
            received = 0
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
                update(len(block))
            if total is not None and received != total:
                raise DownloadError(f"{url}: connection closed after {received} of {total} bytes")
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except DownloadError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # no network, reset, early close
        reason = getattr(exc, "reason", None) or repr(exc)
        raise DownloadError(f"{url}: {reason}") from exc


def _fetch_drive(url: str, tmp: Path, progress: bool, timeout: float) -> None:
    try:
        import gdown
    except ImportError:
        raise DownloadError(f"{url} is a Google Drive file: downloading it needs gdown "
                            f"(pip install 'deim[weights]')") from None
    tmp.unlink(missing_ok=True)  # gdown writes the file itself
    try:
        result = gdown.download(url, str(tmp), quiet=not progress, fuzzy=True)
    except Exception as exc:  # gdown raises its own FileURLRetrievalError, requests' errors, ...
        raise DownloadError(f"{url}: {exc}") from exc
    if result is None or not tmp.is_file() or tmp.stat().st_size == 0:
        raise DownloadError(f"{url}: gdown could not retrieve the file (quota exceeded or no access?)")
