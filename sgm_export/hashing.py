"""SHA-256 of files: what manifests record and every check compares against.

Its own module because exports, cards, checks and the model audit all hash files, and none of
them is the natural owner (`modeling/` is the code shipped inside checkpoints)."""

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
