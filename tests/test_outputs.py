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


def small_disk(folder: Path, size_bytes: int) -> Path:
    """A tmpfs of `size_bytes` at `folder`, or a clean skip where this process may not mount one."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode(errors='replace').strip() or done.returncode})")
    return folder


@pytest.fixture
def unmount():
    mounted: list[Path] = []
    yield mounted.append
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, unmount):
    from sgm_export.outputs import DiskFullError, atomic_file

    disk = small_disk(tmp_path / "disk", 64 * 1024)
    unmount(disk)
    with pytest.raises(DiskFullError, match=rf"no space left on {disk} for {disk}/big.bin; free more than 1 MB .* choose another --out"):
        with atomic_file(disk / "big.bin") as staging:
            staging.write_bytes(b"x" * 1_000_000)
    assert names(disk) == []


def test_export_onto_a_full_disk_keeps_the_previous_export(tiny_llama, tmp_path, unmount, capsys):
    from sgm_export.cli import main
    from sgm_export.glasses import save_glasses
    from sgm_export.models.manifest import manifest_problems
    from tests.test_export import random_glasses, widths_of

    glasses = [save_glasses(random_glasses(widths_of(tiny_llama), seed), tmp_path / f"glasses{seed}.safetensors") for seed in (1, 2)]
    sizing = tmp_path / "sizing"
    assert main(["export", str(tiny_llama), "--glasses", str(glasses[0]), "--out", str(sizing)]) == 0
    pages = sum(-(-path.stat().st_size // 4096) * 4096 for path in sizing.iterdir())
    disk = small_disk(tmp_path / "disk", pages * 3 // 2)  # room for one export, not for a second beside it
    unmount(disk)
    out = disk / "export"
    assert main(["export", str(tiny_llama), "--glasses", str(glasses[0]), "--out", str(out)]) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    capsys.readouterr()
    code = main(["export", str(tiny_llama), "--glasses", str(glasses[1]), "--out", str(out), "--force"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert f"no space left on {disk} for {out}" in lines[0] and "MB" in lines[0] and "choose another --out" in lines[0]
    assert names(disk) == ["export"]  # no temporary left behind
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before and manifest_problems(out) == []
