"""What other ONNX clients read from the folder beside the graphs, written so that each runs it
with its default options.

transformers.js does not run `tokenizer.json`'s post-processor as it is: its text-generation
pipeline encodes with special tokens only when `tokenizer_config.json` says `add_bos_token` or
`add_eos_token`. A Gemma tokenizer whose config leaves them out then gets no `<bos>` and writes
garbage, so the flags are stated here as `tokenizer.json` actually behaves (found by encoding a
probe with and without special tokens). It also reads a graph's external weights only when
`config.json`'s `transformers.js_config.use_external_data_format` names the graph.
"""

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_FILE = "tokenizer.json"
TRANSFORMERS_JS_CONFIG = "transformers.js_config"
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

