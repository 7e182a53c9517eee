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
    PAST_SEQUENCE,
    SEQUENCE,
    TOTAL_SEQUENCE,
    CacheSpec,
)

DYNAMIC_AXES = {
    BATCH: "rows of the batch",
    SEQUENCE: "new tokens in this step: the prompt length at the first step, then 1",
    PAST_SEQUENCE: "tokens already in the cache: 0 at the first step",
    TOTAL_SEQUENCE: "past_sequence + sequence: the attention mask covers cached and new tokens",
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


def tensor_info(value: ir.Value) -> dict[str, Any]:
    """Name, element type and shape (ints for fixed axes, names for symbolic ones) of a graph input or output."""
    shape = [dim if isinstance(dim, int) else str(dim) for dim in value.shape] if value.shape is not None else None
    return {"name": value.name, "dtype": value.dtype.numpy().name if value.dtype is not None else None, "shape": shape}


def describe_export(
    *,
    graph: ir.Model,
    graph_file: str,
    external_data: str | None,
    dtype: str,
    opset: int,
    cache: CacheSpec,
    glasses: Glasses,
    glasses_nodes: list[GlassesNode],
    config: dict,
    generation_config: dict,
    source: dict[str, str],
) -> dict[str, Any]:
    """The content of sgm_onnx.json for a text decoder export."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sgm_export_version": __version__,
        "model_type": config.get("model_type"),
        **source,
        "dtype": dtype,
        "opset": opset,
        "graphs": {
            "decoder": {
                "file": graph_file,
                "external_data": external_data,
                "inputs": [tensor_info(value) for value in graph.graph.inputs],
                "outputs": [tensor_info(value) for value in graph.graph.outputs],
            }
        },
        "dynamic_axes": DYNAMIC_AXES,
        "cache": {
            "num_layers": cache.num_layers,
            "num_key_value_heads": cache.num_key_value_heads,
            "head_dim": cache.head_dim,
            "dtype": cache.dtype,
        },
        "tokens": special_tokens(config, generation_config),
        "glasses": {
            "file": "../glasses.safetensors",
            "settings": glasses.metadata,
            "experts_per_layer": glasses.experts_per_layer(),
            "nodes": [node.to_json() for node in glasses_nodes],
        },
        "how_to_run": HOW_TO_RUN,
    }


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
