"""Copying the files an export carries over, and the manifest `sgm_export.json` that records
what was written: the tool version, the settings (`glasses`), where the experts were found
(`data_sources`), the base model and its license, the recipe of a `run`, and the SHA-256 of every
file, the model card included. `export.export_fields` lists the fields."""

import json
import os
import shutil
from pathlib import Path
from typing import Any

from sgm_export import __version__
from sgm_export.modeling import sha256_file, shipped_modeling_sha256
from sgm_export.outputs import atomic_file

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
    files = {name: sha256_file(folder / name) for name in recorded_files(folder)}
    manifest = {
        "sgm_export_version": __version__,
        "modeling_sgm_sha256": shipped_modeling_sha256(),
        **fields,
        "files": files,
    }
    with atomic_file(folder / MANIFEST_FILE, force=True) as staging:  # it may replace the manifest of an export
        staging.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def recorded_files(folder: Path) -> list[str]:
    """The files of an export that the manifest records (and that `push` uploads with it), as
    sorted POSIX paths relative to the folder. Hidden paths are left out: `.sgm-tmp-*` staging
    files, and `.cache/` or `.git/` that tools may leave in a folder, are not part of an export."""
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and path.name != MANIFEST_FILE and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's sgm_export.json, or None when it has none."""
    path = folder / MANIFEST_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
