"""Vision-language ONNX export at the graph level: tiny LLaVA, Qwen2-VL (3-D M-RoPE positions,
flattened patches, image_grid_thw) and Gemma 3 (bidirectional attention over image tokens),
built from transformers configs. ONNX Runtime (vision encoder -> embeddings with the image
features spliced in -> decoder with its KV cache) must give the logits of transformers'
`generate` on the model with hook-applied glasses, with an image in each row of a left-padded
batch.

The family rows of these models come with the multimodal issue; until then `VLM_FAMILIES` holds
the language-decoder layer path each row gives (the same for all three)."""

import numpy as np
import onnx_ir as ir
import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText

from sgm_export.apply import glasses_applied
from sgm_export.arch import Family, decoder_projections
from sgm_export.export.onnx import write_onnx_folder
from sgm_export.export.onnx.graph import find_glasses
from sgm_export.export.onnx.source import OnnxSource
from sgm_export.runtime.vision import mrope_positions
from sgm_export.runtime.vision_lm import OnnxVisionLM
from tests.test_export import random_glasses
from tests.tiny import build_tokenizer

VLM_FAMILIES = {
    name: Family(
        name=name,
        description="",
        model_types=(name,),
        auto_class="AutoModelForImageTextToText",
        layers="model.language_model.layers",
        down_proj="mlp.down_proj",
        weight_layout="out_in",
        checkpoint_keys=("model.language_model.layers.{i}.mlp.down_proj.weight",),
        multimodal=True,
    )
    for name in ("llava", "qwen2_vl", "gemma3")
}
TEXT = dict(
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=256,
    vocab_size=400,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
IMAGE, START, END = 399, 397, 396
NEW_TOKENS = 6


def tiny_vlm(model_type: str):
    """A tiny random model of `model_type`, and a left-padded batch with one image per row."""
    if model_type == "llava":
        config = AutoConfig.for_model(
            "llava",
            text_config=dict(model_type="llama", head_dim=16, **TEXT),
            vision_config=dict(
                model_type="clip_vision_model",
                hidden_size=32,
                intermediate_size=48,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=32,
                patch_size=8,
            ),
            image_token_id=IMAGE,
        )
        images = {"pixel_values": torch.randn(2, 3, 32, 32)}
        prompts = [[1, 5, 6, *[IMAGE] * 16, 7, 8, 9], [1, *[IMAGE] * 16, 10]]
    elif model_type == "gemma3":
        config = AutoConfig.for_model(
            "gemma3",
            text_config=dict(model_type="gemma3_text", head_dim=16, sliding_window=8, query_pre_attn_scalar=16, **TEXT),
            vision_config=dict(
                model_type="siglip_vision_model",
                hidden_size=32,
                intermediate_size=48,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=32,
                patch_size=4,
            ),
            mm_tokens_per_image=4,
            image_token_index=IMAGE,
            boi_token_index=START,
            eoi_token_index=END,
        )
        images = {"pixel_values": torch.randn(2, 3, 32, 32)}
        prompts = [[1, 5, 6, 7, 8, START, *[IMAGE] * 4, END, 9, 10], [1, START, *[IMAGE] * 4, END, 11]]
    else:
        config = AutoConfig.for_model(
            "qwen2_vl",
            text_config=dict(model_type="qwen2_vl_text", rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, **TEXT),
            vision_config=dict(
                depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=4, spatial_merge_size=2, temporal_patch_size=2
            ),
            image_token_id=IMAGE,
            video_token_id=398,
            vision_start_token_id=START,
            vision_end_token_id=END,
        )
        grids = torch.tensor([[1, 4, 4], [1, 4, 8]])
        images = {"pixel_values": torch.randn(48, 3 * 2 * 4 * 4), "image_grid_thw": grids}
        prompts = [[1, 5, 6, START, *[IMAGE] * 4, END, 7, 8], [1, START, *[IMAGE] * 8, END, 9]]
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model, prompts, images


def left_pad(prompts):
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    return ids, (torch.arange(width)[None] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()


@pytest.mark.parametrize("model_type", ["llava", "qwen2_vl", "gemma3"])
def test_onnx_with_an_image_matches_pytorch_with_glasses(tmp_path, model_type):
    model, prompts, images = tiny_vlm(model_type)
    family = VLM_FAMILIES[model_type]
    glasses = random_glasses([int(p.weight.shape[1]) for p in decoder_projections(model, family)])
    source_dir = tmp_path / "source"
    build_tokenizer(source_dir)
    source = OnnxSource(model, family, glasses, model.config.to_dict(), source_dir, "base", model_type)
    folder = write_onnx_folder(source, tmp_path / "onnx")
    assert sorted(p.name for p in (folder / "onnx").iterdir()) == [
        "decoder_model_merged.onnx",
        "embed_tokens.onnx",
        "sgm_onnx.json",
        "vision_encoder.onnx",
    ]
    nodes = find_glasses(ir.load(folder / "onnx" / "decoder_model_merged.onnx"))
    assert [node.values.tolist() for node in nodes] == [scale.tolist() for scale in glasses.scales]

    input_ids, attention_mask = left_pad(prompts)
    extra = {}
    if model_type == "qwen2_vl":
        extra["mm_token_type_ids"] = (input_ids == IMAGE).int()
    if model_type == "gemma3":
        extra["token_type_ids"] = (input_ids == IMAGE).long()
    with torch.no_grad():
        plain = model(input_ids=input_ids, attention_mask=attention_mask, **images, **extra).logits[:, -1]
        with glasses_applied(model, family, glasses):
            reference = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                **images,
                **extra,
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=0,
            )
    runtime = OnnxVisionLM(folder, device="cpu")
    numpy_images = {name: value.numpy() for name, value in images.items()}
    steps = list(runtime.steps(prompts, NEW_TOKENS, **numpy_images))
    assert len(steps) == NEW_TOKENS
    for step, expected in zip(steps, reference.logits):
        assert np.abs(step.logits - expected.numpy()).max() < 1e-4
    assert np.abs(plain.numpy() - reference.logits[0].numpy()).max() > 1e-3  # the glasses matter here
    generated = np.stack([step.tokens for step in steps], axis=1)
    assert generated.tolist() == reference.sequences[:, input_ids.shape[1] :].tolist()


def test_mrope_positions_equal_transformers():
    model, prompts, images = tiny_vlm("qwen2_vl")
    input_ids, attention_mask = left_pad(prompts)
    expected, deltas = model.model.get_rope_index(
        input_ids, mm_token_type_ids=(input_ids == IMAGE).int(), image_grid_thw=images["image_grid_thw"], attention_mask=attention_mask
    )
    positions, following = mrope_positions(input_ids.numpy(), attention_mask.numpy(), IMAGE, images["image_grid_thw"].numpy(), 2)
    real = attention_mask.bool().numpy()
    assert np.array_equal(positions[:, real], expected.numpy()[:, real])
    assert following.tolist() == (attention_mask.sum(-1) + deltas[:, 0]).tolist()
