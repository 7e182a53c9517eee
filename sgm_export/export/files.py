"""Copying the files an export carries over, and the manifest `sgm_export.json` that records
what was written: the tool version, the settings (`glasses`), where the experts were found
(`data_sources`), the base model and its license, the recipe of a `run`, and the SHA-256 of every
file, the model card included. `artifacts.ExportManifest` lists the fields.

Hashing is what makes an export cost more than copying its files: SHA-256 runs at about 1.7 GB/s
on one core (with the CPU's SHA instructions), slower than the kernel copies a file from the page
cache. So `copy_file` takes a base file's digest from what is known of it (`digests.py`: the
Hub's blob names, digests remembered from an earlier export), or else hashes the file while the
kernel copies it, and hands the digest on to `write_manifest`, which then reads only the files it
has no digest for, instead of reading every weight a second time.
"""

import json
import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sgm_export import __version__
from sgm_export.artifacts import ExportManifest
from sgm_export.errors import CheckpointError
from sgm_export.export.digests import file_digest
from sgm_export.hashing import sha256_file
from sgm_export.layout import MANIFEST_FILE
from sgm_export.modeling import shipped_modeling_sha256
from sgm_export.outputs import atomic_file


def copy_file(source: Path, target: Path, link: bool = False) -> str:
    """Copy byte for byte, or hard-link on request; return the file's SHA-256.

    The copy runs in the kernel (sendfile, no bytes through Python) on a helper thread while
    this one finds the source's digest (`file_digest`: known already, or hashed now): both
    release the GIL, so with a second core free the two together take about as long as the
    longer of them. The digest is the target's as long as the source did not change meanwhile,
    which its size and modification time confirm. A linked file shares the source's digest.
    """
    if link:
        digest = file_digest(source)  # before linking: a new link changes the file's change time
        try:
            os.link(source, target)
            return digest
        except OSError:
            pass  # another filesystem, or links not allowed: fall back to a copy
    before = os.stat(source)
    with ThreadPoolExecutor(max_workers=1) as copier:
        copying = copier.submit(shutil.copyfile, source, target)
        digest = file_digest(source)
        copying.result()
    after = os.stat(source)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise CheckpointError(f"{source} changed while it was being copied", "run the export again once nothing writes to it")
    return digest


def copy_files(pairs: list[tuple[Path, Path]], link: bool = False) -> list[str]:
    """`copy_file` for each (source, target), several at once (one per core), in order.

    Hashing a file keeps one core busy at about 1.5 GB/s, slower than most disks copy: with the
    files hashed side by side, the first export of a model (when no digest is known yet) takes
    about as long as the copies themselves."""
    workers = max(1, min(len(pairs), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda pair: copy_file(*pair, link=link), pairs))


def write_manifest(folder: Path, manifest: ExportManifest, digests: Mapping[str, str] | None = None) -> None:
    """Write sgm_export.json: what produced this folder and the SHA-256 of each file in it.

    `digests` (path relative to the folder -> SHA-256) are those computed while the files were
    written, by `copy_file` or an export writer; every other file is read and hashed here.
    """
    known = digests or {}
    files = {name: known.get(name) or sha256_file(folder / name) for name in recorded_files(folder)}
    written = manifest.model_copy(
        update={"sgm_export_version": __version__, "modeling_sgm_sha256": shipped_modeling_sha256(), "files": files}
    )
    with atomic_file(folder / MANIFEST_FILE, force=True) as staging:  # it may replace the manifest of an export
        staging.write_text(json.dumps(written.to_json(), indent=2) + "\n", encoding="utf-8")


def recorded_files(folder: Path) -> list[str]:
    """The files of an export that the manifest records (and that `push` uploads with it), as
    sorted POSIX paths relative to the folder. Hidden paths are left out: `.sgm-tmp-*` staging
    files, and `.cache/` or `.git/` that tools may leave in a folder, are not part of an export."""
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and path.name != MANIFEST_FILE and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
