"""A LLaVA whose language model carries the real Gemma-3-270M weights, for realistic multimodal runs.

No real vision-language model is available offline, so this one is assembled: the LLaVA-1.5
geometry (a CLIP tower on 336x336 images with 14-pixel patches, so 576 image tokens, and an MLP
projector) with a tiny random tower (one layer, width 32), and the demo's Gemma-3-270M as the
language decoder. The image features are noise to Gemma, but every image token runs through the
real decoder, so costs and masks are those of a real LLaVA-1.5-style model. It is built once
into the sgm-export cache (about 1 GB) and reused.
"""

import json
from pathlib import Path

import torch

from sgm_export.models.cache import cache_root
from sgm_export.models.demo import demo_model_dir
from sgm_export.outputs import atomic_dir
from tests.tiny_vlm import chat_template

IMAGE_TOKEN = "<unused0>"  # a reserved token of Gemma's vocabulary stands for the image
IMAGE_SIZE = 336
PATCH = 14
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2  # 576, as LLaVA-1.5
_READY_MARK = ".sgm_llava_gemma.json"
_FORMAT = 1


def llava_gemma_dir() -> Path:
    """The assembled model, building it first if the cache does not have it yet."""
    target = cache_root() / "models" / "llava-gemma-3-270m"
    mark = target / _READY_MARK
    if mark.is_file() and json.loads(mark.read_text(encoding="utf-8")).get("format") == _FORMAT:
        return target
    with atomic_dir(target, force=True) as staging:
        _build(staging)
    return target


def _build(staging: Path) -> None:
    import transformers

    gemma_dir = demo_model_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gemma_dir)
    template = chat_template("<bos>", "<start_of_turn>user\n", IMAGE_TOKEN + "\n", "<end_of_turn>\n", "<start_of_turn>model\n")
    image_processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = transformers.LlavaProcessor(
        image_processor,
        tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
        chat_template=template,
    )
    gemma = transformers.AutoModelForCausalLM.from_pretrained(gemma_dir, dtype=torch.float32)
    vision = dict(
        model_type="clip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        projection_dim=32,
    )
    config = transformers.LlavaConfig(
        text_config=gemma.config.to_dict(),
        vision_config=vision,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=IMAGE_TOKENS,
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(gemma.model.state_dict())
    model.tie_weights()
    if not torch.equal(model.lm_head.weight, gemma.lm_head.weight):
        raise RuntimeError("the LLaVA's output head does not carry Gemma's tied embeddings")
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    (staging / _READY_MARK).write_text(json.dumps({"format": _FORMAT, "language_model": "google/gemma-3-270m"}), encoding="utf-8")
