"""Sampling continuations of prompts, batched with left padding, reproducibly.

Every prompt gets `samples` continuations of at most `max_new_tokens` tokens. Prompts are sorted
by length and grouped into batches the same way for every variant, and each batch is sampled
after `torch.manual_seed(seed + batch number)`: base and variants draw the same random numbers, so
their differences come from the model, not from the dice (a paired comparison).

A prompt is the tokenizer's leading special tokens, then the pre-prompt (if any) followed by a
blank line, then the prompt text (its last `max_length` tokens when longer).
"""

from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from sgm_export.data.encode import Encoded, collate
from sgm_export.errors import DataError
from sgm_export.evaluate.prompts import EvalPrompt
from sgm_export.models.load import LoadedModel
from sgm_export.progress import progress_bar

PREPROMPT_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class SamplingSettings:
    """What decides the sampled continuations; identical for base and every variant."""

    samples: int
    max_new_tokens: int
    top_k: int  # 0: the full distribution
    temperature: float
    seed: int
    batch_size: int
    max_length: int


@dataclass
class Continuations:
    """The sampled continuations: per prompt, `samples` token lists (up to EOS) and texts."""

    tokens: list[list[list[int]]]
    texts: list[list[str]]


def pad_id(tokenizer) -> int:
    """The padding id: the tokenizer's, else its EOS (many causal LMs have no pad token)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def encode_prompt(tokenizer, text: str, preprompt: str, max_length: int) -> list[int]:
    """Token ids of one prompt, as described in the module docstring."""
    prefix = tokenizer("", add_special_tokens=True)["input_ids"]
    context = tokenizer(preprompt + PREPROMPT_SEPARATOR, add_special_tokens=False)["input_ids"] if preprompt else []
    body = tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:]
    return prefix + context + body


def check_text_only(loaded: LoadedModel, prompts: list[EvalPrompt]) -> None:
    """Image rows need a processor and a multimodal model; refuse them clearly elsewhere."""
    with_image = [prompt for prompt in prompts if prompt.image is not None]
    if with_image and not loaded.family.multimodal:
        raise DataError(
            f"{with_image[0].origin} has an image but {loaded.source.name} is a text-only model",
            "evaluate a multimodal model, or use prompts without images",
        )
    if with_image:
        raise DataError(f"{with_image[0].origin} has an image, and image prompts are not supported by eval yet", "use text prompts")


def batch_plan(tokenizer, prompts: list[EvalPrompt], settings: SamplingSettings) -> list[list[int]]:
    """Prompt indices per batch: sorted by length (longest first), `batch_size // samples` each."""
    lengths = [len(tokenizer(prompt.text, add_special_tokens=False)["input_ids"][-settings.max_length :]) for prompt in prompts]
    order = sorted(range(len(prompts)), key=lambda index: (-lengths[index], index))
    per_batch = max(1, settings.batch_size // settings.samples)
    return [order[start : start + per_batch] for start in range(0, len(order), per_batch)]


def sample_continuations(
    loaded: LoadedModel, prompts: list[EvalPrompt], preprompt: str, settings: SamplingSettings, description: str = "Generating"
) -> Continuations:
    """Sample `settings.samples` continuations of every prompt (see the module docstring)."""
    check_text_only(loaded, prompts)
    model, tokenizer = loaded.model, loaded.tokenizer
    padding = pad_id(tokenizer)
    eos_ids = _eos_ids(model, tokenizer)
    config = GenerationConfig(
        do_sample=True,
        max_new_tokens=settings.max_new_tokens,
        top_k=settings.top_k,
        top_p=1.0,
        temperature=settings.temperature,
        num_return_sequences=settings.samples,
        pad_token_id=padding,
        eos_token_id=eos_ids,
    )
    tokens: list[list[list[int]]] = [[] for _ in prompts]
    texts: list[list[str]] = [[] for _ in prompts]
    with torch.inference_mode(), progress_bar(description, total=len(prompts) * settings.samples, unit="continuations") as advance:
        for number, indices in enumerate(batch_plan(tokenizer, prompts, settings)):
            encoded = [
                Encoded(ids, [True] * len(ids))
                for ids in (encode_prompt(tokenizer, prompts[i].text, preprompt, settings.max_length) for i in indices)
            ]
            batch = collate(encoded, indices, padding, padding_side="left")
            torch.manual_seed(settings.seed + number)
            output = model.generate(
                input_ids=batch.input_ids.to(loaded.device),
                attention_mask=batch.attention_mask.to(loaded.device),
                generation_config=config,
            )
            new_tokens = output[:, batch.input_ids.shape[1] :].tolist()
            for row, sequence in enumerate(new_tokens):
                prompt_index = indices[row // settings.samples]
                kept = _until_eos(sequence, eos_ids)
                tokens[prompt_index].append(kept)
                texts[prompt_index].append(tokenizer.decode(kept, skip_special_tokens=True))
            advance(len(new_tokens))
    return Continuations(tokens, texts)


def _eos_ids(model, tokenizer) -> list[int]:
    configured = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = configured if isinstance(configured, list) else [configured] if configured is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _until_eos(sequence: list[int], eos_ids: list[int]) -> list[int]:
    for position, token in enumerate(sequence):
        if token in eos_ids:
            return sequence[:position]
    return sequence
