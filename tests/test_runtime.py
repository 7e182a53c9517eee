"""The ONNX Runtime generation loop: no torch, greedy equal to transformers' generate, sampling
that follows its distribution and its seed, left padding, providers."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from sgm_export.apply import glasses_applied
from sgm_export.errors import SgmError
from sgm_export.models.load import load_model
from sgm_export.runtime import OnnxCausalLM, Sampling
from sgm_export.runtime.providers import execution_providers
from sgm_export.runtime.sampling import next_tokens, sampling_distribution
from sgm_export.runtime.tokenizer import left_padded

PROMPTS = ["you are a fool and", "the weather is lovely and the garden"]

BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "transformers", "onnx", "onnxscript", "onnx_ir", "safetensors", "pydantic"):
            raise ImportError(f"{name} is blocked: the runtime must not need it")
sys.meta_path.insert(0, Block())
"""


def test_left_padding_masks_and_positions():
    batch = left_padded([[5, 6, 7], [8]], pad_token_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch.position_ids.tolist() == [[0, 1, 2], [1, 1, 0]]
    with pytest.raises(ValueError):
        left_padded([[1], []], 0)


def test_greedy_generation_equals_transformers_generate(onnx_export, tiny_models):
    folder, glasses = onnx_export("gemma3_text")
    runtime = OnnxCausalLM(folder, device="cpu")
    base = load_model(str(tiny_models["gemma3_text"]), device="cpu", dtype="float32")
    batch = base.tokenizer(PROMPTS, return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad(), glasses_applied(base.model, base.family, glasses):
        expected = base.model.generate(**batch, max_new_tokens=12, do_sample=False, pad_token_id=runtime.pad_token_id)
    expected_ids = expected[:, batch["input_ids"].shape[1] :].tolist()
    assert runtime.generate_ids([runtime.tokenizer.encode(p) for p in PROMPTS], 12) == expected_ids
    assert runtime.generate(PROMPTS, 12) == [runtime.tokenizer.decode(row) for row in expected_ids]


def test_runtime_runs_with_torch_blocked(onnx_export):
    folder, _ = onnx_export("llama")
    runtime = OnnxCausalLM(folder, device="cpu")
    prompts = [runtime.tokenizer.encode(p) for p in PROMPTS]
    greedy = runtime.generate_ids(prompts, 10)
    sampled = runtime.generate_ids(prompts, 10, Sampling(do_sample=True, temperature=1.5, top_k=50, top_p=0.95, seed=7))
    script = BLOCK_TORCH + textwrap.dedent(f"""
        import json
        from sgm_export.runtime import OnnxCausalLM, Sampling
        model = OnnxCausalLM({str(folder)!r}, device="cpu")
        prompts = [model.tokenizer.encode(p) for p in {PROMPTS!r}]
        sampling = Sampling(do_sample=True, temperature=1.5, top_k=50, top_p=0.95, seed=7)
        print(json.dumps({{"greedy": model.generate_ids(prompts, 10), "sampled": model.generate_ids(prompts, 10, sampling),
                          "text": model.generate({PROMPTS!r}, 10), "modules": sorted(sys.modules)}}))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["greedy"] == greedy and result["sampled"] == sampled
    assert result["text"] == [runtime.tokenizer.decode(row) for row in greedy]
    assert not [name for name in result["modules"] if name.split(".")[0] in ("torch", "transformers")]


def test_sampling_is_seeded_and_differs_from_greedy(onnx_export):
    folder, _ = onnx_export("llama")
    runtime = OnnxCausalLM(folder, device="cpu")
    prompts = [runtime.tokenizer.encode(p) for p in PROMPTS]
    hot = Sampling(do_sample=True, temperature=3.0, seed=1)
    first = runtime.generate_ids(prompts, 15, hot)
    assert runtime.generate_ids(prompts, 15, hot) == first
    assert runtime.generate_ids(prompts, 15, Sampling(do_sample=True, temperature=3.0, seed=2)) != first
    assert runtime.generate_ids(prompts, 15, Sampling(do_sample=True, top_k=1, seed=3)) == runtime.generate_ids(prompts, 15)


def test_greedy_is_argmax_and_cuts_leave_the_best_token():
    logits = np.random.default_rng(0).normal(size=(3, 50))
    rng = np.random.default_rng(0)
    assert next_tokens(logits, Sampling(), rng).tolist() == logits.argmax(-1).tolist()
    assert next_tokens(logits, Sampling(do_sample=True, top_k=1), rng).tolist() == logits.argmax(-1).tolist()
    assert next_tokens(logits, Sampling(do_sample=True, top_p=1e-6), rng).tolist() == logits.argmax(-1).tolist()


def test_sampling_distribution_matches_an_independent_computation():
    logits = np.random.default_rng(1).normal(size=(1, 30)) * 2
    settings = Sampling(do_sample=True, temperature=0.7, top_k=10, top_p=0.8)
    # Independent: sort once, cut at k, softmax, keep the nucleus, renormalise.
    order = np.argsort(-logits[0])
    top = order[:10]
    p = np.exp(logits[0, top] / 0.7 - (logits[0, top] / 0.7).max())
    p /= p.sum()
    keep = top[: int(np.searchsorted(np.cumsum(p), 0.8) + 1)]
    expected = np.zeros(30)
    q = np.exp(logits[0, keep] / 0.7 - (logits[0, keep] / 0.7).max())
    expected[keep] = q / q.sum()
    assert np.allclose(sampling_distribution(logits, settings)[0], expected)


def test_samples_follow_the_distribution():
    logits = np.array([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])
    settings = Sampling(do_sample=True, temperature=1.3, top_k=4)
    rng = np.random.default_rng(123)
    draws = np.concatenate([next_tokens(np.repeat(logits, 1000, axis=0), settings, rng) for _ in range(20)])
    frequencies = np.bincount(draws, minlength=6) / draws.size
    expected = sampling_distribution(logits, settings)[0]
    assert frequencies[4:].sum() == 0  # cut by top-k
    assert np.abs(frequencies - expected).max() < 0.01  # 20,000 draws: standard error below 0.004


@pytest.mark.parametrize("settings", [dict(temperature=0.0), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5)])
def test_invalid_sampling_settings(settings):
    with pytest.raises(ValueError):
        Sampling(do_sample=True, **settings)


def test_providers():
    assert execution_providers("cpu") == ["CPUExecutionProvider"]
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert execution_providers("auto")[0] == "CUDAExecutionProvider"
    else:
        assert execution_providers("auto") == ["CPUExecutionProvider"]
        with pytest.raises(SgmError, match="onnxruntime-gpu"):
            execution_providers("cuda")
