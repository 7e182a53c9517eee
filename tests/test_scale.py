"""Scoring past one device: the store's device budget and spill, batches that shrink after running
out of memory, the automatic batch size, --device-map, and data-parallel scoring with torchrun
(two CPU processes on the gloo backend give exactly the scores of one)."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

from sgm_export.data.builtin import read_builtin
from sgm_export.data.sources import read_source
from sgm_export.models.load import load_model
from sgm_export.options import ScoreOptions
from sgm_export.score import batching
from sgm_export.score.batching import BatchPlan, auto_batch_size
from sgm_export.score.distributed import Share, neuron_bounds, rank_gpus
from sgm_export.score.runner import fill_store, neuron_statistics, pooled_activations, score_examples
from sgm_export.score.store import PooledStore
from tests.cli_helpers import cli_env, sgm
from tests.conftest import write_jsonl


@pytest.fixture(scope="module")
def loaded(tiny_llama):
    return load_model(str(tiny_llama), device="cpu", dtype="float32")


def random_rows(n_examples: int, width: int, seed: int = 0) -> torch.Tensor:
    rows = torch.randn(n_examples, width, generator=torch.Generator().manual_seed(seed))
    rows[:, :3] = rows[:, :3].round()  # ties
    return rows


@pytest.mark.parametrize("budget_rows", [0, 1, 4, 7, 100])
def test_store_keeps_rows_up_to_its_budget_and_spills_the_rest(budget_rows):
    """However many rows the budget holds, the rows read back in example order, and the neuron
    blocks AUROC sorts hold every example, in order."""
    rows = random_rows(7, 10)
    store = PooledStore(7, device_budget_bytes=budget_rows * 10 * 4)
    for indices in ([5, 1], [0], [6, 2, 3], [4]):
        store.add(indices, rows[indices])
    assert store.n_on_device == min(budget_rows, 7)
    assert torch.equal(store.pooled(), rows)
    assert torch.equal(store.rows([6, 0, 3]), rows[[6, 0, 3]])
    blocks = list(store.neuron_blocks(4, torch.device("cpu")))
    assert [tuple(block.shape) for block in blocks] == [(4, 7), (4, 7), (2, 7)]
    assert torch.equal(torch.cat(blocks), rows.T)


@pytest.mark.parametrize("budget_rows", [0, 3, 50])
def test_statistics_from_a_spilled_store_equal_sklearn(budget_rows):
    rows = random_rows(50, 30, seed=1)
    labels = torch.tensor([index % 3 == 0 for index in range(50)], dtype=torch.long)
    store = PooledStore(50, device_budget_bytes=budget_rows * 30 * 4)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(2)).tolist()
    for start in range(0, 50, 8):
        store.add(order[start : start + 8], rows[order[start : start + 8]])
    aurocs, mean_toxic, mean_neutral, mean_abs_neutral = neuron_statistics(store.neuron_blocks(7, torch.device("cpu")), labels)
    expected = [roc_auc_score(labels.numpy(), rows[:, neuron].numpy()) for neuron in range(30)]
    np.testing.assert_allclose(aurocs.numpy(), expected, atol=1e-6)
    torch.testing.assert_close(mean_toxic, rows[labels == 1].mean(dim=0))
    torch.testing.assert_close(mean_neutral, rows[labels == 0].mean(dim=0))
    torch.testing.assert_close(mean_abs_neutral, rows[labels == 0].abs().mean(dim=0))


def test_a_store_with_a_device_part_saves_and_resumes(tmp_path):
    rows = random_rows(6, 5)
    store = PooledStore(6, tmp_path, chunk_bytes=2 * 5 * 4, device_budget_bytes=3 * 5 * 4)
    store.add([4, 0], rows[[4, 0]])
    store.add([5, 1], rows[[5, 1]])  # the second of these spills
    again = PooledStore(6, tmp_path, device_budget_bytes=1 * 5 * 4)
    again.load_saved()
    assert again.missing() == [2, 3]
    again.add([2, 3], rows[[2, 3]])
    assert torch.equal(again.pooled(), rows)


def test_batch_plan_cuts_once_and_shares_batches_among_ranks():
    groups = [[7, 3, 5, 0, 2], [1, 6, 4]]
    assert list(BatchPlan(groups, 2)) == [[7, 3], [5, 0], [2], [1, 6], [4]]
    shares = [list(BatchPlan(groups, 2, rank, 2)) for rank in range(2)]
    assert shares == [[[7, 3], [2], [4]], [[5, 0], [1, 6]]]
    assert BatchPlan(groups, 2, 1, 2).n_examples == 4


def test_batch_plan_halves_after_running_out_of_memory():
    plan = BatchPlan([list(range(10))], 8)
    seen = []
    for batch in plan:
        if len(batch) > 3:
            assert plan.retry_smaller(batch)
            continue
        seen.append(batch)
    assert seen == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert plan.size == 2
    assert not BatchPlan([[0]], 1).retry_smaller([0])


def test_scoring_recovers_from_running_out_of_memory(loaded, labelled_jsonl):
    """A forward pass over more than two examples fails as a full GPU would; scoring halves its
    batches until they fit, and every row equals a run with batches of two."""
    examples = read_source(str(labelled_jsonl)) * 2

    def out_of_memory_beyond_two(module, args, kwargs):
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handle = loaded.model.register_forward_pre_hook(out_of_memory_beyond_two, with_kwargs=True)
    try:
        recovered = pooled_activations(loaded, examples, ScoreOptions(batch_size=16))
    finally:
        handle.remove()
    assert torch.equal(recovered, pooled_activations(loaded, examples, ScoreOptions(batch_size=2)))


def test_out_of_memory_with_one_example_is_a_clean_error(loaded, labelled_jsonl):
    from sgm_export.errors import SgmError

    def always_out_of_memory(module, args, kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    handle = loaded.model.register_forward_pre_hook(always_out_of_memory, with_kwargs=True)
    try:
        with pytest.raises(SgmError, match="out of memory on cpu with a single example.*--max-length"):
            fill_store(loaded, read_source(str(labelled_jsonl)), ScoreOptions(batch_size=4))
    finally:
        handle.remove()


def test_automatic_batch_size(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(batching, "available_host_memory", lambda: 64 << 30)
    assert auto_batch_size(cpu, 1000, tokens=128, bytes_per_token=100_000) == 64  # the CPU cap
    assert auto_batch_size(cpu, 20, tokens=128, bytes_per_token=100_000) == 16  # no more than the examples
    assert auto_batch_size(cuda, 1000, tokens=128, bytes_per_token=100_000) == 256  # halved on a GPU until it fits
    monkeypatch.setattr(batching, "available_host_memory", lambda: 100 << 20)
    assert auto_batch_size(cpu, 1000, tokens=128, bytes_per_token=100_000) == 2  # 25 MB / 12.8 MB per example
    assert auto_batch_size(cpu, 1000, tokens=4096, bytes_per_token=100_000) == 1


def test_auto_batch_size_scores_like_a_fixed_one(loaded, labelled_jsonl):
    examples = read_source(str(labelled_jsonl))
    auto = score_examples(loaded, examples, ScoreOptions(batch_size="auto"))
    fixed = score_examples(loaded, examples, ScoreOptions(batch_size=3))
    torch.testing.assert_close(torch.cat(auto.auroc), torch.cat(fixed.auroc), rtol=0, atol=0)


def test_rank_shares():
    assert neuron_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert rank_gpus(Share(rank=5, world=8, local_rank=1, local_world=4), 8) == [2, 3]
    with pytest.raises(Exception, match="only 2 GPUs"):
        rank_gpus(Share(rank=0, world=4, local_rank=0, local_world=4), 2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def scoring_data(tmp_path_factory):
    """60 labelled rows of the built-in data: enough for several batches per rank."""
    rows = [{"text": example.text, "label": 1} for example in read_builtin("rtp-toxic", "score")[:30]]
    rows += [{"text": example.text, "label": 0} for example in read_builtin("neutral", "score")[:30]]
    return write_jsonl(tmp_path_factory.mktemp("data") / "rows.jsonl", rows)


def test_two_processes_score_exactly_like_one(tiny_llama, scoring_data, tmp_path):
    """torchrun with two CPU processes on gloo: the same scores file as a single process."""
    common = ["score", str(tiny_llama), "--data", str(scoring_data), "--batch-size", "4", "--device", "cpu"]
    single = sgm(*common, "--out", tmp_path / "single")
    assert single.code == 0, single.stderr
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        "-m",
        "sgm_export",
        *map(str, common),
        "--out",
        str(tmp_path / "parallel"),
    ]
    parallel = subprocess.run(command, env=cli_env({"OMP_NUM_THREADS": "1"}), capture_output=True, text=True, timeout=600)
    assert parallel.returncode == 0, parallel.stderr
    assert "by 2 processes" in parallel.stdout
    assert parallel.stdout.count("wrote ") == 1  # rank 0 writes, rank 1 only scores
    expected = load_file(tmp_path / "single" / "scores.safetensors")
    got = load_file(tmp_path / "parallel" / "scores.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert not [path for path in os.listdir(tmp_path) if path.startswith(".")]  # no leftovers


def test_run_refuses_to_be_started_by_torchrun(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: demo\ndata: [builtin:rtp-toxic, builtin:neutral]\nout: " + str(tmp_path / "out") + "\n")
    result = sgm("run", recipe, env={"WORLD_SIZE": "2", "RANK": "1"})
    assert result.code == 2 and "torchrun" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_device_map_scores_like_a_plain_load(tiny_llama, labelled_jsonl, tmp_path):
    """On a machine without GPUs, --device-map keeps the model on the CPU and scores the same."""
    common = ["score", str(tiny_llama), "--data", str(labelled_jsonl), "--device", "cpu"]
    assert sgm(*common, "--out", tmp_path / "plain").code == 0
    mapped = sgm(*common, "--device-map", "auto", "--batch-size", "auto", "--out", tmp_path / "mapped")
    assert mapped.code == 0, mapped.stderr
    plain = load_file(tmp_path / "plain" / "scores.safetensors")
    for key, value in load_file(tmp_path / "mapped" / "scores.safetensors").items():
        torch.testing.assert_close(value, plain[key], rtol=0, atol=1e-6)
