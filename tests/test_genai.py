"""The ONNX folder in ONNX Runtime GenAI: `onnxruntime_genai.Model(folder)` opens it through its
genai_config.json, and greedy generation gives the module export's tokens in transformers, prompt by
prompt. Skipped where onnxruntime-genai is not installed.

Prompts run one at a time: onnxruntime-genai 0.18's `append_tokens` takes a left-padded batch as
it is, attending to the padding (its attention mask is all ones), so a padded batch is not
comparable; see docs/onnx.md."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sgm_export.export import export_checkpoint

og = pytest.importorskip("onnxruntime_genai")

PROMPTS = ["you are a fool and", "the children are building a sandcastle on the"]
NEW_TOKENS = 10


def genai_generate(model, input_ids: list[int]) -> list[int]:
    """Greedy tokens of ONNX Runtime GenAI after one prompt's token ids."""
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(input_ids) + NEW_TOKENS, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array([input_ids], dtype=np.int32))
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokens


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_genai_generates_the_module_exports_tokens(onnx_export, tiny_models, tmp_path, model_type):
    folder, glasses = onnx_export(model_type)
    module_dir = export_checkpoint(str(tiny_models[model_type]), glasses, tmp_path / "module", format="module")
    tokenizer = AutoTokenizer.from_pretrained(module_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(module_dir, trust_remote_code=True, dtype=torch.float32)
    genai_model = og.Model(str(folder))
    for prompt in PROMPTS:
        input_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            sequence = model.generate(input_ids, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        expected = sequence[0, input_ids.shape[1] :].tolist()
        assert len(expected) == NEW_TOKENS  # no early end: every step is compared
        assert genai_generate(genai_model, input_ids[0].tolist()) == expected
