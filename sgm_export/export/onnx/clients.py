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
"""

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

TOKENIZER_CONFIG = "tokenizer_config.json"
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
