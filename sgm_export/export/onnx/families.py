"""Which vision-language model types the ONNX export handles, and how their graphs differ.

This table is read before any model is loaded (and without torch), so that an unsupported
family is refused in one line before anything is written.
"""

from dataclasses import dataclass

from sgm_export.errors import SgmError


@dataclass(frozen=True)
class MultimodalTraits:
    """How one vision-language model type's graphs differ from the common form."""

    vision_inputs: tuple[str, ...] = ()  # beyond pixel_values
    decoder_inputs: tuple[str, ...] = ()  # beyond inputs_embeds, attention_mask, position_ids and the cache
    position_axes: int = 1  # 3: position_ids is [3, batch, sequence] (M-RoPE)
    patch_features: bool = False  # LLaVA: the vision graph is the tower and projector (`anyres_vision.PatchEncoder`)
    idefics: bool = False  # Idefics3 / SmolVLM: `anyres_vision.IdeficsEncoder`, images split into tiles by the processor
    anyres: bool = False  # LLaVA-NeXT: the vision graph encodes tiles; the runtime packs them (`runtime.vision.pack_anyres`)
    prefix_lm: bool = False  # token_type_ids mark the prompt (0, attended bidirectionally) and the generated tokens (1)
    position_offset: int = 0  # 1: positions count from 1 (PaliGemma)
    packed_vision: bool = False  # the tower is traced by `qwen_vision` (all images of a run packed, masked attention)
    # Qwen's grid input is named as transformers.js feeds it: `grid_thw` for Qwen2-VL, `image_grid_thw` for Qwen2.5-VL.


MULTIMODAL_TRAITS = {
    "llava": MultimodalTraits(patch_features=True),
    "llava_next": MultimodalTraits(anyres=True),
    "paligemma": MultimodalTraits(decoder_inputs=("token_type_ids",), prefix_lm=True, position_offset=1),
    "gemma3": MultimodalTraits(decoder_inputs=("token_type_ids",)),
    "idefics3": MultimodalTraits(idefics=True),
    "smolvlm": MultimodalTraits(idefics=True),
    "qwen2_vl": MultimodalTraits(vision_inputs=("grid_thw",), position_axes=3, packed_vision=True),
    "qwen2_5_vl": MultimodalTraits(vision_inputs=("image_grid_thw",), position_axes=3, packed_vision=True),
}


def check_onnx_family(model_type: str, model: str) -> MultimodalTraits:
    """The traits of a vision-language model type, or a one-line error naming those supported."""
    if model_type not in MULTIMODAL_TRAITS:
        raise SgmError(
            f"{model} is a {model_type} model, whose vision-language ONNX export is not supported "
            f"(supported: {', '.join(sorted(MULTIMODAL_TRAITS))})",
            "use the module or folded export",
        )
    return MULTIMODAL_TRAITS[model_type]
