"""Copying the files an export carries over, and the manifest `sgm_export.json` that records
what was written (tool version, settings, and the SHA-256 of every file)."""

import json
import os
import shutil
from pathlib import Path
from typing import Any

from sgm_export import __version__
from sgm_export.modeling import sha256_file, shipped_modeling_sha256

MANIFEST_FILE = "sgm_export.json"


def copy_file(source: Path, target: Path, link: bool = False) -> None:
    """Copy byte for byte (the kernel's copy_file_range where it can), or hard-link on request."""
    if link:
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another filesystem, or links not allowed: fall back to a copy
    shutil.copyfile(source, target)


def write_manifest(folder: Path, fields: dict[str, Any]) -> None:
    """Write sgm_export.json: what produced this folder and the SHA-256 of each file in it."""
    files = {
        str(path.relative_to(folder)): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    manifest = {
        "sgm_export_version": __version__,
        "modeling_sgm_sha256": shipped_modeling_sha256(),
        **fields,
        "files": files,
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's sgm_export.json, or None when it has none."""
    path = folder / MANIFEST_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
