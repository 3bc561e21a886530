"""The one cache: where entries live, how they are keyed, and that every write is atomic."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from deim.cache import atomic_path, cache_dir, cache_entry, content_key, default_cache_dir


def test_entries_live_under_the_root_that_deim_cache_names(monkeypatch, tmp_path):
    monkeypatch.setenv("DEIM_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path and cache_dir("runs") == tmp_path / "runs"
    assert cache_entry("runs", "abc") == tmp_path / "runs" / "abc"
    assert cache_entry("runs", "abc", tmp_path / "elsewhere") == tmp_path / "elsewhere" / "abc"
    monkeypatch.delenv("DEIM_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "deim"


def test_content_keys_are_the_digests_the_caches_always_used():
    recipe = {"b": [1, 2], "a": {"x": 0.5}}
    blob = json.dumps(recipe, sort_keys=True, default=str).encode()
    assert content_key(recipe) == hashlib.sha1(blob).hexdigest()[:12]  # run and pre-training keys
    assert content_key(recipe, "sha256") == hashlib.sha256(blob).hexdigest()[:12]  # built-in data
    url = "https://example.org/w.pth"
    assert content_key(url, "sha256") == hashlib.sha256(url.encode()).hexdigest()[:12]  # downloaded URLs
    assert content_key({"a": {"x": 0.5}, "b": (1, 2)}) == content_key(recipe)  # order and tuples do not matter


def test_atomic_path_renames_a_finished_entry_into_place(tmp_path):
    dest = tmp_path / "kind" / "entry.json"
    with atomic_path(dest) as tmp:
        assert tmp.parent == dest.parent and not tmp.exists() and not dest.exists()
        tmp.write_text("new")
    assert dest.read_text() == "new" and [p.name for p in dest.parent.iterdir()] == ["entry.json"]


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    dest = tmp_path / "entry.pth"
    dest.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        (tmp.parent / f"{tmp.name}.tool.part").write_text("a tool's own partial file")
        raise RuntimeError("interrupted")
    assert dest.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["entry.pth"]


def test_a_complete_folder_written_meanwhile_is_kept(tmp_path):
    dest = tmp_path / "split"
    with atomic_path(dest, keep_existing=lambda p: (p / "done").is_file()) as tmp:
        (tmp / "images").mkdir(parents=True)
        dest.mkdir()
        (dest / "done").write_text("another process")
    assert [p.name for p in tmp_path.iterdir()] == ["split"] and (dest / "done").is_file()
    with pytest.raises(OSError), atomic_path(dest) as tmp:  # without the check the clash is an error
        (tmp / "images").mkdir(parents=True)
    assert [p.name for p in tmp_path.iterdir()] == ["split"]
