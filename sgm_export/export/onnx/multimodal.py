"""Tracing a vision-language model into the three graphs of the onnx-community layout:

    vision_encoder.onnx         pixel_values (+ the images' grids)  -> image_features [image tokens, hidden]
    embed_tokens.onnx           input_ids                         -> inputs_embeds
    decoder_model_merged.onnx   inputs_embeds, attention_mask, position_ids, past_key_values.*
                                (+ token_type_ids)                -> logits, present.*

The runtime embeds the prompt, writes the image features over the image tokens' embeddings and
runs the decoder. The decoder graph is the whole model's forward from `inputs_embeds` (so each
family's own masks and rotary positions are kept, such as Gemma 3's bidirectional attention
over an image's tokens), with the glasses applied through the family row's language-decoder
layer path (`Family.layers`, `Family.down_proj`) exactly as for text models.

What differs between families is in `families.MULTIMODAL_TRAITS`: extra inputs of the vision and decoder
graphs, and whether positions are 3-D (Qwen2-VL's M-RoPE: temporal, height, width).
"""

import onnx_ir as ir
import torch
from torch import nn
from torch.export import Dim
from transformers import DynamicCache

from sgm_export.apply import glasses_applied
from sgm_export.arch import Family
from sgm_export.export.onnx.anyres_vision import IMAGE_NEWLINE, AnyresTileEncoder, IdeficsEncoder, PatchEncoder
from sgm_export.export.onnx.families import MultimodalTraits
from sgm_export.export.onnx.qwen_vision import QwenVisionEncoder
from sgm_export.export.onnx.trace import DTYPES, cache_spec, export_module
from sgm_export.glasses import Glasses
from sgm_export.runtime.layout import (
    ATTENTION_MASK,
    BATCH,
    IMAGE_FEATURES,
    IMAGES,
    INPUT_IDS,
    INPUTS_EMBEDS,
    LOGITS,
    PAST_SEQUENCE,
    PATCHES,
    PIXEL_VALUES,
    POSITION_IDS,
    SEQUENCE,
    TOTAL_SEQUENCE,
    CacheSpec,
    past_names,
    present_names,
)


def image_facts(config, traits: MultimodalTraits) -> dict:
    """The `image` section of sgm_onnx.json: what the runtime needs to put images into a prompt."""
    vision_config = config.vision_config
    return {
        "image_token_id": config.image_token_id,
        "vision_inputs": list(traits.vision_inputs),
        "decoder_inputs": list(traits.decoder_inputs),
        "position_axes": traits.position_axes,
        "spatial_merge_size": getattr(vision_config, "spatial_merge_size", None),
        "image_size": getattr(vision_config, "image_size", None),
        "patch_size": getattr(vision_config, "patch_size", None),
        "anyres": traits.anyres,
        "prefix_lm": traits.prefix_lm,
        "position_offset": traits.position_offset,
        "image_grid_pinpoints": getattr(config, "image_grid_pinpoints", None) if traits.anyres else None,
    }


class VisionEncoder(nn.Module):
    """Images to the features that replace the image tokens' embeddings, one row per token
    (Gemma 3, PaliGemma: `get_image_features` returns one tensor for the whole batch)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        features = self.model.get_image_features(pixel_values=pixel_values).pooler_output
        return features.reshape(-1, features.shape[-1])


class TokenEmbedder(nn.Module):
    """Token ids to input embeddings (with the model's own scaling, as Gemma's)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.embed = model.get_input_embeddings()

    def forward(self, input_ids):
        return self.embed(input_ids)


class DecoderFromEmbeddings(nn.Module):
    """The whole model from input embeddings, with its cache as a flat list of tensors.

    It holds the model as `model`, like the text wrapper, so the glasses' traced names match."""

    def __init__(self, model: nn.Module, extra_inputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.extra_inputs = extra_inputs

    def forward(self, inputs_embeds, attention_mask, position_ids, past: list[torch.Tensor], extras: list[torch.Tensor]):
        cache = DynamicCache()
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        output = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
            **dict(zip(self.extra_inputs, extras)),
        )
        return (output.logits, *[tensor for layer in output.cache.layers for tensor in (layer.keys, layer.values)])


class PrefixLMDecoder(DecoderFromEmbeddings):
    """PaliGemma's decoder with its prefix-LM mask on every run, not only on the first.

    transformers gives the image+prompt prefix (token type 0) bidirectional attention only when
    its cache is empty, a Python test that tracing would fix to one answer. Here the mask is built
    from the token types on every run, the past counted as causal (-1): a prefix only ever runs
    with an empty past, and a generated token (type 1) attends causally either way."""

    def forward(self, inputs_embeds, attention_mask, position_ids, past: list[torch.Tensor], extras: list[torch.Tensor]):
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        (token_type_ids,) = extras
        cache = DynamicCache()
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        past_length = past[0].shape[2]
        blocks = torch.where(token_type_ids == 0, 0, -1)
        blocks = torch.cat([torch.full((blocks.shape[0], past_length), -1, dtype=blocks.dtype), blocks], dim=1)
        text_config = self.model.config.get_text_config()
        mask_inputs = dict(
            config=text_config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
            block_sequence_ids=blocks,
        )
        mask = create_causal_mask(**mask_inputs)
        if getattr(text_config, "sliding_window", None) is not None:  # PaliGemma 2
            mask = {"full_attention": mask, "sliding_attention": create_sliding_window_causal_mask(**mask_inputs)}
        output = self.model.model.language_model(
            inputs_embeds=inputs_embeds, attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=True
        )
        logits = self.model.lm_head(output.last_hidden_state)
        softcap = getattr(text_config, "final_logit_softcapping", None)
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        return (logits, *[tensor for layer in output.cache.layers for tensor in (layer.keys, layer.values)])


def trace_multimodal(
    model: nn.Module, family: Family, glasses: Glasses, dtype: str, traits: MultimodalTraits
) -> tuple[dict[str, ir.Model], CacheSpec]:
    """The vision, embedding and decoder graphs of `model` in `dtype`, the glasses in the decoder."""
    model = model.to(DTYPES[dtype]).eval()
    spec = cache_spec(model, dtype)
    graphs = {
        "vision_encoder": _trace_vision(model, traits),
        "embed_tokens": _trace_embeddings(model),
    }
    with glasses_applied(model, family, glasses):
        graphs["decoder"] = _trace_decoder(model, spec, traits)
    return graphs, spec


def _trace_vision(model: nn.Module, traits: MultimodalTraits) -> ir.Model:
    """Trace the vision tower and projector: every image (or tile, or patch) of a run in one graph."""
    vision_config = model.config.vision_config
    dtype = next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(0)
    if traits.packed_vision:
        return _trace_packed_vision(model, traits, dtype, generator)
    if traits.anyres:
        return _trace_anyres_vision(model, dtype, generator)
    size = vision_config.image_size
    images = torch.randn(2, vision_config.num_channels, size, size, generator=generator).to(dtype)
    if traits.idefics:
        module = IdeficsEncoder(model)
    else:
        module = PatchEncoder(model) if traits.patch_features else VisionEncoder(model)
    return export_module(module, (images,), {"pixel_values": {0: Dim(IMAGES)}}, [PIXEL_VALUES], [IMAGE_FEATURES])


def _trace_packed_vision(model: nn.Module, traits: MultimodalTraits, dtype: torch.dtype, generator: torch.Generator) -> ir.Model:
    """Qwen2-VL's or Qwen2.5-VL's tower over every image of a run (two images of different grids while tracing)."""
    vision_config = model.config.vision_config
    side = 2 * vision_config.spatial_merge_size
    patch_width = vision_config.in_channels * vision_config.temporal_patch_size * vision_config.patch_size**2
    grid = torch.tensor([[1, side, side], [1, side, 2 * side]])
    pixel_values = torch.randn(int(grid.prod(-1).sum()), patch_width, generator=generator).to(dtype)
    (grid_name,) = traits.vision_inputs
    return export_module(
        QwenVisionEncoder(model),
        (pixel_values, grid),
        {"pixel_values": {0: Dim(PATCHES)}, "grid_thw": {0: Dim(IMAGES)}},
        [PIXEL_VALUES, grid_name],
        [IMAGE_FEATURES],
    )


def _trace_anyres_vision(model: nn.Module, dtype: torch.dtype, generator: torch.Generator) -> ir.Model:
    """LLaVA-NeXT's tower and projector over image tiles, and its image_newline vector."""
    vision_config = model.config.vision_config
    size = vision_config.image_size
    tiles = torch.randn(3, vision_config.num_channels, size, size, generator=generator).to(dtype)
    return export_module(
        AnyresTileEncoder(model), (tiles,), {"pixel_values": {0: Dim(IMAGES)}}, [PIXEL_VALUES], [IMAGE_FEATURES, IMAGE_NEWLINE]
    )


def _trace_embeddings(model: nn.Module) -> ir.Model:
    input_ids = torch.randint(0, model.config.get_text_config().vocab_size, (2, 3), generator=torch.Generator().manual_seed(0))
    return export_module(TokenEmbedder(model), (input_ids,), {"input_ids": {0: Dim(BATCH), 1: Dim(SEQUENCE)}}, [INPUT_IDS], [INPUTS_EMBEDS])


def _trace_decoder(model: nn.Module, spec: CacheSpec, traits: MultimodalTraits) -> ir.Model:
    batch, new, past = 2, 3, 4
    hidden = model.config.get_text_config().hidden_size
    generator = torch.Generator().manual_seed(0)
    dtype = DTYPES[spec.dtype]
    inputs_embeds = torch.randn(batch, new, hidden, generator=generator).to(dtype)
    attention_mask = torch.ones(batch, past + new, dtype=torch.long)
    positions = torch.arange(past, past + new).expand(batch, new)
    batch_dim, sequence_dim = Dim(BATCH), Dim(SEQUENCE)
    if traits.position_axes == 3:
        position_ids = positions[None].expand(3, batch, new).contiguous()
        position_shape = {1: batch_dim, 2: sequence_dim}
    else:
        position_ids = positions.contiguous()
        position_shape = {0: batch_dim, 1: sequence_dim}
    shape = (batch, spec.num_key_value_heads, past, spec.head_dim)
    cache = [torch.randn(shape, generator=generator).to(dtype) for _ in range(2 * spec.num_layers)]
    extras = [torch.zeros(batch, new, dtype=torch.long) for _ in traits.decoder_inputs]
    dynamic_shapes = {
        "inputs_embeds": {0: batch_dim, 1: sequence_dim},
        "attention_mask": {0: batch_dim, 1: Dim(TOTAL_SEQUENCE)},
        "position_ids": position_shape,
        "past": [{0: batch_dim, 2: Dim(PAST_SEQUENCE)}] * len(cache),
        "extras": [{0: batch_dim, 1: sequence_dim}] * len(extras),
    }
    wrapper = PrefixLMDecoder if traits.prefix_lm else DecoderFromEmbeddings
    return export_module(
        wrapper(model, traits.decoder_inputs),
        (inputs_embeds, attention_mask, position_ids, cache, extras),
        dynamic_shapes,
        [INPUTS_EMBEDS, ATTENTION_MASK, POSITION_IDS, *past_names(spec.num_layers), *traits.decoder_inputs],
        [LOGITS, *present_names(spec.num_layers)],
    )
