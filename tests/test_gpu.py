"""The CUDA path of scoring, checked on a machine with a GPU (skipped elsewhere).

`benchmarks/gpu_check.sh` runs these on a lent GPU with the tiny model and data that
`benchmarks/gpu_prepare.py` wrote into `.gpu/` (`SGM_GPU_WORK` names the folder); on a GPU
machine with the built-in data installed they also run from scratch, like any test.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sgm_export.data.sources import read_source
from sgm_export.models.load import load_model
from sgm_export.options import ScoreOptions
from sgm_export.score.auroc import auroc
from sgm_export.score.runner import score_examples
from sgm_export.score.store import PooledStore

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: run benchmarks/gpu_check.sh on one")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with `tiny/` (a tiny Llama with its tokenizer) and `data.jsonl` (labelled rows)."""
    given = os.environ.get("SGM_GPU_WORK")
    if given:
        return Path(given)
    from benchmarks.gpu_prepare import write_data, write_tiny_model

    folder = tmp_path_factory.mktemp("gpu-work")
    write_tiny_model(folder / "tiny")
    write_data(folder / "data.jsonl", 256)
    return folder


@pytest.fixture(scope="module")
def examples(work):
    return read_source(str(work / "data.jsonl"))


def scores_on(work, examples, device: str, dtype: str = "float32", **options) -> torch.Tensor:
    loaded = load_model(str(work / "tiny"), device=device, dtype=dtype, device_map=options.pop("device_map", None))
    store = None
    if "store_rows" in options:
        width = sum(int(layer.mlp.down_proj.weight.shape[1]) for layer in loaded.model.model.layers)
        store = PooledStore(len(examples), device=loaded.device, device_budget_bytes=options.pop("store_rows") * width * 4)
    scores = score_examples(loaded, examples, ScoreOptions(batch_size=16, **options), store)
    return torch.cat(scores.auroc)


def test_cuda_scores_equal_cpu_scores(work, examples):
    """float32 on the GPU and on the CPU: activations differ in the last bits at most, so an AUROC
    moves only where two examples swap places, by a few 1/(positives x negatives)."""
    on_gpu, on_cpu = scores_on(work, examples, "cuda"), scores_on(work, examples, "cpu")
    one_swap = 1 / (sum(e.label for e in examples) * sum(1 - e.label for e in examples))
    difference = (on_gpu - on_cpu).abs()
    assert float(difference.max()) <= 8 * one_swap
    assert float((difference == 0).float().mean()) > 0.95


def test_a_spilling_store_gives_the_same_scores(work, examples):
    """Rows beyond the GPU budget go to host memory; the scores do not change at all."""
    assert torch.equal(scores_on(work, examples, "cuda", store_rows=10), scores_on(work, examples, "cuda", store_rows=10_000))


def test_device_map_gives_the_same_scores(work, examples):
    torch.testing.assert_close(scores_on(work, examples, "cuda", device_map="auto"), scores_on(work, examples, "cuda"), rtol=0, atol=1e-6)


def test_bfloat16_forward_passes_keep_float32_statistics(work, examples):
    """bf16 activations are coarser, so AUROCs move a little; the strong experts stay."""
    bf16, fp32 = scores_on(work, examples, "cuda", "bfloat16"), scores_on(work, examples, "cpu")
    assert float((bf16 - fp32).abs().max()) < 0.05
    top = fp32.topk(20).indices
    assert float((bf16[top] > 0.5).float().mean()) == 1.0


def test_auroc_on_the_gpu_equals_the_cpu_path():
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(500, 3000, generator=generator)
    values[:, :300] = values[:, :300].round()  # ties
    labels = (torch.rand(500, generator=generator) < 0.4).long()
    np.testing.assert_array_equal(auroc(values.cuda(), labels).numpy(), auroc(values, labels).numpy())
