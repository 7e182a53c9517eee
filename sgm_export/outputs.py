"""Outputs that appear atomically or not at all.

Every stage writes into a temporary sibling of its target (same filesystem, so the final rename
is atomic) and renames it into place only once everything is written. An existing target is only
replaced (with `--force`) after its replacement is complete, by an atomic exchange of the two
(Linux `renameat2(RENAME_EXCHANGE)`), so that at every instant the target is either the whole old
output or the whole new one.

A run that is killed (SIGKILL, power cut of the process) leaves its `.sgm-tmp-*` sibling behind.
While a run uses a temporary, it holds an advisory lock (`flock`) on it; the kernel drops the lock
when the process dies, however it dies. The next run for the same target removes the siblings
that nobody holds, so leftovers never pile up and a live run's files are never touched.
Ctrl-C and SIGTERM are not kills: they unwind and remove the temporary at once.

Every output goes through `atomic_dir` or `atomic_file`, so that is where a full disk (ENOSPC,
whichever library was writing) becomes one line that names the filesystem and the space needed,
after the temporary is removed and with the previous output untouched.
"""

import contextlib
import ctypes
import errno
import fcntl
import functools
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from sgm_export.errors import OutputExistsError, SgmError

TEMP_PREFIX = ".sgm-tmp-"
# A temporary younger than this is never swept: it may belong to a run that has created it and
# not yet locked it (a window of microseconds).
STALE_AFTER_SECONDS = 2.0
_MKTEMP_SUFFIX = r"[a-z0-9_]{8}"  # what tempfile appends to the prefix


class OutputPathError(SgmError):
    """The output cannot be written where it was asked for."""


class DiskFullError(OutputPathError):
    """The filesystem of the output ran out of space while it was being written."""

    def __init__(self, target: Path, written_bytes: int) -> None:
        megabytes = max(1, math.ceil(written_bytes / 1e6))
        super().__init__(
            f"no space left on {mount_point(target)} for {target}",
            f"free more than {megabytes} MB (what was written before the disk filled) or choose another --out",
        )


def check_target_free(target: Path, force: bool) -> None:
    """Fail early, before any work, when the target exists (unless `force`) or its folder
    cannot be created."""
    target = Path(target)
    if target.exists() and not force:
        raise OutputExistsError(f"output {target} already exists", "choose another --out or pass --force to replace it")
    _check_parent_usable(target)


def check_outside_inputs(target: Path, inputs: Iterable[Path]) -> None:
    """The target may not be, or hold, an input: with --force, replacing it would delete what the
    command reads."""
    target = Path(target)
    for source in map(Path, inputs):
        if source.exists() and target.exists() and (os.path.samefile(source, target) or _inside(source, target)):
            raise OutputPathError(f"the output {target} would replace the input {source}", "choose an --out outside the inputs")


@contextlib.contextmanager
def atomic_dir(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes `target` when the block succeeds."""
    target = Path(target)
    check_target_free(target, force)
    _make_parent(target)
    sweep_stale_temporaries(target)
    staging = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
    with _cleaned_up(staging, target):
        with exclusively(staging):
            yield staging
            _apply_umask(staging)
            _replace(staging, target)


@contextlib.contextmanager
def atomic_file(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path that becomes `target` when the block succeeds."""
    target = Path(target)
    check_target_free(target, force)
    _make_parent(target)
    sweep_stale_temporaries(target)
    handle, name = tempfile.mkstemp(prefix=_temp_prefix(target), dir=target.parent)
    os.close(handle)
    staging = Path(name)
    with _cleaned_up(staging, target):
        with exclusively(staging):
            yield staging
            _apply_umask(staging)
            _replace(staging, target)


@contextlib.contextmanager
def _cleaned_up(staging: Path, target: Path) -> Iterator[None]:
    """Remove `staging` when the block fails; a full disk becomes a `DiskFullError` for `target`."""
    try:
        yield
    except BaseException as error:
        written = _size(staging)
        _remove(staging)
        if is_disk_full(error):
            raise DiskFullError(target, written) from None
        raise


def is_disk_full(error: BaseException) -> bool:
    """Whether an error, or one it was raised from, is ENOSPC. Some writers (safetensors' Rust
    code) report it as text rather than as an OSError, so the message counts too."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, DiskFullError) or (isinstance(seen, OSError) and seen.errno == errno.ENOSPC):
            return True
        if "No space left on device" in str(seen) or "StorageFull" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem that holds (or would hold) `path`."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def _size(path: Path) -> int:
    """Bytes in a file or folder (0 where it is gone)."""
    with contextlib.suppress(OSError):
        if path.is_dir():
            return sum(item.lstat().st_size for item in path.rglob("*") if item.is_file())
        return path.lstat().st_size
    return 0


@contextlib.contextmanager
def exclusively(path: Path) -> Iterator[None]:
    """Hold the advisory lock on an existing file or folder for the block; fail at once if a live
    run holds it. The kernel releases it when the process ends, however it ends."""
    handle = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputPathError(
                f"{path} is in use by another sgm-export run", "wait for that run to end, or choose another --out"
            ) from None
        yield
    finally:
        os.close(handle)


def remove_abandoned(paths: Iterable[Path]) -> list[Path]:
    """Remove those of `paths` that no live run holds (and that are not brand new); returns them."""
    removed = []
    for path in paths:
        with contextlib.suppress(OSError):
            if time.time() - path.lstat().st_mtime < STALE_AFTER_SECONDS:
                continue
            handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while a live run holds it
                _remove(path)
                removed.append(path)
            finally:
                os.close(handle)
    return removed


def sweep_stale_temporaries(target: Path) -> list[Path]:
    """Remove the `.sgm-tmp-*` siblings of `target` left by killed runs; returns what went.

    A sibling is stale when no process holds its lock (its run has died) and it is older than a
    couple of seconds; only names this module creates for this very target are considered.
    """
    target = Path(target)
    return remove_abandoned(siblings_matching(target, rf"{re.escape(_temp_prefix(target))}{_MKTEMP_SUFFIX}"))


def siblings_matching(target: Path, pattern: str) -> list[Path]:
    """The entries beside `target` whose whole name matches the regular expression `pattern`."""
    compiled = re.compile(pattern)
    try:
        return [path for path in Path(target).parent.iterdir() if compiled.fullmatch(path.name)]
    except OSError:
        return []


def _temp_prefix(target: Path) -> str:
    return f"{TEMP_PREFIX}{target.name}-"


def _inside(path: Path, folder: Path) -> bool:
    return folder.is_dir() and path.resolve().is_relative_to(folder.resolve())


def _check_parent_usable(target: Path) -> None:
    """The nearest existing ancestor of the target must be a folder we may write into."""
    ancestor = target.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"cannot create {target}: {ancestor} is a file, not a folder", "choose an --out inside a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot create {target}: {ancestor} is not writable", "choose an --out in a folder you can write to")


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputPathError(f"cannot create the folder {target.parent} ({error.strerror})", "choose another --out") from None


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
    """Move a finished output into place; an existing target is swapped out, then removed."""
    if not os.path.lexists(target):
        os.rename(staging, target)
    elif staging.is_file() and target.is_file():
        os.replace(staging, target)
    elif _exchange(staging, target):
        _remove(staging)  # it now holds the old output
    else:
        _replace_in_two_steps(staging, target)


def _replace_in_two_steps(staging: Path, target: Path) -> None:
    """Where no atomic exchange exists: move the old output aside, then the new one in.

    A kill between the two renames leaves no target, and the old output in the `-old-` sibling;
    the sweep never removes that one (it may be the only copy of the previous output).
    """
    retired = Path(tempfile.mkdtemp(prefix=_temp_prefix(target) + "old-", dir=target.parent))
    os.rename(target, retired / "old")
    os.rename(staging, target)
    _remove(retired)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot do it."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        Path(path).unlink(missing_ok=True)
