"""Outputs that appear atomically or not at all.

Every stage writes into a temporary sibling of its target (same filesystem, so the final rename
is atomic) and renames it into place only once everything is written. An interrupted run leaves
at most a `.sgm-tmp-*` sibling behind, never a half-written target, and an existing target is only
replaced (with `--force`) after its replacement is complete.
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sgm_export.errors import OutputExistsError

TEMP_PREFIX = ".sgm-tmp-"


def check_target_free(target: Path, force: bool) -> None:
    """Fail early, before any work, when the target exists and may not be replaced."""
    if target.exists() and not force:
        raise OutputExistsError(f"output {target} already exists", "choose another --out or pass --force to replace it")


@contextlib.contextmanager
def atomic_dir(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes `target` when the block succeeds."""
    target = Path(target)
    check_target_free(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + target.name + "-", dir=target.parent))
    try:
        yield staging
        _apply_umask(staging)
        _replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path that becomes `target` when the block succeeds."""
    target = Path(target)
    check_target_free(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=TEMP_PREFIX + target.name + "-", dir=target.parent)
    os.close(handle)
    staging = Path(name)
    try:
        yield staging
        _apply_umask(staging)
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def _apply_umask(path: Path) -> None:
    """Give outputs the usual permissions: mkdtemp, mkstemp and some writers create private ones."""
    mask = os.umask(0)
    os.umask(mask)
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in paths:
        if item.is_symlink():
            continue
        if item.is_dir():
            os.chmod(item, 0o777 & ~mask)
        elif item.stat().st_nlink == 1:  # a hard link shares its source's mode: leave that alone
            os.chmod(item, 0o666 & ~mask)


def _replace(staging: Path, target: Path) -> None:
    """Move a finished directory into place, removing what it replaces only afterwards."""
    if not target.exists():
        os.rename(staging, target)
        return
    retired = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + target.name + "-old-", dir=target.parent))
    os.rename(target, retired / "old")
    os.rename(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
