"""`onnx/sgm_onnx.json`: what a program needs to know to run the exported graphs without reading
them first: files, inputs and outputs with dtypes and symbolic axes, the cache layout, special
tokens, where the glasses are, and the steps of a generation loop."""

import json
from pathlib import Path
from typing import Any

import onnx_ir as ir

from sgm_export import __version__
from sgm_export.export.onnx.graph import GlassesNode
from sgm_export.glasses import Glasses
from sgm_export.runtime.layout import (
    BATCH,
    DESCRIPTION_FILE,
    FORMAT,
    FORMAT_VERSION,
    IMAGES,
    PAST_SEQUENCE,
    PATCHES,
    SEQUENCE,
    TOTAL_SEQUENCE,
    CacheSpec,
)

DYNAMIC_AXES = {
    IMAGES: "images in one run of the vision encoder",
    PATCHES: "image patches in one run of the vision encoder (Qwen2-VL: one image per run)",
    BATCH: "rows of the batch",
    SEQUENCE: "new tokens in this step: the prompt length at the first step, then 1",
    PAST_SEQUENCE: "tokens already in the cache: 0 at the first step",
    TOTAL_SEQUENCE: "past_sequence_length + sequence_length: the attention mask covers cached and new tokens",
}

HOW_TO_RUN = [
    "Tokenize the prompts with tokenizer.json (it adds <bos> where the model wants it) and pad them on the left with pad_token_id.",
    "attention_mask is 1 on real tokens and 0 on padding; position_ids count real tokens from 0 (cumsum(attention_mask) - 1), "
    "padding gets 1.",
    "First step: input_ids, attention_mask and position_ids of the whole prompt, and every past_key_values.{i}.key/value empty "
    "([batch, num_key_value_heads, 0, head_dim] in the cache dtype).",
    "Take the next token from logits[:, -1, :]; feed it as input_ids [batch, 1], append a 1 to attention_mask, add 1 to the last "
    "position_ids, and pass present.{i}.key/value back as past_key_values.{i}.key/value.",
    "Stop at an eos_token_ids token or at the length limit; rows that stopped are fed pad_token_id.",
]

HOW_TO_RUN_WITH_IMAGES = [
    "Build each prompt with the processor (chat template, one run of image tokens per image) and make the images' "
    "pixel_values (and image_grid_thw) with its image processor.",
    "vision_encoder: pixel_values (+ the images' [t, h, w] grids under the name in image.vision_inputs) -> image_features, "
    "one row per image token, images in the order their tokens appear over the batch; with image.anyres (LLaVA-NeXT) "
    "it takes every image's tiles and returns each tile's features and image_newline, which the runtime packs per image.",
    "embed_tokens: the left-padded input_ids -> inputs_embeds; replace the rows of image tokens (image.image_token_id), "
    "in reading order, with the image_features rows.",
    "decoder: inputs_embeds, attention_mask, position_ids and empty past_key_values as for text models; with "
    "image.position_axes 3 (M-RoPE) position_ids is [3, batch, sequence]: text counts up on all three axes, an image's "
    "tokens take (start, start + row, start + column) over its merged grid and the text after it resumes at start plus "
    "the grid's larger side; with token_type_ids in image.decoder_inputs, pass 1 on image tokens and 0 elsewhere, or with "
    "image.prefix_lm (PaliGemma) 0 on the whole prompt; add image.position_offset to every position.",
    "Decode as for text models, embedding each new token with embed_tokens; positions continue from each row's largest "
    "position plus one (on all three axes), token_type_ids are 0 (1 with image.prefix_lm).",
]


def tensor_info(value: ir.Value) -> dict[str, Any]:
    """Name, element type and shape (ints for fixed axes, names for symbolic ones) of a graph input or output."""
    shape = [dim if isinstance(dim, int) else str(dim) for dim in value.shape] if value.shape is not None else None
    return {"name": value.name, "dtype": value.dtype.numpy().name if value.dtype is not None else None, "shape": shape}


def describe_export(
    *,
    graphs: dict[str, ir.Model],
    files: dict[str, tuple[str, str | None]],
    dtype: str,
    opset: int,
    cache: CacheSpec,
    glasses: Glasses,
    glasses_nodes: list[GlassesNode],
    config: dict,
    generation_config: dict,
    source: dict[str, str],
    image: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of sgm_onnx.json; `files` gives each graph's file and external data file."""
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sgm_export_version": __version__,
        "model_type": config.get("model_type"),
        **source,
        "dtype": dtype,
        "opset": opset,
        "graphs": {
            name: {
                "file": files[name][0],
                "external_data": files[name][1],
                "inputs": [tensor_info(value) for value in graph.graph.inputs],
                "outputs": [tensor_info(value) for value in graph.graph.outputs],
            }
            for name, graph in graphs.items()
        },
        "dynamic_axes": {axis: meaning for axis, meaning in DYNAMIC_AXES.items() if _uses_axis(graphs, axis)},
        "cache": {
            "num_layers": cache.num_layers,
            "num_key_value_heads": cache.num_key_value_heads,
            "head_dim": cache.head_dim,
            "dtype": cache.dtype,
        },
        "tokens": special_tokens(config, generation_config),
        "glasses": {
            "file": "../glasses.safetensors",
            "settings": glasses.metadata.flat(),
            "experts_per_layer": glasses.experts_per_layer(),
            "nodes": [node.to_json() for node in glasses_nodes],
        },
        "how_to_run": HOW_TO_RUN,
    }
    if image is not None:
        description["image"] = image
        description["how_to_run"] = HOW_TO_RUN_WITH_IMAGES
    return description


def _uses_axis(graphs: dict[str, ir.Model], axis: str) -> bool:
    return any(str(dim) == axis for graph in graphs.values() for value in graph.graph.inputs for dim in (value.shape or ()))


def special_tokens(config: dict, generation_config: dict) -> dict[str, Any]:
    """bos, eos (always a list) and pad ids; the generation config wins over config.json."""

    def pick(key: str) -> Any:
        value = generation_config.get(key)
        return value if value is not None else config.get(key)

    eos = pick("eos_token_id")
    return {
        "bos_token_id": pick("bos_token_id"),
        "eos_token_ids": [] if eos is None else ([eos] if isinstance(eos, int) else list(eos)),
        "pad_token_id": pick("pad_token_id"),
    }


def write_description(onnx_dir: Path, description: dict[str, Any]) -> None:
    (onnx_dir / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
