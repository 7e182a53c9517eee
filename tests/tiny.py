"""Tiny random models of every supported family, built offline from configs.

Each gets a small BPE tokenizer trained on the built-in texts, so that the whole pipeline
(tokenize, score, export, reload, verify) runs in seconds and needs no download.
"""

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from sgm_export.data.builtin import read_builtin

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
HIDDEN = 32
INTERMEDIATE = 48
LAYERS = 2

# Per family: the config overrides that make a tiny model of it.
TEXT_FAMILIES = {
    "llama": {},
    "mistral": {},
    "qwen2": {},
    "qwen3": {},
    "gemma3_text": {"sliding_window": 16, "query_pre_attn_scalar": 16},
    "gpt2": {"n_embd": HIDDEN, "n_layer": LAYERS, "n_head": 2, "n_inner": 64, "n_positions": 128},
    "phi": {"partial_rotary_factor": 0.5},
    "opt": {"ffn_dim": INTERMEDIATE, "word_embed_proj_dim": HIDDEN, "max_position_embeddings": 128},
}


def build_tokenizer(out_dir: Path | None, extra_specials: tuple[str, ...] = (), **named_tokens: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with a <bos> prefix, trained on the built-in texts.

    `extra_specials` are further special tokens (image and chat-turn markers of a processor);
    `named_tokens` give some of them a name the processor looks up (`image_token="<image>"`).
    """
    corpus = [example.text for name in ("rtp-toxic", "neutral") for example in read_builtin(name, "score")[:300]]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = SPECIALS + list(extra_specials)
    backend.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    bos = backend.token_to_id("<bos>")
    backend.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=list(extra_specials) or None,
        **named_tokens,
    )
    if out_dir is not None:
        tokenizer.save_pretrained(out_dir)
    return tokenizer


def perturb(model: torch.nn.Module) -> None:
    """Random init leaves some weights at exactly zero or one (norms); perturb them so that every
    neuron matters and parity tests cannot pass by accident."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)


def tiny_config(model_type: str, tokenizer: PreTrainedTokenizerFast, **overrides):
    """The config of a tiny random model of `model_type` (`overrides` change any field)."""
    common = dict(
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=128,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    common.update(TEXT_FAMILIES[model_type])
    common.update(overrides)
    return AutoConfig.for_model(model_type, **common)


def build_tiny_model(model_type: str, out_dir: Path, seed: int = 0, max_shard_size: str | None = None, **overrides) -> Path:
    """Save a tiny random model of `model_type` with its tokenizer into `out_dir`; `overrides`
    change its config (wider, deeper) where a test needs a larger model."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out_dir)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(model_type, tokenizer, **overrides))
    perturb(model)
    model.save_pretrained(out_dir, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    return out_dir


def overflowing_copy(source: Path, out_dir: Path, factor: float = 1e4) -> Path:
    """A copy of a tiny gated model whose MLP inputs are scaled by `factor`: act(gate) * up then
    reaches about 1e6, finite in float32 and past float16's largest value (65504)."""
    shutil.copytree(source, out_dir)
    weights = load_file(source / "model.safetensors")
    for name in weights:
        if "up_proj" in name or "gate_proj" in name:
            weights[name] = weights[name] * factor
    save_file(weights, out_dir / "model.safetensors", metadata={"format": "pt"})
    return out_dir
