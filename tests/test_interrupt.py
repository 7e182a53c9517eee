"""Killing the real command in the middle of its work.

`score` and `export` run in subprocesses and are killed with SIGKILL (nothing in the process can
react) or SIGTERM (it can) once they are visibly halfway: rows saved for --resume, or a temporary
output holding some files. Afterwards the target is absent, or the previous output is byte for
byte what it was; the leftovers are swept by the next run for the same target; `score --resume`
continues where the kill stopped it and gives exactly the scores of an uninterrupted run.

A scoring run saves dozens of chunks, so the test has plenty of time to see the second one; an
export takes a second, so it runs at the lowest priority, and on a busy machine the test still
sees its halfway mark before it can finish.
"""

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sgm_export.data.builtin import read_builtin
from sgm_export.glasses import Glasses, save_glasses
from tests.cli_helpers import cli_command, cli_env, sgm
from tests.test_outputs import backdate
from tests.tiny import build_tiny_model

N_EXAMPLES = 480
CHUNK_ENV = {"SGM_EXPORT_CHUNK_MB": "0.005"}  # a chunk every couple of batches of the tiny model


def start(*args: str, env: dict | None = None, nice: int = 0) -> subprocess.Popen:
    """Start the command in the background, at a lower CPU priority if `nice`."""
    return subprocess.Popen(
        cli_command(*args), env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.nice(nice)
    )


def stop_when(process: subprocess.Popen, ready: Callable[[], bool], signum: int, timeout: float = 300) -> None:
    """Send `signum` as soon as `ready()` holds; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the command ended before it could be interrupted: {process.communicate()}"
        assert time.monotonic() < deadline, "the command never got halfway"
        time.sleep(0.001)
    process.send_signal(signum)
    process.wait(timeout=120)


def digest_tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path, pattern: str = ".sgm-*") -> list[str]:
    return sorted(path.name for path in folder.glob(pattern))


@pytest.fixture(scope="module")
def many_examples(tmp_path_factory) -> Path:
    toxic = read_builtin("rtp-toxic", "score")[: N_EXAMPLES // 2]
    neutral = read_builtin("neutral", "score")[: N_EXAMPLES // 2]
    path = tmp_path_factory.mktemp("data") / "many.jsonl"
    path.write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n" for e in toxic + neutral), encoding="utf-8")
    return path


def saved_chunks(folder: Path, name: str, at_least: int) -> Callable[[], bool]:
    return lambda: sum(len(list(store.glob("chunk-*.safetensors"))) for store in folder.glob(f".sgm-resume-{name}-*")) >= at_least


def test_score_killed_then_resumed(tiny_llama, many_examples, tmp_path):
    args = ("score", tiny_llama, "--data", many_examples, "--batch-size", "8")
    reference = sgm(*args, "--out", tmp_path / "ref", env=CHUNK_ENV)
    assert reference.code == 0, reference.stderr
    before = digest_tree(tmp_path / "ref")
    expected = load_file(tmp_path / "ref" / "scores.safetensors")

    # SIGTERM: the run unwinds, says so, and saves what it has for --resume.
    process = start(*args, "--out", tmp_path / "new", env=CHUNK_ENV)
    stop_when(process, saved_chunks(tmp_path, "new", 2), signal.SIGTERM)
    assert process.returncode == 130 and "interrupted" in process.stderr.read()
    assert not (tmp_path / "new").exists()
    assert leftovers(tmp_path) == [next(tmp_path.glob(".sgm-resume-new-*")).name]

    # SIGKILL while replacing an existing output: the previous one is untouched.
    process = start(*args, "--out", tmp_path / "ref", "--force", env=CHUNK_ENV)
    stop_when(process, saved_chunks(tmp_path, "ref", 3), signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    assert digest_tree(tmp_path / "ref") == before

    for name in ("ref", "new"):
        resumed = sgm(*args, "--out", tmp_path / name, "--force", "--resume", env=CHUNK_ENV)
        assert resumed.code == 0, resumed.stderr
        done = int(resumed.stderr.split("resume: ")[1].split(" of ")[0])
        assert 0 < done < N_EXAMPLES, resumed.stderr
        scores = load_file(tmp_path / name / "scores.safetensors")
        assert scores.keys() == expected.keys()
        assert all(torch.equal(scores[key], expected[key]) for key in expected), "resumed scores differ"
    assert leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def large_model(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A random llama of ~270 MB in 16 shards (an export takes a second or so), and two glasses."""
    root = tmp_path_factory.mktemp("large")
    model = build_tiny_model(
        "llama", root / "model", max_shard_size="16MB", hidden_size=1024, intermediate_size=4096, num_hidden_layers=4, num_attention_heads=4
    )
    generator = torch.Generator().manual_seed(0)
    glasses = [
        save_glasses(Glasses([torch.rand(4096, generator=generator) for _ in range(4)], {}), root / f"g{i}.safetensors") for i in (1, 2)
    ]
    return model, glasses[0], glasses[1]


def temporary_with_files(folder: Path, name: str, at_least: int) -> Callable[[], bool]:
    return lambda: any(len(list(temp.iterdir())) >= at_least for temp in folder.glob(f".sgm-tmp-{name}-*") if temp.is_dir())


def test_export_killed_leaves_no_target_and_the_old_one_whole(large_model, tmp_path):
    model, first, second = large_model
    args = ("export", model, "--format", "folded", "--glasses")
    done = sgm(*args, first, "--out", tmp_path / "out")
    assert done.code == 0, done.stderr
    before, weights_before = digest_tree(tmp_path / "out"), weights(tmp_path / "out")

    process = start(*args, second, "--out", tmp_path / "out", "--force", nice=19)
    stop_when(process, temporary_with_files(tmp_path, "out", 3), signal.SIGKILL)
    assert digest_tree(tmp_path / "out") == before

    process = start(*args, second, "--out", tmp_path / "fresh", nice=19)
    stop_when(process, temporary_with_files(tmp_path, "fresh", 3), signal.SIGKILL)
    assert not (tmp_path / "fresh").exists()
    killed = leftovers(tmp_path, ".sgm-tmp-*")
    assert len(killed) == 2 and killed[0].startswith(".sgm-tmp-fresh-") and killed[1].startswith(".sgm-tmp-out-")

    for leftover in tmp_path.glob(".sgm-tmp-*"):
        backdate(leftover)  # as if the next run came a while later (brand-new temporaries are never swept)
    done = sgm(*args, second, "--out", tmp_path / "fresh")
    assert done.code == 0, done.stderr
    assert leftovers(tmp_path, ".sgm-tmp-*") == [killed[1]]  # only its own target's leftover is swept
    done = sgm(*args, second, "--out", tmp_path / "out", "--force")
    assert done.code == 0, done.stderr
    assert leftovers(tmp_path) == []
    assert weights(tmp_path / "out") == weights(tmp_path / "fresh") != weights_before


def weights(folder: Path) -> dict[str, str]:
    """Digests of the weight shards. (Not of every file: safetensors writes multi-key metadata in
    hash-map order, so glasses.safetensors and the manifest differ in bytes from run to run.)"""
    return {name: digest for name, digest in digest_tree(folder).items() if name.startswith("model-")}
