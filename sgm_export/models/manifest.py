"""The manifest `sgm_export.json` that every export carries, read and checked without torch.

The manifest records the SHA-256 of each file of an export. It is what a load checks first
(models/audit.py), what `verify` and `push` check in full, and what `modeling_sgm.py` checks the
glasses against when transformers loads the export. It lives here, beside the model checks,
because those run before any export code is imported.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sgm_export.errors import CheckpointError
from sgm_export.hashing import sha256_file
from sgm_export.layout import MANIFEST_FILE, MODELING_FILE
from sgm_export.modeling import shipped_modeling_sha256

__all__ = ["MANIFEST_FILE", "manifest_problems", "read_manifest"]


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's sgm_export.json, or None when it has none; a damaged one is a one-line error."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error})", "export the model again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files", {}), dict):
        raise CheckpointError(f"{path} is not an sgm-export manifest", "export the model again")
    return manifest


def manifest_problems(export_dir: Path, skip: Callable[[str], bool] = lambda name: False) -> list[str]:
    """Files that are missing or changed since the export wrote its sgm_export.json; `skip` leaves
    out files that need no check (the card when it is re-rendered, weights before a load)."""
    manifest = read_manifest(export_dir)
    if manifest is None:
        return [f"{MANIFEST_FILE} is missing, so the files cannot be checked"]
    problems = []
    for name, digest in manifest.get("files", {}).items():
        if skip(name):
            continue
        path = Path(export_dir) / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name} differs from the SHA-256 recorded in {MANIFEST_FILE}")
    if manifest.get("modeling_sgm_sha256") not in (None, shipped_modeling_sha256()):
        problems.append(f"{MODELING_FILE} was written by another version of sgm-export")
    return problems
