"""Tiny random vision-language models of every supported family, built offline from configs.

Each gets the tiny BPE tokenizer of `tests/tiny.py` with the special tokens its processor needs,
a processor built from the family's own classes (Pillow image processors, a chat template in the
family's style) and a model with a one- or two-layer vision tower on 28x28 or 56x56 images, so
that a handful of image tokens go through a two-layer language decoder.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedTokenizerFast

from sgm_export.models.processor import images_only
from tests.tiny import HIDDEN, INTERMEDIATE, LAYERS, build_tokenizer, perturb

PATCH = 14
VISION = dict(hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2)


def chat_template(bos: str, user: str, image: str, end_of_turn: str, assistant: str) -> str:
    """A Jinja chat template in a family's style: user turns with images and text, then the
    assistant header when a generation prompt is asked for."""
    parts = {"BOS": bos, "USER": user, "IMAGE": image, "EOT": end_of_turn, "ASSISTANT": assistant}
    template = (
        "{{ BOS }}{% for message in messages %}{% if message.role == 'user' %}{{ USER }}{% endif %}"
        "{% for part in message.content %}{% if part.type == 'image' %}{{ IMAGE }}{% else %}{{ part.text }}{% endif %}{% endfor %}"
        "{{ EOT }}{% endfor %}{% if add_generation_prompt %}{{ ASSISTANT }}{% endif %}"
    )
    for name, value in parts.items():
        template = template.replace("{{ " + name + " }}", "{{ " + repr(value) + " }}")
    return template


def text_config(tokenizer: PreTrainedTokenizerFast, **overrides: Any) -> dict:
    config = dict(
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=512,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config.update(overrides)
    return config


def token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    return tokenizer.convert_tokens_to_ids(token)


MROPE = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
QWEN_SPECIALS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
QWEN_TEMPLATE = chat_template(
    "", "<|im_start|>user\n", "<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|>\n", "<|im_start|>assistant\n"
)
IDEFICS_SPECIALS = ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>")
IDEFICS_TEMPLATE = chat_template("<bos>", "User:", "<image>", "<end_of_utterance>\n", "Assistant:")


def _llava_processor(tokenizer):
    image_processor = transformers.CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    template = chat_template("<bos>", "USER: ", "<image>\n", " ", "ASSISTANT:")
    return transformers.LlavaProcessor(
        image_processor,
        tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=template,
    )


def _llava_config(tokenizer):
    vision = dict(model_type="clip_vision_model", image_size=28, patch_size=PATCH, projection_dim=16, **VISION)
    return dict(
        text_config=dict(model_type="llama", **text_config(tokenizer)),
        vision_config=vision,
        image_token_index=token_id(tokenizer, "<image>"),
    )


def _llava_next_processor(tokenizer):
    image_processor = transformers.LlavaNextImageProcessorPil(
        size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}, image_grid_pinpoints=[[28, 28], [28, 56], [56, 28]]
    )
    template = chat_template("<bos>", "[INST] ", "<image>\n", " [/INST]", "")
    return transformers.LlavaNextProcessor(
        image_processor,
        tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=template,
    )


def _llava_next_config(tokenizer):
    config = _llava_config(tokenizer)
    config["image_grid_pinpoints"] = [[28, 28], [28, 56], [56, 28]]
    return config


def _qwen_processor(processor_class):
    def build(tokenizer):
        image_processor = transformers.Qwen2VLImageProcessorPil(
            size={"shortest_edge": 56 * 56, "longest_edge": 56 * 56}, patch_size=PATCH, merge_size=2, temporal_patch_size=2
        )
        return images_only(processor_class)(image_processor, tokenizer, None, chat_template=QWEN_TEMPLATE)

    return build


def _qwen_ids(tokenizer) -> dict:
    return dict(
        image_token_id=token_id(tokenizer, "<|image_pad|>"),
        video_token_id=token_id(tokenizer, "<|video_pad|>"),
        vision_start_token_id=token_id(tokenizer, "<|vision_start|>"),
        vision_end_token_id=token_id(tokenizer, "<|vision_end|>"),
    )


def _qwen2_vl_config(tokenizer):
    vision = dict(
        depth=1, embed_dim=16, hidden_size=HIDDEN, num_heads=2, mlp_ratio=2, patch_size=PATCH, spatial_merge_size=2, temporal_patch_size=2
    )
    return dict(text_config=text_config(tokenizer, rope_parameters=MROPE), vision_config=vision, **_qwen_ids(tokenizer))


def _qwen2_5_vl_config(tokenizer):
    # Two vision blocks, each with its own mlp.down_proj: they must stay out of the scored layers.
    vision = dict(
        depth=2,
        hidden_size=16,
        intermediate_size=24,
        num_heads=2,
        out_hidden_size=HIDDEN,
        patch_size=PATCH,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=56,
        fullatt_block_indexes=[1],
    )
    return dict(text_config=text_config(tokenizer, rope_parameters=MROPE), vision_config=vision, **_qwen_ids(tokenizer))


def _idefics3_processor(tokenizer):
    image_processor = transformers.Idefics3ImageProcessorPil(
        size={"longest_edge": 56}, max_image_size={"longest_edge": 56}, do_image_splitting=False
    )
    return transformers.Idefics3Processor(image_processor, tokenizer, image_seq_len=4, chat_template=IDEFICS_TEMPLATE)


def _smolvlm_processor(tokenizer):
    image_processor = transformers.SmolVLMImageProcessorPil(
        size={"longest_edge": 56}, max_image_size={"longest_edge": 56}, do_image_splitting=False
    )
    return images_only(transformers.SmolVLMProcessor)(image_processor, tokenizer, None, image_seq_len=4, chat_template=IDEFICS_TEMPLATE)


def _idefics3_config(tokenizer):
    vision = dict(image_size=56, patch_size=PATCH, **VISION)
    return dict(
        text_config=dict(model_type="llama", **text_config(tokenizer)),
        vision_config=vision,
        image_token_id=token_id(tokenizer, "<image>"),
        scale_factor=2,
    )


def _gemma3_processor(tokenizer):
    image_processor = transformers.Gemma3ImageProcessorPil(size={"height": 28, "width": 28})
    template = chat_template("<bos>", "<start_of_turn>user\n", "<start_of_image>", "<end_of_turn>\n", "<start_of_turn>model\n")
    return transformers.Gemma3Processor(image_processor, tokenizer, image_seq_length=4, chat_template=template)


def _gemma3_config(tokenizer):
    vision = dict(image_size=28, patch_size=PATCH, **VISION)
    return dict(
        text_config=text_config(tokenizer, sliding_window=16, query_pre_attn_scalar=16),
        vision_config=vision,
        mm_tokens_per_image=4,
        boi_token_index=token_id(tokenizer, "<start_of_image>"),
        eoi_token_index=token_id(tokenizer, "<end_of_image>"),
        image_token_index=token_id(tokenizer, "<image_soft_token>"),
    )


def _paligemma_processor(tokenizer):
    image_processor = transformers.SiglipImageProcessorPil(size={"height": 28, "width": 28})
    image_processor.image_seq_length = 4
    return transformers.PaliGemmaProcessor(image_processor, tokenizer)


def _paligemma_config(tokenizer):
    vision = dict(image_size=28, patch_size=PATCH, projection_dim=HIDDEN, **VISION)
    return dict(
        text_config=dict(model_type="gemma", **text_config(tokenizer)),
        vision_config=vision,
        image_token_index=token_id(tokenizer, "<image>"),
        vocab_size=len(tokenizer),
        projection_dim=HIDDEN,
        hidden_size=HIDDEN,
    )


def _mllama_processor(tokenizer):
    image_processor = transformers.MllamaImageProcessorPil(size={"height": 28, "width": 28}, max_image_tiles=2)
    template = chat_template(
        "<bos>",
        "<|start_header_id|>user<|end_header_id|>\n\n",
        "<|image|>",
        "<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    )
    return transformers.MllamaProcessor(image_processor, tokenizer, chat_template=template)


def _mllama_config(tokenizer):
    # Three decoder layers, the middle one a cross-attention layer (it has an MLP too, and is scored).
    text = text_config(
        tokenizer, num_hidden_layers=3, cross_attention_layers=[1], rope_parameters={"rope_type": "default", "rope_theta": 10000.0}
    )
    vision = dict(
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=2,
        num_global_layers=1,
        num_attention_heads=2,
        vision_output_dim=32,
        image_size=28,
        patch_size=PATCH,
        max_num_tiles=2,
        intermediate_layers_indices=[0],
        supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
    )
    return dict(text_config=text, vision_config=vision, image_token_index=token_id(tokenizer, "<|image|>"))


@dataclass(frozen=True)
class TinyVlm:
    """How to build one family's tiny model: tokens, processor and config."""

    specials: tuple[str, ...]
    named_tokens: dict[str, str]
    processor: Callable[[PreTrainedTokenizerFast], Any]
    config: Callable[[PreTrainedTokenizerFast], dict]
    image_token: str


VLM_FAMILIES = {
    "llava": TinyVlm(("<image>",), {"image_token": "<image>"}, _llava_processor, _llava_config, "<image>"),
    "llava_next": TinyVlm(("<image>",), {"image_token": "<image>"}, _llava_next_processor, _llava_next_config, "<image>"),
    "qwen2_vl": TinyVlm(QWEN_SPECIALS, {}, _qwen_processor(transformers.Qwen2VLProcessor), _qwen2_vl_config, "<|image_pad|>"),
    "qwen2_5_vl": TinyVlm(QWEN_SPECIALS, {}, _qwen_processor(transformers.Qwen2_5_VLProcessor), _qwen2_5_vl_config, "<|image_pad|>"),
    "idefics3": TinyVlm(IDEFICS_SPECIALS, {}, _idefics3_processor, _idefics3_config, "<image>"),
    "smolvlm": TinyVlm(IDEFICS_SPECIALS, {}, _smolvlm_processor, _idefics3_config, "<image>"),
    "gemma3": TinyVlm(
        ("<start_of_image>", "<end_of_image>", "<image_soft_token>", "<start_of_turn>", "<end_of_turn>"),
        {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
        _gemma3_processor,
        _gemma3_config,
        "<image_soft_token>",
    ),
    "paligemma": TinyVlm(("<image>",), {"image_token": "<image>"}, _paligemma_processor, _paligemma_config, "<image>"),
    "mllama": TinyVlm(
        ("<|image|>", "<|python_tag|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        {},
        _mllama_processor,
        _mllama_config,
        "<|image|>",
    ),
}


def build_tiny_vlm(model_type: str, out_dir: Path, seed: int = 0) -> Path:
    """Save a tiny random vision-language model of `model_type` with its processor into `out_dir`."""
    spec = VLM_FAMILIES[model_type]
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(None, spec.specials, **spec.named_tokens)
    processor = spec.processor(tokenizer)  # some processors add tokens: the config sees the final vocabulary
    processor.save_pretrained(out_dir)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(AutoConfig.for_model(model_type, **spec.config(processor.tokenizer)))
    perturb(model)
    model.save_pretrained(out_dir)
    return out_dir
