"""SHA-256 of the base model's files, computed once per file, not once per export.

The manifest of every export records the SHA-256 of each file, and hashing runs at about
1.6 GB/s on one core: as slow as the kernel copies a file, so a hash computed at every export
would make an export cost twice a plain copy. Base files do not change between exports, so their
digests are found without reading them where that can be trusted:

- A file of the Hugging Face cache is a link to `blobs/NAME`, and for weights (stored in Git LFS)
  NAME is the file's SHA-256, the digest the Hub itself published.
- A digest computed once is remembered in the cache folder (`digests.json`), keyed by the file's
  device and inode, with its size and its modification and change times (in nanoseconds): the
  facts git's index trusts to tell an unchanged file. Any write to a file changes its times, and
  the change time cannot be set back. A file written in the last few seconds is not remembered,
  since a write within the same tick of the clock could go unseen (git's "racy" files).

Edited files (folded shards, cards, manifests) are always hashed: they are new.
"""

import json
import os
import re
import threading
import time
from pathlib import Path

from sgm_export.hashing import sha256_file
from sgm_export.models.cache import cache_root

CACHE_FILE = "digests.json"
MAX_ENTRIES = 20_000  # about 2 MB of JSON; the oldest entries go first
RACY_SECONDS = 3
_HUB_LFS_BLOB = re.compile(r"[0-9a-f]{64}")
_WRITING = threading.Lock()


def file_digest(path: Path) -> str:
    """The SHA-256 of the file at `path` (hex), read from the file only when nothing knows it."""
    real = Path(path).resolve()
    if real.parent.name == "blobs" and _HUB_LFS_BLOB.fullmatch(real.name):
        return real.name
    stat = real.stat()
    key = f"{stat.st_dev}:{stat.st_ino}"
    stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
    remembered = _load().get(key)
    if isinstance(remembered, dict) and remembered.get("stamp") == stamp and isinstance(remembered.get("sha256"), str):
        return remembered["sha256"]
    digest = sha256_file(real)
    if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) > RACY_SECONDS * 1_000_000_000:
        _remember(key, {"stamp": stamp, "sha256": digest})
    return digest


def _cache_path() -> Path:
    return cache_root() / CACHE_FILE


def _load() -> dict[str, dict]:
    try:
        entries = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _remember(key: str, entry: dict) -> None:
    """Add one entry; the file is replaced atomically. Threads of this process take turns (an
    export hashes several files at once); a write lost to another process only costs that
    process's digests being computed again next time."""
    with _WRITING:
        entries = _load()
        entries.pop(key, None)
        entries[key] = entry
        kept = dict(list(entries.items())[-MAX_ENTRIES:])
        path = _cache_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            partial.write_text(json.dumps(kept), encoding="utf-8")
            os.replace(partial, path)
        except OSError:
            pass  # a read-only cache only costs speed
