"""The ONNX export's layout: file names, graph input/output names, and `onnx/sgm_onnx.json`.

The exporter writes this layout and the runtime reads it, so both take every name from here.
It follows the `onnx/` folder that transformers.js and onnx-community use: the decoder graph is
`onnx/model.onnx` (`onnx/model_fp16.onnx` for float16, the name transformers.js looks for), or
`vision_encoder.onnx`, `embed_tokens.onnx` and `decoder_model_merged.onnx` for vision-language
models, with config, tokenizer and generation config in the folder above it. This module imports nothing
but the standard library, so that the runtime stays free of torch.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgm_export.errors import CheckpointError
from sgm_export.layout import ONNX_DIR

DESCRIPTION_FILE = "sgm_onnx.json"
FORMAT = "sgm-onnx"
FORMAT_VERSION = 1
EXTERNAL_DATA_SUFFIX = "_data"  # model.onnx -> model.onnx_data, as onnx-community names it

INPUT_IDS = "input_ids"
INPUTS_EMBEDS = "inputs_embeds"
PIXEL_VALUES = "pixel_values"
IMAGE_FEATURES = "image_features"
ATTENTION_MASK = "attention_mask"
POSITION_IDS = "position_ids"
LOGITS = "logits"

# Symbolic axis names in the graphs and in sgm_onnx.json: onnx-community's and optimum's, because
# transformers.js builds the empty past of the first step from them (it sizes `batch_size` and
# gives every other named axis length 0; an unknown name such as `batch` becomes 0 rows).
BATCH = "batch_size"
SEQUENCE = "sequence_length"
PAST_SEQUENCE = "past_sequence_length"
TOTAL_SEQUENCE = "total_sequence_length"
IMAGES = "images"
PATCHES = "patches"

# The graphs of an export and their file stems: model.onnx for text models; three graphs for
# vision-language ones. float16 graphs end in _fp16 (model_fp16.onnx), as transformers.js expects.
TEXT_GRAPHS = {"decoder": "model"}
MULTIMODAL_GRAPHS = {"decoder": "decoder_model_merged", "vision_encoder": "vision_encoder", "embed_tokens": "embed_tokens"}


def graph_file(stem: str, dtype: str) -> str:
    """`model.onnx`, or `model_fp16.onnx` for float16."""
    return f"{stem}.onnx" if dtype == "float32" else f"{stem}_fp16.onnx"


def past_names(n_layers: int) -> list[str]:
    """`past_key_values.{i}.key`, `past_key_values.{i}.value` for every layer, in graph order."""
    return [f"past_key_values.{i}.{kind}" for i in range(n_layers) for kind in ("key", "value")]


def present_names(n_layers: int) -> list[str]:
    """`present.{i}.key`, `present.{i}.value` for every layer, in graph order."""
    return [f"present.{i}.{kind}" for i in range(n_layers) for kind in ("key", "value")]


def scale_name(layer: int) -> str:
    """The initializer that holds layer `layer`'s glasses."""
    return f"sgm.layers.{layer}.scale"


def shift_name(layer: int) -> str:
    """The initializer that holds layer `layer`'s shift, for glasses that shift experts."""
    return f"sgm.layers.{layer}.shift"


def external_data_name(graph_file: str) -> str:
    return graph_file + EXTERNAL_DATA_SUFFIX


@dataclass(frozen=True)
class CacheSpec:
    """The shape of every past/present tensor: [batch_size, kv_heads, past_sequence_length, head_dim]."""

    num_layers: int
    num_key_value_heads: int
    head_dim: int
    dtype: str


@dataclass(frozen=True)
class OnnxDescription:
    """What `onnx/sgm_onnx.json` says about an export, as the runtime needs it."""

    folder: Path
    dtype: str
    decoder_file: str
    cache: CacheSpec
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None
    raw: dict[str, Any]

    @property
    def decoder_path(self) -> Path:
        return self.folder / ONNX_DIR / self.decoder_file

    def graph_path(self, name: str) -> Path:
        """The file of graph `name` (decoder, vision_encoder, embed_tokens)."""
        return self.folder / ONNX_DIR / self.raw["graphs"][name]["file"]


def find_export_root(path: Path) -> Path:
    """The export folder, given it, its `onnx/` subfolder, or a graph file inside it."""
    path = Path(path)
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / ONNX_DIR / DESCRIPTION_FILE).is_file():
            return candidate
    raise CheckpointError(
        f"{path} is not an sgm-export ONNX export (no {ONNX_DIR}/{DESCRIPTION_FILE})", "write one with `sgm-export onnx MODEL --out DIR`"
    )


def read_description(path: Path) -> OnnxDescription:
    """Read and check `onnx/sgm_onnx.json` of the export at (or around) `path`."""
    folder = find_export_root(path)
    file = folder / ONNX_DIR / DESCRIPTION_FILE
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT or raw.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{file} is not format {FORMAT} version {FORMAT_VERSION}", "export the model again with this sgm-export")
        decoder = raw["graphs"]["decoder"]
        cache = raw["cache"]
        tokens = raw["tokens"]
        return OnnxDescription(
            folder=folder,
            dtype=raw["dtype"],
            decoder_file=decoder["file"],
            cache=CacheSpec(int(cache["num_layers"]), int(cache["num_key_value_heads"]), int(cache["head_dim"]), cache["dtype"]),
            bos_token_id=tokens.get("bos_token_id"),
            eos_token_ids=tuple(tokens.get("eos_token_ids") or ()),
            pad_token_id=tokens.get("pad_token_id"),
            raw=raw,
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{file} is not a valid description ({type(error).__name__}: {error})", "export the model again") from None
