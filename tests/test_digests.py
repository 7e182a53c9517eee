"""Digests of base files found without reading them: the Hub cache's blob names, and digests
remembered from an earlier export for as long as the file is unchanged."""

import hashlib
import json
import os
import time

import pytest

from sgm_export.export import digests
from sgm_export.export.digests import file_digest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SGM_EXPORT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def old_file(path, content: bytes, monkeypatch):
    """A file old enough to be remembered: written a minute ago, and (since its change time
    cannot be set back) a racy window of zero seconds."""
    path.write_bytes(content)
    past = time.time() - 60
    os.utime(path, (past, past))
    monkeypatch.setattr(digests, "RACY_SECONDS", 0)
    return path


def refuse_hashing(monkeypatch):
    def fail(path):
        raise AssertionError(f"{path} was read")

    monkeypatch.setattr(digests, "sha256_file", fail)


def test_a_digest_is_computed_once_and_remembered(cache, tmp_path, monkeypatch):
    shard = old_file(tmp_path / "model.safetensors", b"weights" * 1000, monkeypatch)
    assert file_digest(shard) == sha256(shard)
    refuse_hashing(monkeypatch)
    assert file_digest(shard) == sha256(shard)


def test_a_changed_file_is_hashed_again(cache, tmp_path, monkeypatch):
    shard = old_file(tmp_path / "model.safetensors", b"weights" * 1000, monkeypatch)
    before = file_digest(shard)
    stat = shard.stat()
    shard.write_bytes(b"WEIGHTS" * 1000)  # same size
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old modification time
    assert file_digest(shard) == sha256(shard) != before  # the change time gives it away


def test_a_file_written_just_now_is_not_remembered(cache, tmp_path, monkeypatch):
    fresh = tmp_path / "fresh"
    fresh.write_bytes(b"new")
    file_digest(fresh)
    assert not (cache / digests.CACHE_FILE).exists()


def test_hub_blob_names_are_the_digest(cache, tmp_path, monkeypatch):
    """In the Hugging Face cache a weight file links to blobs/<its SHA-256>."""
    content = b"lfs weights"
    blob = tmp_path / "models--org--name" / "blobs" / hashlib.sha256(content).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(content)
    snapshot = tmp_path / "models--org--name" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(blob)
    refuse_hashing(monkeypatch)
    assert file_digest(snapshot / "model.safetensors") == sha256(blob)


def test_a_damaged_cache_is_ignored(cache, tmp_path, monkeypatch):
    cache.mkdir()
    (cache / digests.CACHE_FILE).write_text("{not json")
    shard = old_file(tmp_path / "model.safetensors", b"weights", monkeypatch)
    assert file_digest(shard) == sha256(shard)
    key = f"{shard.stat().st_dev}:{shard.stat().st_ino}"
    (cache / digests.CACHE_FILE).write_text(json.dumps({key: {"stamp": 3}}))
    assert file_digest(shard) == sha256(shard)


def test_an_export_remembers_every_shard_it_hashed_side_by_side(cache, tmp_path, monkeypatch):
    """Shards are copied and hashed several at a time; every digest is remembered, and the next
    export of the model reads none of them again."""
    from sgm_export.export import export_checkpoint
    from tests.test_export import random_glasses, widths_of
    from tests.tiny import build_tiny_model

    base = build_tiny_model("llama", tmp_path / "sharded", max_shard_size="20KB")
    monkeypatch.setattr(digests, "RACY_SECONDS", 0)
    glasses = random_glasses(widths_of(base))
    first = export_checkpoint(str(base), glasses, tmp_path / "first")
    shards = sorted(base.glob("*.safetensors"))
    assert len(shards) > 2
    remembered = json.loads((cache / digests.CACHE_FILE).read_text())
    assert {entry["sha256"] for entry in remembered.values()} >= {sha256(shard) for shard in shards}
    refuse_hashing(monkeypatch)  # of base files: the card and config the export writes are still hashed
    again = export_checkpoint(str(base), glasses, tmp_path / "again")
    manifest = json.loads((again / "sgm_export.json").read_text())["files"]
    assert all(manifest[shard.name] == sha256(shard) for shard in shards)
    assert json.loads((first / "sgm_export.json").read_text())["files"][shards[0].name] == manifest[shards[0].name]
