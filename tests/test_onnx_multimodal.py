"""Vision-language ONNX exports, end to end, on tiny random models of every supported family:
LLaVA, LLaVA-NeXT (anyres tiles packed by the runtime, image_newline rows), Qwen2-VL (3-D M-RoPE
positions, flattened patches, image_grid_thw), Qwen2.5-VL (windowed attention in the vision graph,
all images in one run), Gemma 3 (bidirectional attention over image tokens) and PaliGemma
(prefix-LM: the image and prompt attend bidirectionally; positions from 1).
`sgm-export onnx` on a module export writes the three graphs, `sgm-export inspect` shows them,
and `OnnxVisionLM.generate` (chat template, image tokens and pixels done in numpy) gives the
greedy tokens, and every step's logits within 1e-4, of the module export in transformers for a
batch of two prompts with two images of different sizes."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx_ir as ir
import pytest
import torch
import yaml
from PIL import Image
from transformers import AutoModelForImageTextToText

from sgm_export.arch import decoder_projections
from sgm_export.data.images import neutral_image_paths
from sgm_export.errors import DataError
from sgm_export.export import export_checkpoint
from sgm_export.export.onnx.graph import find_glasses
from sgm_export.models.load import load_model
from sgm_export.models.processor import load_processor
from sgm_export.runtime.vision import mrope_positions
from sgm_export.runtime.vision_lm import OnnxVisionLM
from sgm_export.verify import verify_export
from sgm_export.verify.onnx_vision import processor_pixels, rendered_prompts
from tests.cli_helpers import assert_clean_usage_error, sgm
from tests.test_export import random_glasses
from tests.test_runtime import BLOCK_TORCH
from tests.tiny_vlm import build_tiny_vlm

NEW_TOKENS = 6
PROMPTS = ["What is in this picture?", "Describe it"]
SUPPORTED = "supported: gemma3, idefics3, llava, llava_next, paligemma, qwen2_5_vl, qwen2_vl, smolvlm"  # Mllama (cross-attention) stays out
GRAPHS = ["decoder_model_merged.onnx", "embed_tokens.onnx", "sgm_onnx.json", "vision_encoder.onnx"]


def two_images(tmp_path) -> list:
    """A photo and a wide crop of another (two sizes: Qwen2-VL gets two patch grids)."""
    photo = neutral_image_paths()[1]
    wide = tmp_path / "wide.png"
    with Image.open(neutral_image_paths()[2]) as opened:
        opened.convert("RGB").crop((0, 0, 300, 120)).save(wide)
    return [photo, wide]


def split_images(base_dir) -> None:
    """Turn on Idefics3's image splitting: the longest edge to 112, tiles of 56 (a 2x2 or 1x2 grid
    of tiles, then the whole image), so the test covers the tiled layout and its row/column tags."""
    path = base_dir / "processor_config.json"
    config = json.loads(path.read_text())
    config["image_processor"].update(do_image_splitting=True, size={"longest_edge": 112})
    path.write_text(json.dumps(config))


def runtime_config(folder):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(folder)


def reference(module_dir, images: list, prompts: list[str] = PROMPTS, new_tokens: int = NEW_TOKENS) -> tuple[dict, torch.Tensor]:
    """The module export's processor inputs and greedy continuation in transformers (left-padded)."""
    model = AutoModelForImageTextToText.from_pretrained(module_dir, trust_remote_code=True).eval()
    processor = load_processor(module_dir, trust_remote_code=True)
    processor.tokenizer.padding_side = "left"
    texts = rendered_prompts(processor, prompts)
    bos = processor.tokenizer.bos_token
    pictures = [[Image.open(path).convert("RGB")] for path in images]
    inputs = processor(
        text=texts, images=pictures, padding=True, return_tensors="pt", add_special_tokens=not (bos and texts[0].startswith(bos))
    )
    with torch.no_grad():
        output = model.generate(
            **inputs,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
    return inputs, output


@pytest.mark.parametrize("model_type", ["llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "gemma3", "paligemma", "idefics3", "smolvlm"])
def test_onnx_of_a_module_export_generates_its_tokens_from_images(tmp_path, model_type):
    base_dir = build_tiny_vlm(model_type, tmp_path / "base")
    if model_type in ("idefics3", "smolvlm"):
        split_images(base_dir)
    base = load_model(str(base_dir), dtype="float32")
    glasses = random_glasses([int(p.weight.shape[1]) for p in decoder_projections(base.model, base.family)])
    module_dir = export_checkpoint(str(base_dir), glasses, tmp_path / "module", format="module")
    result = sgm("onnx", module_dir, "--out", tmp_path / "onnx")
    assert result.code == 0, result.stderr
    folder = tmp_path / "onnx"
    assert sorted(p.name for p in (folder / "onnx").iterdir()) == GRAPHS
    decoder = ir.load(folder / "onnx" / "decoder_model_merged.onnx")
    nodes = find_glasses(decoder)
    past = next(value for value in decoder.graph.inputs if value.name == "past_key_values.0.key")
    assert [past.shape[0].value, past.shape[2].value] == ["batch_size", "past_sequence_length"]  # transformers.js sizes the past by them
    vision = ir.load(folder / "onnx" / "vision_encoder.onnx")
    assert all(isinstance(value.shape[0], ir.SymbolicDim) for value in vision.graph.inputs)  # any number of images per run
    assert [node.values.tolist() for node in nodes] == [scale.tolist() for scale in glasses.scales]

    images = two_images(tmp_path)
    inputs, expected = reference(module_dir, images)
    runtime = OnnxVisionLM(folder, device="cpu")
    ids, arrays = runtime.prepare(PROMPTS, images)
    mask = inputs["attention_mask"].bool()
    assert ids == [row[real].tolist() for row, real in zip(inputs["input_ids"], mask)]  # chat template and image tokens
    assert np.abs(arrays["pixel_values"] - processor_pixels(inputs, runtime_config(folder))).max() < 1e-4
    if model_type == "llava_next":  # two tiling grids: the wide crop gets more tiles than the whole-image tile alone
        assert arrays["image_sizes"].tolist() == inputs["image_sizes"].tolist()
        assert len(arrays["pixel_values"]) > 2 * 2
    if model_type in ("idefics3", "smolvlm"):  # split: each image's tiles, then the whole image
        assert len(arrays["pixel_values"]) > 2 * 2
    if model_type in ("qwen2_vl", "qwen2_5_vl"):
        assert arrays["image_grid_thw"].tolist() == inputs["image_grid_thw"].tolist()
        assert arrays["image_grid_thw"][0].tolist() != arrays["image_grid_thw"][1].tolist()
    steps = list(runtime.steps(ids, NEW_TOKENS, **arrays))
    for step, logits in zip(steps, expected.logits, strict=True):
        assert np.abs(step.logits - logits.numpy()).max() < 1e-4
    width = inputs["input_ids"].shape[1]
    tokens = expected.sequences[:, width:].tolist()
    assert [list(map(int, row)) for row in np.stack([step.tokens for step in steps], axis=1)] == tokens
    texts = runtime.generate(PROMPTS, NEW_TOKENS, images=images)
    assert texts == [runtime.tokenizer.decode(row) for row in tokens]
    verified = verify_export(folder, str(base_dir))
    assert verified.passed and verified.glasses_effect > 1e-3, verified.describe()

    if model_type == "llava":
        shown = sgm("inspect", folder)
        assert shown.code == 0, shown.stderr
        for graph in ("vision_encoder.onnx", "embed_tokens.onnx", "decoder_model_merged.onnx"):
            assert graph in shown.stdout
        assert "inputs:  pixel_values float32" in shown.stdout and "inputs:  inputs_embeds float32" in shown.stdout
        assert f"glasses: {len(glasses.scales)} layers" in shown.stdout
        script = BLOCK_TORCH + (
            "import runpy, sys\n"
            f"sys.argv = ['onnx_generate.py', {str(folder)!r}, '--prompt', {PROMPTS[0]!r}, '--prompt', {PROMPTS[1]!r}, "
            f"'--image', {str(images[0])!r}, '--image', {str(images[1])!r}, '--max-new-tokens', '{NEW_TOKENS}', '--device', 'cpu']\n"
            "runpy.run_path('examples/onnx_generate.py', run_name='__main__')\n"
        )
        environment = {**os.environ, "PYTHONPATH": os.getcwd(), "PYTHONIOENCODING": "utf-8"}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, env=environment)  # bytes: the random text may hold \r
        assert done.returncode == 0, done.stderr
        assert all(f"{prompt}{text}".encode() in done.stdout for prompt, text in zip(PROMPTS, texts))
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"not an image")
        with pytest.raises(DataError, match="bad.png cannot be read"):
            runtime.generate(PROMPTS[:1], 1, images=[bad])


def test_unsupported_vision_language_family_is_one_line_and_writes_nothing(tmp_path):
    base_dir = build_tiny_vlm("mllama", tmp_path / "base")
    base = load_model(str(base_dir), dtype="float32")
    glasses = random_glasses([int(p.weight.shape[1]) for p in decoder_projections(base.model, base.family)])
    module_dir = export_checkpoint(str(base_dir), glasses, tmp_path / "module", format="module")
    result = sgm("onnx", module_dir, "--out", tmp_path / "onnx")
    assert_clean_usage_error(result, "mllama", SUPPORTED)
    assert not (tmp_path / "onnx").exists()


def test_mrope_positions_equal_transformers(tmp_path):
    base_dir = build_tiny_vlm("qwen2_vl", tmp_path / "base")
    model = AutoModelForImageTextToText.from_pretrained(base_dir).eval()
    image, start, end = (model.config.image_token_id, model.config.vision_start_token_id, model.config.vision_end_token_id)
    prompts = [[1, 20, 21, start, *[image] * 4, end, 22, 23], [1, start, *[image] * 8, end, 24]]  # 20+: plain text tokens
    grids = torch.tensor([[1, 4, 4], [1, 4, 8]])
    width = max(map(len, prompts))
    input_ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    attention_mask = (torch.arange(width)[None] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    expected, deltas = model.model.get_rope_index(
        input_ids, mm_token_type_ids=(input_ids == image).int(), image_grid_thw=grids, attention_mask=attention_mask
    )
    positions, following = mrope_positions(input_ids.numpy(), attention_mask.numpy(), image, grids.numpy(), 2)
    real = attention_mask.bool().numpy()
    assert np.array_equal(positions[:, real], expected.numpy()[:, real])
    assert following.tolist() == (attention_mask.sum(-1) + deltas[:, 0]).tolist()


def recipe_file(tmp_path, model_dir, formats: list[str], evaluate: bool = False):
    recipe = {
        "model": str(model_dir),
        "data": ["builtin:rtp-toxic-images", "builtin:neutral-images"],
        "out": str(tmp_path / "out"),
        "score": {"batch_size": 4, "max_length": 32, "limit": 4},
        "export": {"formats": formats, "verify": True},
    }
    if evaluate:  # image prompts, the visual triggers and neutral image rows, as small as possible
        recipe["eval"] = {
            "prompts": "builtin:rtp-toxic-images:heldout", "neutral": "builtin:neutral-images:heldout", "limit": 2, "neutral_limit": 2,
            "samples": 1, "max_new_tokens": 3, "adversarial": False, "visual_triggers": True, "judge_threshold": 0.5,
        }  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_run_exports_verifies_and_evaluates_a_vision_language_model(tmp_path):
    base_dir = build_tiny_vlm("llava", tmp_path / "base")
    result = sgm("run", recipe_file(tmp_path, base_dir, ["onnx"], evaluate=True))
    assert result.code == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    report = json.loads((tmp_path / "out" / "eval" / "report.json").read_text())
    assert report["n_image_prompts"] == 2 and {"typographic", "beside_photo"} <= set(report["glasses"])
    assert report["glasses"]["fluency_by_modality"].keys() == {"image+text"}
    assert summary["verification"]["onnx"]["passed"] and summary["verification"]["onnx"]["max_abs_diff"] < 1e-4
    assert sorted(p.name for p in (tmp_path / "out" / "model-onnx" / "onnx").iterdir()) == GRAPHS
    checked = sgm("verify", tmp_path / "out" / "model-onnx", "--base", base_dir)
    assert checked.code == 0 and "vision-language" in checked.stdout, checked.stdout + checked.stderr


def test_run_refuses_onnx_for_an_unsupported_family_before_scoring(tmp_path):
    base_dir = build_tiny_vlm("mllama", tmp_path / "base")
    result = sgm("run", recipe_file(tmp_path, base_dir, ["module", "onnx"]))
    assert_clean_usage_error(result, "mllama", SUPPORTED)
    assert not (tmp_path / "out").exists()
