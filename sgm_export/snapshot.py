"""A private, consistent view of a folder that another process may replace while it is read.

`verify` reads an export many times over (config, manifest, modeling file, glasses, weights,
tokenizer). An export replaced meanwhile (`export --force` swaps the whole folder atomically; `card`
replaces single files) would give it half of each version, and a false FAIL. So it reads a
snapshot instead: every file hard-linked (copied where links cannot be made) into a private
folder, each taken through one open handle on the original folder, which keeps pointing at the
same version even after a swap. A file that vanished meanwhile, or that was replaced before the
snapshot was complete, starts the snapshot over; hard links cost no space and no copying.

The snapshot lives beside the folder (links need the same filesystem) under a locked
`.sgm-snapshot-*` name, so a snapshot left by a killed run is removed by the next one.
"""

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sgm_export.errors import CheckpointError
from sgm_export.outputs import exclusively, remove_abandoned, siblings_matching

PREFIX = ".sgm-snapshot-"
ATTEMPTS = 10


@contextlib.contextmanager
def folder_snapshot(folder: Path) -> Iterator[Path]:
    """Yield a private copy of `folder` as it was at one instant; removed when the block ends."""
    folder = Path(folder)
    remove_abandoned(siblings_matching(folder, rf"{PREFIX}[a-z0-9_]{{8}}"))
    for _ in range(ATTEMPTS):
        home = _snapshot_home(folder)
        try:
            with exclusively(home):
                if _fill(home, folder):
                    yield home
                    return
        finally:
            shutil.rmtree(home, ignore_errors=True)
    raise CheckpointError(f"{folder} kept changing while it was read", "run the command again once nothing writes to it")


def _snapshot_home(folder: Path) -> Path:
    """An empty private folder beside `folder` when its parent is writable, else in the temp dir."""
    try:
        return Path(tempfile.mkdtemp(prefix=PREFIX, dir=folder.parent))
    except OSError:
        return Path(tempfile.mkdtemp(prefix=PREFIX))


def _fill(home: Path, folder: Path) -> bool:
    """Link or copy every file of `folder` into `home`; False when the folder changed meanwhile:
    a file vanished (the version being read is being removed), or is no longer the one taken."""
    taken: list[tuple[str, int]] = []  # (path in the folder, inode taken)
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            for relative, _, names, directory_fd in os.fwalk(".", dir_fd=folder_fd):
                (home / relative).mkdir(exist_ok=True)
                for name in names:
                    taken.append((os.path.join(relative, name), _take(name, directory_fd, home / relative / name)))
            return all(os.stat(path, dir_fd=folder_fd).st_ino == inode for path, inode in taken)
        except FileNotFoundError:
            return False
    finally:
        os.close(folder_fd)


def _take(name: str, directory_fd: int, target: Path) -> int:
    """Hard-link (or copy) one file into the snapshot; return the inode of what was taken."""
    try:
        os.link(name, target, src_dir_fd=directory_fd, follow_symlinks=True)
        return target.stat().st_ino
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
            raise
    source_fd = os.open(name, os.O_RDONLY, dir_fd=directory_fd)
    with open(source_fd, "rb") as source, open(target, "wb") as copy:
        shutil.copyfileobj(source, copy, 1 << 20)
        return os.fstat(source.fileno()).st_ino
