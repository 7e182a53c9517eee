"""What other ONNX clients read from the folder beside the graphs, written so that each runs it
with its default options.

transformers.js does not run `tokenizer.json`'s post-processor as it is: its text-generation
pipeline encodes with special tokens only when `tokenizer_config.json` says `add_bos_token` or
`add_eos_token`. A Gemma tokenizer whose config leaves them out then gets no `<bos>` and writes
garbage, so the flags are stated here as `tokenizer.json` actually behaves (found by encoding a
probe with and without special tokens). It also reads a graph's external weights only when
`config.json`'s `transformers.js_config.use_external_data_format` names the graph. ONNX Runtime
GenAI opens a folder only through its `genai_config.json`, which names the graph, its inputs and
outputs and the cache's shape.

For vision-language folders transformers.js reads the image processor from
`preprocessor_config.json` (transformers 5 saves it inside `processor_config.json`), so it is
written beside it. Its LLaVA processor counts an image's tokens as patches plus
`num_additional_image_tokens`, without removing the CLS token the `default` feature strategy
drops, so the pair is stated in the equivalent form both clients count alike (`full` and one
additional token fewer: the same count in transformers). Most of its processors take the chat
template from the tokenizer, so `chat_template.jinja` is stated in `tokenizer_config.json` too.
For Qwen2-VL it sizes the cache from `config.json`'s top level (transformers 4's layout), where
transformers 5 keeps those fields in `text_config` only: they are stated at the top level too.
"""

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

TOKENIZER_CONFIG = "tokenizer_config.json"
PROCESSOR_CONFIG = "processor_config.json"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_FILE = "tokenizer.json"
TRANSFORMERS_JS_CONFIG = "transformers.js_config"
GENAI_CONFIG = "genai_config.json"
PROBE = "Hello world"


def state_special_tokens(folder: Path) -> None:
    """Write `add_bos_token` / `add_eos_token` into the folder's tokenizer_config.json as its
    tokenizer.json behaves; a folder without both files is left as it is."""
    config_path, tokenizer_path = folder / TOKENIZER_CONFIG, folder / TOKENIZER_FILE
    if not (config_path.is_file() and tokenizer_path.is_file()):
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    flags = added_special_tokens(Tokenizer.from_file(str(tokenizer_path)), config)
    if all(config.get(key) == value for key, value in flags.items()):
        return
    config_path.write_text(json.dumps({**config, **flags}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def added_special_tokens(tokenizer: Tokenizer, config: dict[str, Any]) -> dict[str, bool]:
    """`add_bos_token` and `add_eos_token` (for the tokens the config names) as the tokenizer adds them."""
    with_specials = tokenizer.encode(PROBE, add_special_tokens=True).ids
    plain = tokenizer.encode(PROBE, add_special_tokens=False).ids
    flags = {}
    for key, flag, position in (("bos_token", "add_bos_token", 0), ("eos_token", "add_eos_token", -1)):
        token_id = tokenizer.token_to_id(_content(config.get(key))) if config.get(key) else None
        if token_id is not None:
            flags[flag] = with_specials[position] == token_id and plain[position] != token_id
    return flags


def _content(token: str | dict) -> str:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken's fields."""
    return token["content"] if isinstance(token, dict) else token


def state_processor_files(folder: Path) -> None:
    """Write `preprocessor_config.json` from `processor_config.json`'s image processor, and state
    LLaVA's image-token count in the form transformers.js counts too (see the module docstring)."""
    path, template, tokenizer_config = folder / PROCESSOR_CONFIG, folder / CHAT_TEMPLATE_FILE, folder / TOKENIZER_CONFIG
    if not path.is_file():
        return
    if template.is_file() and tokenizer_config.is_file():
        tokens = json.loads(tokenizer_config.read_text(encoding="utf-8"))
        if "chat_template" not in tokens:
            tokens["chat_template"] = template.read_text(encoding="utf-8")
            tokenizer_config.write_text(json.dumps(tokens, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    config = json.loads(path.read_text(encoding="utf-8"))
    image = config.get("image_processor")
    if isinstance(image, dict) and not (folder / PREPROCESSOR_CONFIG).is_file():
        flat = {**image, **({"processor_class": config["processor_class"]} if "processor_class" in config else {})}
        (folder / PREPROCESSOR_CONFIG).write_text(json.dumps(flat, indent=2) + "\n", encoding="utf-8")
    extra = config.get("num_additional_image_tokens")
    if config.get("vision_feature_select_strategy") == "default" and isinstance(extra, int) and extra >= 1:
        config.update(vision_feature_select_strategy="full", num_additional_image_tokens=extra - 1)
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


TOP_LEVEL_TEXT_FIELDS = {"qwen2_vl": ("num_hidden_layers", "num_key_value_heads", "num_attention_heads", "hidden_size")}


def top_level_text_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The text config's cache-shape fields that transformers.js reads from the top level for this model type."""
    text = config.get("text_config") or {}
    names = TOP_LEVEL_TEXT_FIELDS.get(config.get("model_type"), ())
    return {name: text[name] for name in names if name in text and name not in config}


def transformers_js_config(external_data: dict[str, str | None]) -> dict[str, Any]:
    """The `transformers.js_config` block of config.json: which graphs keep their weights in an
    external data file (graph file -> 1 chunk), or nothing when all weights are inside the graphs."""
    external = {file: 1 for file, data in external_data.items() if data}
    return {TRANSFORMERS_JS_CONFIG: {"use_external_data_format": external}} if external else {}


def genai_config(description: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """`genai_config.json` for ONNX Runtime GenAI (`onnxruntime_genai.Model(folder)`), from the
    description of a text decoder export and the base config.

    GenAI keeps its own KV cache and feeds `present.*` back as `past_key_values.*`, as our graph
    expects; `past_present_share_buffer` is off because the graph's present is the past plus the
    new positions (a growing cache), not a preallocated buffer of the full context.
    """
    cache, tokens = description["cache"], description["tokens"]
    decoder = description["graphs"]["decoder"]
    text = config.get("text_config") or config
    context = text.get("max_position_embeddings") or text.get("n_positions") or 2048
    return {
        "model": {
            "type": description["model_type"],
            "bos_token_id": tokens["bos_token_id"],
            "eos_token_id": tokens["eos_token_ids"],
            "pad_token_id": tokens["pad_token_id"] if tokens["pad_token_id"] is not None else tokens["eos_token_ids"][0],
            "vocab_size": text.get("vocab_size"),
            "context_length": context,
            "decoder": {
                "filename": f"onnx/{decoder['file']}",
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "hidden_size": text.get("hidden_size") or text.get("n_embd"),
                "head_size": cache["head_dim"],
                "num_attention_heads": text.get("num_attention_heads") or text.get("n_head"),
                "num_key_value_heads": cache["num_key_value_heads"],
                "num_hidden_layers": cache["num_layers"],
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key", "present_value_names": "present.%d.value"},
            },
        },
        "search": {
            "do_sample": False,
            "num_beams": 1,
            "num_return_sequences": 1,
            "max_length": context,
            "min_length": 0,
            "past_present_share_buffer": False,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
        },
    }
