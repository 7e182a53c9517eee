"""Checking a vision-language ONNX export: the runtime's own processing (chat template, image
tokens, pixels) against the base model's processor, and its greedy generation with an image
against transformers' `generate` on the base model with hook-applied glasses.

Two rows run as one left-padded batch: a question about the probe image (a colour gradient drawn
in memory) and a text prompt about the same image. The reference runs in float64; the allowed
difference is the tolerance or `ROUNDING_FACTOR` times PyTorch's own error in the graph's dtype
on the same inputs, as for text exports (see onnx.py).
"""

from pathlib import Path

import numpy as np
import torch

from sgm_export.apply import glasses_applied
from sgm_export.data.images import probe_image
from sgm_export.export.onnx.trace import DTYPES
from sgm_export.glasses import Glasses
from sgm_export.models.load import LoadedModel
from sgm_export.runtime.vision_lm import OnnxVisionLM
from sgm_export.verify.onnx import ROUNDING_FACTOR, VERIFY_NEW_TOKENS, scale_problems
from sgm_export.verify.result import VERIFY_IMAGE_PROMPT, VERIFY_PROMPTS, VerifyResult


def processor_inputs(base: LoadedModel, prompts: list[str], images: list) -> dict[str, torch.Tensor]:
    """What the base model's own processor makes of the prompts and images, left-padded."""
    processor = base.processor
    processor.tokenizer.padding_side = "left"
    texts = rendered_prompts(processor, prompts)
    bos = processor.tokenizer.bos_token
    add_special_tokens = not (bos and texts[0].startswith(bos))
    inputs = processor(
        text=texts, images=[[image] for image in images], padding=True, return_tensors="pt", add_special_tokens=add_special_tokens
    )
    return {key: value.double() if value.is_floating_point() else value for key, value in inputs.items()}


def rendered_prompts(processor, prompts: list[str]) -> list[str]:
    """Each prompt as a user turn with an image, through the processor's chat template; PaliGemma,
    which has none, takes the image token and the prompt (its processor adds `<bos>` and a newline)."""
    if getattr(processor, "chat_template", None) is None and hasattr(processor, "image_seq_length"):
        return [f"{processor.image_token}{prompt}" for prompt in prompts]
    chats = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}] for prompt in prompts]
    return [processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) for chat in chats]


def processor_pixels(inputs: dict[str, torch.Tensor], config) -> np.ndarray:
    """The processor's pixel values as the runtime lays them out: LLaVA-NeXT's batch of tiles,
    padded to the most tiles of any image, becomes every image's own tiles in a row."""
    pixels = inputs["pixel_values"]
    if pixels.ndim != 5:
        return pixels.numpy()
    if "image_sizes" not in inputs:  # Idefics3 / SmolVLM: rows padded with all-zero images, which transformers drops
        flat = pixels.flatten(0, 1)
        return flat[(flat != 0).flatten(1).any(1)].numpy()
    from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

    counts = [
        image_size_to_num_patches(size, config.image_grid_pinpoints, config.vision_config.image_size) for size in inputs["image_sizes"]
    ]
    return torch.cat([tiles[:count] for tiles, count in zip(pixels, counts)]).numpy()


def verify_vision_export(export_dir: Path, base: LoadedModel, glasses: Glasses, tolerance: float, device: str) -> VerifyResult:
    """`sgm-export verify` for a vision-language ONNX folder (the files were checked before)."""
    runtime = OnnxVisionLM(export_dir, device=device)
    prompts = [VERIFY_IMAGE_PROMPT, VERIFY_PROMPTS[1]]
    images = [probe_image(), probe_image()]
    inputs = processor_inputs(base, prompts, images)
    ids, arrays = runtime.prepare(prompts, images)
    real = inputs["attention_mask"].bool()
    problems = scale_problems(runtime.description.decoder_path, glasses)
    if ids != [row[mask].tolist() for row, mask in zip(inputs["input_ids"], real)]:
        problems.append("the runtime lays out the prompts differently from the base model's processor")
    if np.abs(arrays["pixel_values"] - processor_pixels(inputs, base.model.config)).max() > 1e-3:
        problems.append("the runtime's pixel values differ from the base model's image processor")
    with torch.inference_mode():
        plain = base.model(**inputs).logits[:, -1].numpy()
        with glasses_applied(base.model, base.family, glasses):
            generated = base.model.generate(
                **inputs,
                max_new_tokens=VERIFY_NEW_TOKENS,
                min_new_tokens=VERIFY_NEW_TOKENS,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=runtime.pad_token_id,
            )
    worst = 0.0
    tokens = generated.sequences[:, inputs["input_ids"].shape[1] :].numpy()
    steps = runtime.steps(ids, VERIFY_NEW_TOKENS, **arrays)
    for index, (step, expected) in enumerate(zip(steps, generated.logits)):
        worst = max(worst, float(np.abs(step.logits.astype(np.float64) - expected.double().numpy()).max()))
        if not np.array_equal(step.tokens, tokens[:, index]):
            break  # the two took different tokens: later steps see different inputs
    dtype = runtime.description.dtype
    rounding = _rounding_error(base, glasses, inputs, dtype)
    allowed = max(tolerance, ROUNDING_FACTOR * rounding)
    return VerifyResult(
        export_format=f"onnx ({dtype}, vision-language)",
        max_abs_diff=worst,
        tolerance=allowed,
        glasses_effect=float(np.abs(generated.logits[0].double().numpy() - plain).max()),
        n_experts=sum(glasses.experts_per_layer()),
        problems=problems,
        note=f"reference in float64 with a probe image; PyTorch in {dtype} is {rounding:.3g} from it, so up to {allowed:.3g} is allowed",
    )


def _rounding_error(base: LoadedModel, glasses: Glasses, inputs: dict[str, torch.Tensor], dtype: str) -> float:
    """How far PyTorch in `dtype` is from float64 on the inputs' last position (casts the model: call last)."""
    with torch.inference_mode(), glasses_applied(base.model, base.family, glasses):
        exact = base.model(**inputs).logits[:, -1].double()
        base.model.to(DTYPES[dtype])
        cast = {key: value.to(DTYPES[dtype]) if value.is_floating_point() else value for key, value in inputs.items()}
        rounded = base.model(**cast).logits[:, -1].double()
    return float((rounded - exact).abs().max())
