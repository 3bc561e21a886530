"""Weights by name, URL or path: download from a loopback server into the cache, cache hits,
checksums, interrupted downloads, 404, offline errors; then predict with what was downloaded.

No test touches any network but 127.0.0.1."""
from __future__ import annotations

import hashlib
import json
import sys

import pytest

from deim import zoo
from deim.download import ChecksumError, DownloadError, download
from deim.weights import cached_path, resolve_weights
from loopback_server import serve
from tiny_model import write_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pth").read_bytes()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


@pytest.fixture()
def server(tiny_bytes):
    with serve({"/tiny.pth": tiny_bytes}) as srv:
        yield srv


def register(monkeypatch, url: str, sha256: str | None, name: str = "tiny_test") -> zoo.PretrainedModel:
    entry = zoo.PretrainedModel(name, "deim_dfine_n", url, num_classes=3, sha256=sha256)
    monkeypatch.setitem(zoo.PRETRAINED, name, entry)
    return entry


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_every_released_model_has_a_preset_and_a_drive_link():
    from deim.presets.catalog import list_presets

    names = zoo.list_pretrained()
    assert {f"deim_dfine_{s}_coco" for s in "nsmlx"} <= set(names)
    assert {f"deim_rtdetrv2_{r}_coco" for r in ("r18", "r34", "r50m", "r50", "r101")} <= set(names)
    assert "deim_dfine_x_obj365" in names and zoo.PRETRAINED["deim_dfine_x_obj365"].num_classes == 366
    for entry in zoo.PRETRAINED.values():
        assert entry.preset in list_presets()
        assert entry.url.startswith("https://drive.google.com/uc?id=")


def test_download_by_name_into_the_cache_then_cache_hit(monkeypatch, cache, server, tiny_bytes):
    register(monkeypatch, f"{server.url}/tiny.pth", hashlib.sha256(tiny_bytes).hexdigest())
    path = resolve_weights("tiny_test", progress=False)
    assert path == cache / "tiny_test.pth" and path.read_bytes() == tiny_bytes
    assert resolve_weights("tiny_test", progress=False) == path
    assert server.requests["/tiny.pth"] == 1  # the second call never asked the server
    assert leftovers(cache) == ["tiny_test.pth"]


def test_download_by_url_is_cached_under_the_url(cache, server, tiny_bytes):
    url = f"{server.url}/tiny.pth"
    path = resolve_weights(url, progress=False)
    assert path == cached_path(url) and path.parent == cache / "url" and path.name.endswith("-tiny.pth")
    assert resolve_weights(url, progress=False) == path and server.requests["/tiny.pth"] == 1


def test_checksum_mismatch_leaves_nothing(monkeypatch, cache, server):
    register(monkeypatch, f"{server.url}/tiny.pth", "0" * 64)
    with pytest.raises(ChecksumError, match="does not match the expected 0000"):
        resolve_weights("tiny_test", progress=False)
    assert leftovers(cache) == []


def test_cached_file_with_a_wrong_checksum_is_refused(monkeypatch, cache):
    register(monkeypatch, "http://127.0.0.1:9/never.pth", "0" * 64)
    cache.mkdir(parents=True)
    (cache / "tiny_test.pth").write_bytes(b"not the published file")
    with pytest.raises(ChecksumError, match="delete it"):
        resolve_weights("tiny_test", progress=False)


def test_interrupted_download_leaves_no_partial_file(cache, server):
    with pytest.raises(DownloadError, match="truncated/tiny.pth"):
        download(f"{server.url}/truncated/tiny.pth", cache / "tiny.pth", progress=False)
    assert leftovers(cache) == []


def test_404_names_the_url_and_how_to_place_the_file(monkeypatch, cache, server):
    url = f"{server.url}/missing.pth"
    register(monkeypatch, url, None)
    with pytest.raises(DownloadError) as info:
        resolve_weights("tiny_test", progress=False)
    message = str(info.value)
    assert "HTTP 404" in message and url in message and str(cache / "tiny_test.pth") in message
    assert leftovers(cache) == []


def test_offline_error_says_where_to_put_the_file(monkeypatch, cache):
    with serve({}) as srv:  # a port that was just free and is closed again: connection refused
        url = f"{srv.url}/gone.pth"
    register(monkeypatch, url, None)
    with pytest.raises(DownloadError, match="Without network: download .* and put it at"):
        resolve_weights("tiny_test", progress=False)


def test_google_drive_without_gdown_asks_for_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gdown", None)  # import fails: no network is attempted
    with pytest.raises(DownloadError, match=r"pip install 'deim\[weights\]'"):
        download("https://drive.google.com/uc?id=abc", tmp_path / "x.pth", progress=False)
    assert leftovers(tmp_path) == []


def test_path_and_file_url_work_offline(tmp_path, tiny_bytes):
    path = tmp_path / "w.pth"
    path.write_bytes(tiny_bytes)
    assert resolve_weights(str(path)) == path
    assert resolve_weights(path.as_uri()) == path
    with pytest.raises(FileNotFoundError, match="released models: deim_dfine_n_coco"):
        resolve_weights("deim_dfine_s_cocoo")


def test_predict_with_weights_downloaded_by_name(monkeypatch, cache, server, tiny_bytes, tmp_path):
    from PIL import Image

    from deim.cli import main

    register(monkeypatch, f"{server.url}/tiny.pth", hashlib.sha256(tiny_bytes).hexdigest())
    Image.new("RGB", (120, 90), (200, 180, 40)).save(tmp_path / "a.png")
    out = tmp_path / "pred"
    assert main(["predict", str(tmp_path / "a.png"), "--weights", "tiny_test", "--output-dir", str(out),
                 "--threshold", "0"]) == 0
    records = json.loads((out / "predictions.json").read_text())
    assert records and {r["category_name"] for r in records} <= {"shirt", "bag", "boot"}
    assert (cache / "tiny_test.pth").is_file() and server.requests["/tiny.pth"] == 1


def test_from_pretrained_by_name(monkeypatch, cache, server, tiny_bytes):
    import torch

    import deim

    register(monkeypatch, f"{server.url}/tiny.pth", hashlib.sha256(tiny_bytes).hexdigest())
    model = deim.from_pretrained("tiny_test", progress=False)
    assert not model.training
    with torch.no_grad():
        out = model(torch.rand(1, 3, 96, 96))
    assert out["pred_logits"].shape == (1, 12, 3) and out["pred_boxes"].shape == (1, 12, 4)


class FakeGdown:
    """Stands in for gdown (no network): writes ``payload`` to the output, or a partial file and fails."""

    def __init__(self, payload: bytes | None) -> None:
        self.payload, self.calls = payload, []

    def download(self, url, output, quiet=False, fuzzy=False):
        self.calls.append((url, fuzzy))
        if self.payload is None:
            with open(output + ".gdown.part", "wb") as f:
                f.write(b"half")
            raise RuntimeError("Too many users have viewed or downloaded this file recently")
        with open(output, "wb") as f:
            f.write(self.payload)
        return output


def test_google_drive_files_go_through_gdown(monkeypatch, tmp_path, tiny_bytes):
    fake = FakeGdown(tiny_bytes)
    monkeypatch.setitem(sys.modules, "gdown", fake)
    url = "https://drive.google.com/uc?id=abc"
    path = download(url, tmp_path / "w.pth", sha256=hashlib.sha256(tiny_bytes).hexdigest(), progress=False)
    assert path.read_bytes() == tiny_bytes and fake.calls == [(url, True)] and leftovers(tmp_path) == ["w.pth"]


def test_a_failed_gdown_download_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gdown", FakeGdown(None))
    with pytest.raises(DownloadError, match="Too many users"):
        download("https://drive.google.com/uc?id=abc", tmp_path / "w.pth", progress=False)
    assert leftovers(tmp_path) == []
