"""The chunk store behind `score --resume`: rows saved as they come, taken in again by a resumed
run, which then computes only what is missing and ends with exactly the same activations."""

import shutil

import pytest
import torch

from sgm_export.data.sources import read_source
from sgm_export.errors import SgmError
from sgm_export.models.load import load_model
from sgm_export.options import ScoreOptions
from sgm_export.score.runner import pooled_activations
from sgm_export.score.store import PooledStore, default_chunk_bytes, fingerprint, resumable_store
from tests.test_outputs import backdate


@pytest.fixture(scope="module")
def loaded(tiny_llama):
    return load_model(str(tiny_llama))


def chunks(folder):
    return sorted(folder.glob("chunk-*.safetensors"))


def test_rows_in_any_order_and_nothing_missing():
    store = PooledStore(4)
    store.add([2, 0], torch.tensor([[2.0, 2.5], [0.0, 0.5]]))
    assert store.missing() == [1, 3]
    with pytest.raises(RuntimeError, match="2 examples were never scored"):
        store.pooled()
    store.add([3, 1], torch.tensor([[3.0, 3.5], [1.0, 1.5]]))
    assert store.pooled().tolist() == [[0.0, 0.5], [1.0, 1.5], [2.0, 2.5], [3.0, 3.5]]


def test_saved_chunks_are_taken_in_by_a_new_store(tmp_path):
    store = PooledStore(5, tmp_path, chunk_bytes=2 * 3 * 4)  # a chunk per two rows of three floats
    store.add([4], torch.full((1, 3), 4.0))
    assert chunks(tmp_path) == []
    store.add([0], torch.full((1, 3), 0.0))  # two rows unsaved: a chunk
    store.add([2], torch.full((1, 3), 2.0))
    assert len(chunks(tmp_path)) == 1
    again = PooledStore(5, tmp_path)
    again.load_saved()
    assert again.missing() == [1, 2, 3]  # row 2 was not saved yet
    again.add([1, 2, 3], torch.tensor([[1.0] * 3, [2.0] * 3, [3.0] * 3]))
    assert again.pooled()[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_resumed_activations_equal_an_uninterrupted_run(loaded, labelled_jsonl, tmp_path):
    examples = read_source(str(labelled_jsonl)) * 3
    options = ScoreOptions(batch_size=4)
    full = pooled_activations(loaded, examples, options)
    store = PooledStore(len(examples), tmp_path / "store", chunk_bytes=1)  # a chunk per batch
    (tmp_path / "store").mkdir()
    torch.testing.assert_close(pooled_activations(loaded, examples, options, store), full, rtol=0, atol=0)
    saved = chunks(tmp_path / "store")
    assert len(saved) == 6
    for chunk in saved[2:]:  # as if killed after two batches
        chunk.unlink()
    resumed = PooledStore(len(examples), tmp_path / "store")
    resumed.load_saved()
    assert len(resumed.missing()) == len(examples) - 8
    assert torch.equal(pooled_activations(loaded, examples, options, resumed), full)


def run_in_store(tmp_path, fp: str, resume: bool, rows: int = 0, fail: BaseException | None = None) -> int:
    """Open the store of tmp_path/out, add `rows` rows, optionally fail; returns the rows it had."""
    with resumable_store(tmp_path / "out", fp, 4, resume, chunk_bytes=1 << 20) as store:  # saved only on the way out
        had = store.n_done
        for index in store.missing()[:rows]:
            store.add([index], torch.full((1, 2), float(index)))
        if fail is not None:
            raise fail
    return had


def resume_folders(tmp_path):
    return sorted(path.name for path in tmp_path.glob(".sgm-resume-*"))


def test_store_lifecycle(tmp_path):
    fp, other = "a" * 64, "b" * 64
    with pytest.raises(KeyboardInterrupt):
        run_in_store(tmp_path, fp, resume=False, rows=3, fail=KeyboardInterrupt())
    assert resume_folders(tmp_path) == [f".sgm-resume-out-{'a' * 16}"]  # unsaved rows were saved on the way out
    backdate(tmp_path / f".sgm-resume-out-{'a' * 16}")  # brand-new folders are never swept
    assert run_in_store(tmp_path, other, resume=True) == 0  # other settings: nothing to resume
    assert resume_folders(tmp_path) == []  # success removes the folder; the stale one went too
    with pytest.raises(MemoryError):
        run_in_store(tmp_path, fp, resume=False, rows=2, fail=MemoryError())
    assert run_in_store(tmp_path, fp, resume=False) == 0  # no --resume: start over
    with pytest.raises(MemoryError):
        run_in_store(tmp_path, fp, resume=False, rows=2, fail=MemoryError())
    with pytest.raises(MemoryError):
        run_in_store(tmp_path, fp, resume=True, rows=1, fail=MemoryError())
    assert run_in_store(tmp_path, fp, resume=True) == 3  # two rows, then one more
    with pytest.raises(MemoryError):
        run_in_store(tmp_path, fp, resume=False, rows=2, fail=MemoryError())
    with pytest.raises(SgmError):
        run_in_store(tmp_path, fp, resume=True, rows=1, fail=SgmError("bad input", "fix it"))
    assert resume_folders(tmp_path) == []  # a bad input's rows can never be resumed: gone


def test_a_damaged_chunk_is_reported(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_in_store(tmp_path, "c" * 64, resume=False, rows=2, fail=KeyboardInterrupt())
    (chunk,) = chunks(tmp_path / f".sgm-resume-out-{'c' * 16}")
    chunk.write_bytes(chunk.read_bytes()[:-5])
    with pytest.raises(SgmError, match="damaged.*without --resume"):
        run_in_store(tmp_path, "c" * 64, resume=True)


def test_fingerprint_follows_what_changes_a_row(loaded, labelled_jsonl, tmp_path):
    examples = read_source(str(labelled_jsonl))
    base = fingerprint(loaded, examples, ScoreOptions())
    assert fingerprint(loaded, examples, ScoreOptions(batch_size=3, limit=100)) == base
    assert fingerprint(loaded, examples, ScoreOptions(pool="max")) != base
    assert fingerprint(loaded, examples, ScoreOptions(max_length=64)) != base
    assert fingerprint(loaded, examples[:-1], ScoreOptions()) != base
    changed = [*examples[:-1], type(examples[-1])(text=examples[-1].text + "!", label=examples[-1].label)]
    assert fingerprint(loaded, changed, ScoreOptions()) != base
    copy = tmp_path / "model"
    shutil.copytree(loaded.source.path, copy)
    moved = load_model(str(copy))
    assert fingerprint(moved, examples, ScoreOptions()) != base  # another model folder


def test_chunk_size_setting(monkeypatch):
    monkeypatch.setenv("SGM_EXPORT_CHUNK_MB", "0.5")
    assert default_chunk_bytes() == 512 * 1024
    for bad in ("lots", "0", "-1", "inf", "nan"):
        monkeypatch.setenv("SGM_EXPORT_CHUNK_MB", bad)
        with pytest.raises(SgmError, match="SGM_EXPORT_CHUNK_MB"):
            default_chunk_bytes()
    monkeypatch.delenv("SGM_EXPORT_CHUNK_MB")
    assert default_chunk_bytes() == 16 << 20
