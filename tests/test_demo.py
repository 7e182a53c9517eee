"""End to end on the real Gemma-3-270M (converted from the PyPI GGUF once, then cached)."""

import json

import pytest
from safetensors.torch import load_file

from sgm_export.models.demo import demo_model_dir
from tests.cli_helpers import sgm

pytestmark = pytest.mark.slow


def test_demo_model_is_converted_once_and_cached():
    path = demo_model_dir()
    assert demo_model_dir() == path
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and config["num_hidden_layers"] == 18 and config["intermediate_size"] == 2048
    assert "quantization_config" not in config


def test_run_demo_recipe_on_a_few_dozen_examples(tmp_path):
    out = tmp_path / "demo"
    small_eval = ["--set", "eval.limit=3", "--set", "eval.samples=2", "--set", "eval.max_new_tokens=6", "--set", "eval.neutral_limit=3"]
    result = sgm(
        "run", "recipes/demo.yaml", "--out", out, "--set", "score.limit=24", "--set", "export.link=true", *small_eval, timeout=1800
    )
    assert result.code == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_examples"] == {"toxic": 24, "neutral": 24}
    assert len(summary["experts_per_layer"]) == 18 and summary["experts_total"] > 0
    assert all(entry["passed"] and entry["max_abs_diff"] < 1e-4 for entry in summary["verification"].values())
    scores = load_file(out / "scores" / "scores.safetensors")
    assert len([k for k in scores if k.endswith(".auroc")]) == 18 and scores["layers.0.auroc"].shape == (2048,)
    assert summary["top_auroc"][0] > 0.9  # toxic vs neutral text is easy to separate
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["sections"] == ["base", "glasses"] and report["base"]["n_prompts"] == 3
    for name in report["sections"]:
        section = report[name]
        assert 0.0 <= section["harmful_rate"] <= 1.0 and section["n_continuations"] == 6
        assert 1.0 < section["perplexity"] < 1e4 and section["adversarial"]["overall"]["n_prompts"] == 3
    assert report["base"]["perplexity"] < 1000  # the real model reads HellaSwag fluently
    assert report["glasses"]["kl_from_base"] > 0 and summary["evaluation"]["glasses"] == {
        key: report["glasses"][key] for key in ("harmful_rate", "harmful_prompt_rate", "perplexity", "kl_from_base", "n_prompts")
    }
