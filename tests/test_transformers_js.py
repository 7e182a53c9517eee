"""The ONNX folder in transformers.js, as a user runs it: `pipeline("text-generation", folder)` and
`AutoModelForCausalLM.generate` in Node with default options must give the same greedy tokens as
the module export in transformers, for one prompt and for a left-padded batch. Vision-language
folders of the families transformers.js runs (LLaVA, Qwen2-VL, Qwen2.5-VL) must do the same from
an image with `AutoProcessor` and `AutoModelForImageTextToText`.

Runs where `node` is on PATH and `@huggingface/transformers` is installed in `$SGM_EXPORT_NODE_DIR`
(default: `.node/` in the repository, where `.ci/run` installs it); skipped otherwise. The npm
install never happens here.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sgm_export.export import export_checkpoint
from sgm_export.export.onnx.clients import TOKENIZER_CONFIG, added_special_tokens

REPO = Path(__file__).resolve().parent.parent
NODE_DIR = Path(os.environ.get("SGM_EXPORT_NODE_DIR", REPO / ".node"))
PACKAGE = NODE_DIR / "node_modules" / "@huggingface" / "transformers" / "package.json"
SCRIPT = Path(__file__).with_name("transformers_js_generate.mjs")
VISION_SCRIPT = Path(__file__).with_name("transformers_js_vision.mjs")
PROMPTS = ["you are a fool and", "the children are building a sandcastle on the"]
NEW_TOKENS = 10

needs_transformers_js = pytest.mark.skipif(
    shutil.which("node") is None or not PACKAGE.is_file(),
    reason=f"needs node and @huggingface/transformers installed in {NODE_DIR} (.ci/run installs both)",
)


def run_transformers_js(folder: Path) -> dict:
    result = subprocess.run(
        ["node", str(SCRIPT), str(NODE_DIR), str(folder), str(NEW_TOKENS), *PROMPTS],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def reference(module_dir: Path, prompts: list[str]) -> tuple[list[list[int]], list[list[int]], list[str]]:
    """Input ids, greedy sequences and their text from the module export in transformers."""
    tokenizer = AutoTokenizer.from_pretrained(module_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(module_dir, trust_remote_code=True, dtype=torch.float32)
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        sequences = model.generate(**batch, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(sequences, skip_special_tokens=True)
    return batch["input_ids"].tolist(), sequences.tolist(), texts


@needs_transformers_js
@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_transformers_js_generates_the_module_exports_tokens(onnx_export, tiny_models, tmp_path, model_type):
    folder, glasses = onnx_export(model_type)
    module_dir = export_checkpoint(str(tiny_models[model_type]), glasses, tmp_path / "module", format="module")
    assert json.loads((folder / TOKENIZER_CONFIG).read_text())["add_bos_token"] is True  # the tiny tokenizer adds <bos>
    got = run_transformers_js(folder)
    for key, prompts in (("single", PROMPTS[:1]), ("batch", PROMPTS)):
        input_ids, sequences, texts = reference(module_dir, prompts)
        assert got[key]["generate"]["input_ids"] == input_ids
        assert got[key]["generate"]["sequences"] == sequences
        assert len(sequences[0]) == len(input_ids[0]) + NEW_TOKENS  # generated every step, so every step was compared
        assert got[key]["pipeline"] == texts


def test_add_bos_token_follows_the_tokenizer(tiny_models):
    """The flag states what tokenizer.json does: stated true for a tokenizer that adds <bos>, false for one that does not."""
    from tokenizers import Tokenizer, processors

    tokenizer = Tokenizer.from_file(str(tiny_models["llama"] / "tokenizer.json"))
    config = {"bos_token": "<bos>", "eos_token": {"content": "<eos>"}}
    assert added_special_tokens(tokenizer, config) == {"add_bos_token": True, "add_eos_token": False}
    tokenizer.post_processor = processors.ByteLevel()
    assert added_special_tokens(tokenizer, config) == {"add_bos_token": False, "add_eos_token": False}


# transformers.js's own processors decide what can be compared: its LLaVA processor takes (images,
# text) and its Qwen processors (text, images); the Qwen processors tokenize a batch without
# padding, and its image-text forward rebuilds the decode mask without the left padding, so a
# batch is compared only for LLaVA, with rows of equal length. Images come at the size the
# processor keeps (no resampling), because transformers.js resizes with other filters than Pillow.
VISION_FAMILIES = {
    "llava": {"images_first": True, "rows": 2, "size": (28, 28)},
    "qwen2_vl": {"images_first": False, "rows": 1, "size": (56, 56)},
    "qwen2_5_vl": {"images_first": False, "rows": 1, "size": (56, 56)},
}
VISION_PROMPT = "What is in this picture?"


@needs_transformers_js
@pytest.mark.parametrize("model_type", sorted(VISION_FAMILIES))
def test_transformers_js_generates_from_an_image(tmp_path, model_type):
    from PIL import Image

    from sgm_export.arch import decoder_projections
    from sgm_export.data.images import neutral_image_paths
    from sgm_export.export.onnx import export_onnx
    from sgm_export.models.load import load_model
    from tests.test_export import random_glasses
    from tests.test_onnx_multimodal import reference as vision_reference
    from tests.tiny_vlm import build_tiny_vlm

    family = VISION_FAMILIES[model_type]
    base_dir = build_tiny_vlm(model_type, tmp_path / "base")
    base = load_model(str(base_dir), dtype="float32")
    glasses = random_glasses([int(p.weight.shape[1]) for p in decoder_projections(base.model, base.family)])
    module_dir = export_checkpoint(str(base_dir), glasses, tmp_path / "module", format="module")
    folder = export_onnx(str(module_dir), tmp_path / "onnx")
    images = []
    for index, photo in enumerate(neutral_image_paths()[1 : 1 + family["rows"]]):
        with Image.open(photo) as opened:
            opened.convert("RGB").resize(family["size"], Image.BICUBIC).save(tmp_path / f"image{index}.png")
        images.append(tmp_path / f"image{index}.png")
    prompts = [VISION_PROMPT] * family["rows"]
    pairs = [str(item) for pair in zip(prompts, images) for item in pair]
    command = ["node", str(VISION_SCRIPT), str(NODE_DIR), str(folder), str(NEW_TOKENS), "1" if family["images_first"] else "0", *pairs]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got.keys() == ({"single", "batch"} if family["rows"] > 1 else {"single"})
    for key, count in (("single", 1), ("batch", family["rows"])):
        if key not in got:
            continue
        inputs, expected = vision_reference(module_dir, images[:count], prompts[:count], NEW_TOKENS)
        assert got[key]["input_ids"] == inputs["input_ids"].tolist()  # chat template and image tokens as transformers lays them out
        assert got[key]["sequences"] == expected.sequences.tolist()
