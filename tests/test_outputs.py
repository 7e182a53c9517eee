"""Atomic outputs: whole or absent, replaced by an atomic exchange, and the leftovers of killed runs
swept by the next run for the same target, never while a live run holds them."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sgm_export.errors import OutputExistsError
from sgm_export.outputs import (
    STALE_AFTER_SECONDS,
    OutputPathError,
    atomic_dir,
    atomic_file,
    check_outside_inputs,
    check_target_free,
    sweep_stale_temporaries,
)


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def backdate(path: Path, seconds: float = 60) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_a_failed_block_leaves_nothing_and_keeps_the_old_target(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target, force=True) as staging:
        (staging / "new.txt").write_text("half")
        raise RuntimeError("killed by a bug")
    assert names(tmp_path) == ["out"] and names(target) == ["old.txt"]


@pytest.mark.parametrize("old_is_dir", [True, False])
def test_replacing_swaps_whole_outputs_of_either_kind(tmp_path, old_is_dir):
    target = tmp_path / "out"
    if old_is_dir:
        target.mkdir()
        (target / "old.txt").write_text("old")
    else:
        target.write_text("old file")
    with atomic_dir(target, force=True) as staging:
        (staging / "new.txt").write_text("new")
    assert names(target) == ["new.txt"] and names(tmp_path) == ["out"]
    with atomic_file(target, force=True) as staging:  # a file replaces the folder
        staging.write_text("a file now")
    assert target.read_text() == "a file now" and names(tmp_path) == ["out"]


def test_outputs_get_the_usual_permissions(tmp_path):
    with atomic_dir(tmp_path / "d") as staging:
        (staging / "f").write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "d" / "f").stat().st_mode & 0o777 == 0o666 & ~mask


def test_target_checks(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(OutputExistsError, match="--force"):
        check_target_free(tmp_path / "exists", force=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        check_target_free(tmp_path / "file" / "deeper" / "out", force=False)
    model = tmp_path / "exists" / "model"
    model.mkdir()
    with pytest.raises(OutputPathError, match="would replace the input"):
        check_outside_inputs(tmp_path / "exists", [model])  # --out is a parent of an input
    check_outside_inputs(tmp_path / "elsewhere", [model, Path("builtin:neutral")])


HOLDER = """
import fcntl, os, sys, time
handle = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_sweep_removes_only_abandoned_temporaries_of_its_own_target(tmp_path):
    target = tmp_path / "model"
    abandoned = tmp_path / ".sgm-tmp-model-abcd1234"
    abandoned_file = tmp_path / ".sgm-tmp-model-zz_9yy8x"
    held = tmp_path / ".sgm-tmp-model-held0000"
    young = tmp_path / ".sgm-tmp-model-young000"
    other_target = tmp_path / ".sgm-tmp-model-folded-abcd1234"
    retired = tmp_path / ".sgm-tmp-model-old-abcd1234"  # may hold the only copy of an old output
    for folder in (abandoned, held, other_target, retired, young):
        folder.mkdir()
        (folder / "weights.safetensors").write_text("partial")
    abandoned_file.write_text("partial glasses")
    for path in (abandoned, abandoned_file, held, other_target, retired):
        backdate(path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(held)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        removed = sweep_stale_temporaries(target)
        assert sorted(removed) == sorted([abandoned, abandoned_file])
        assert held.is_dir() and young.is_dir() and other_target.is_dir() and retired.is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert sweep_stale_temporaries(target) == [held]  # its run is gone now
    assert time.time() - young.stat().st_mtime < STALE_AFTER_SECONDS


def test_a_new_output_sweeps_what_a_killed_run_left(tmp_path):
    leftover = tmp_path / ".sgm-tmp-out-k1ll3d00"
    leftover.mkdir()
    backdate(leftover)
    with atomic_dir(tmp_path / "out") as staging:
        (staging / "f").write_text("x")
    assert names(tmp_path) == ["out"]


def test_replacing_without_an_atomic_exchange(tmp_path, monkeypatch):
    """Where renameat2 is missing, the old output is moved aside, then the new one in."""
    monkeypatch.setattr("sgm_export.outputs._exchange", lambda a, b: False)
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target, force=True) as staging:
        (staging / "new.txt").write_text("new")
    assert names(target) == ["new.txt"] and names(tmp_path) == ["out"]
