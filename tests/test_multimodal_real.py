"""End to end with images on the LLaVA whose language model is the real Gemma-3-270M (built once
from the demo model and cached; its vision tower is tiny and random)."""

import json

import pytest
from safetensors import safe_open

from sgm_export.data.multimodal import MultimodalEncoder
from sgm_export.data.sources import read_source
from sgm_export.models.demo_llava import IMAGE_TOKEN, IMAGE_TOKENS, demo_llava_dir
from sgm_export.models.load import load_model
from tests.cli_helpers import sgm

pytestmark = pytest.mark.slow


def test_image_rows_carry_576_image_tokens_and_pool_the_answer_only():
    loaded = load_model(str(demo_llava_dir()))
    assert loaded.model.config.text_config.model_type == "gemma3_text" and len(loaded.model.model.language_model.layers) == 18
    encoder = MultimodalEncoder(loaded.processor, loaded.family, loaded.model, max_length=64)
    example = read_source("builtin:rtp-toxic-images", limit=1)[0]
    encoded = encoder.encode(example)
    image_id = loaded.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    text_ids = loaded.tokenizer(example.text, add_special_tokens=False)["input_ids"][
        : 64 - len(loaded.tokenizer(example.prompt, add_special_tokens=False)["input_ids"])
    ]
    assert encoded.input_ids.count(image_id) == IMAGE_TOKENS
    assert sum(encoded.pool_mask) == len(text_ids) and encoded.input_ids[-len(text_ids) :] == text_ids


def test_shipped_multimodal_recipe_runs_offline_end_to_end(tmp_path):
    """recipes/demo-llava.yaml as shipped, on a dozen rows: image+text scoring, all three exports
    verified (ONNX included), and an evaluation with the visual triggers split by modality."""
    out = tmp_path / "out"
    small = ["score.limit=12", "eval.limit=2", "eval.samples=1", "eval.max_new_tokens=4", "eval.neutral_limit=2", "eval.neutral_extra=[]"]
    result = sgm(
        "run", "recipes/demo-llava.yaml", "--out", out, "--set", "export.link=true", *[a for o in small for a in ("--set", o)], timeout=3600
    )
    assert result.code == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_examples"] == {"toxic": 12, "neutral": 12}
    assert len(summary["experts_per_layer"]) == 18 and summary["experts_total"] == 500
    assert set(summary["verification"]) == {"module", "folded", "onnx"}
    assert all(entry["passed"] for entry in summary["verification"].values())
    with safe_open(out / "scores" / "scores.safetensors", "pt") as scores:
        assert scores.metadata()["n_images"] == "24" and scores.metadata()["family"] == "llava"
        assert scores.get_tensor("layers.0.auroc").shape == (2048,)
    for folder in ("model", "model-folded"):
        for name in ("processor_config.json", "chat_template.jinja", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
            assert (out / folder / name).is_file(), (folder, name)
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageTextToText"] == "modeling_sgm.SgmForImageTextToText"
    assert {path.name for path in (out / "model-onnx" / "onnx").glob("*.onnx")} >= {
        "vision_encoder.onnx",
        "embed_tokens.onnx",
        "decoder_model_merged.onnx",
    }
    glasses = json.loads((out / "eval" / "report.json").read_text())["glasses"]
    assert glasses["standard"]["by_modality"].keys() == {"text"}
    for trigger in ("typographic", "beside_photo"):
        assert glasses[trigger]["overall"]["n_prompts"] == 2 and glasses[trigger]["by_modality"].keys() == {"image+text"}
    assert glasses["fluency_by_modality"].keys() == {"image+text"}
