"""The sizes a config.json claims (layers, MLP widths, vocabulary), compared with the shapes in
the weights' safetensors headers before anything is loaded.

Transformers builds the model from the config and then fills it from the weights: a config that
says 0 layers over 2-layer weights loads as an empty model, and an export made from it looks
fine. Reading the headers costs milliseconds, so every command that opens a model checks them.
"""

from pathlib import Path

from sgm_export.arch import Family
from sgm_export.errors import CheckpointError, ShapeMismatchError
from sgm_export.models.checkpoint import safetensors_header, weight_index

LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
# In order: GPT-2's n_inner (null: 4 x n_embd), OPT's ffn_dim, then everyone else's name. A config
# may carry another family's key as a stray extra, so the first one present decides.
WIDTH_KEYS = ("n_inner", "ffn_dim", "intermediate_size")
EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight")
FIX = "restore config.json from the original checkpoint, or the weights that belong to it"


def check_sizes(path: Path, config: dict, family: Family, name: str, variant: str | None = None) -> dict[int, str]:
    """One-line error unless the config's sizes match the weights; returns layer -> the name of
    its output projection's weight (what an export edits)."""
    index = weight_index(path, variant)
    keys = projection_keys(index, family, path)
    text = text_config(config, family)
    _check_layers(text, len(keys), name)
    _check_widths(text, projection_widths(keys, index, family), name)
    _check_vocab(text, index, name)
    return keys


def text_config(config: dict, family: Family) -> dict:
    """The part of a config that describes the language decoder (`text_config` of a
    vision-language model, the whole config otherwise)."""
    nested = config.get("text_config")
    return nested if family.multimodal and isinstance(nested, dict) else config


def projection_keys(index: dict[str, Path], family: Family, path: Path) -> dict[int, str]:
    """Layer -> name of its output projection's weight in the checkpoint files."""
    pattern = family.checkpoint_key_pattern()
    keys: dict[int, str] = {}
    for tensor in index:
        match = pattern.match(tensor)
        if match:
            keys[int(next(group for group in match.groups() if group is not None))] = tensor
    if not keys or sorted(keys) != list(range(len(keys))):
        raise CheckpointError(
            f"could not find the MLP output projections of {path} (expected names like {family.checkpoint_keys[0]})",
            "check that the checkpoint is complete and of the family " + family.name,
        )
    return keys


def projection_widths(keys: dict[int, str], index: dict[str, Path], family: Family) -> list[int]:
    """The number of neurons of every layer, from the projection weights' shapes."""
    headers: dict[Path, dict] = {}
    widths = []
    for layer in range(len(keys)):
        file = index[keys[layer]]
        shape = headers.setdefault(file, safetensors_header(file))[keys[layer]]["shape"]
        if len(shape) != 2:
            raise ShapeMismatchError(f"{keys[layer]} has shape {shape}, not a matrix", "this checkpoint layout is not supported")
        widths.append(int(shape[family.input_axis()]))
    return widths


def _check_layers(text: dict, n_layers: int, name: str) -> None:
    key = next((key for key in LAYER_KEYS if key in text), None)
    if key is None:
        return
    value = text[key]
    # More layers than projections is a missing tensor, which the load names exactly ("lacks
    # weights") and an export's glasses do not fit; fewer would drop layers without a word.
    if not isinstance(value, int) or isinstance(value, bool) or value < max(n_layers, 1):
        raise CheckpointError(f"config.json of {name} says {key} = {value!r}, but its weights hold {n_layers} layers", FIX)


def _check_widths(text: dict, widths: list[int], name: str) -> None:
    key = next((key for key in WIDTH_KEYS if key in text), None)
    value = text.get(key)
    if value is None:
        return
    expected = value if isinstance(value, list) else [value] * len(widths)
    if expected != widths:
        raise CheckpointError(f"config.json of {name} says {key} = {value!r}, but its weights have MLP widths {widths}", FIX)


def _check_vocab(text: dict, index: dict[str, Path], name: str) -> None:
    embeddings = [tensor for tensor in index if tensor.endswith(EMBEDDING_SUFFIXES)]
    vocab = text.get("vocab_size")
    if len(embeddings) != 1 or vocab is None:
        return
    rows = safetensors_header(index[embeddings[0]])[embeddings[0]]["shape"][0]
    # More rows than the vocabulary is legitimate (Mllama adds 8 image tokens); fewer is not.
    if not isinstance(vocab, int) or isinstance(vocab, bool) or not 0 < vocab <= rows:
        raise CheckpointError(f"config.json of {name} says vocab_size = {vocab!r}, but its embedding has {rows} rows", FIX)
