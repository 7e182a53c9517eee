"""Sampling continuations of prompts: a KV-cached decode loop, batched with left padding, reproducibly.

Every prompt gets `samples` continuations of at most `max_new_tokens` tokens (fewer when EOS comes
first). Why our own loop and not transformers' `generate`: its sampling path (logits processors
over the full vocabulary, warpers, a multinomial draw) took 4.7x the time of this loop on
Gemma-3-270M, whose 262k-token vocabulary makes every full-vocabulary operation expensive. Here a
step is one cached forward pass of the last token, the lm_head on the last position only, a
`torch.topk` and an inverse-CDF draw (sampling.py). The loop ends when every row has hit EOS.

Continuation s of prompt i draws its random numbers from its own generator, seeded from (seed, i,
s) (sampling.py): its tokens do not depend on the batch it lands in, base and variants see the
same numbers (a paired comparison), and any batch size gives the same tokens where the logits
are the same. Rows are sorted by prompt length so batches waste little padding.

A prompt is the tokenizer's leading special tokens, then the pre-prompt (if any) followed by a
blank line, then the prompt text (its last `max_length` tokens when longer).
"""

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from sgm_export.data.encode import Encoded, collate
from sgm_export.errors import DataError
from sgm_export.evaluate.prompts import EvalPrompt
from sgm_export.evaluate.sampling import continuation_uniforms, draw_tokens
from sgm_export.models.load import LoadedModel
from sgm_export.options import CollectOptions, EvalOptions
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


def sampling_settings(options: EvalOptions | CollectOptions) -> SamplingSettings:
    """The sampling part of eval's or collect's options (the same for every variant of an eval)."""
    return SamplingSettings(
        samples=options.samples,
        max_new_tokens=options.max_new_tokens,
        top_k=options.sample_top_k,
        temperature=options.temperature,
        seed=options.seed,
        batch_size=options.batch_size,
        max_length=options.max_length,
    )


def encode_prompt(tokenizer, text: str, preprompt: str, max_length: int) -> list[int]:
    """Token ids of one prompt, as described in the module docstring."""
    prefix = tokenizer("", add_special_tokens=True)["input_ids"]
    context = tokenizer(preprompt + PREPROMPT_SEPARATOR, add_special_tokens=False)["input_ids"] if preprompt else []
    body = tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:]
    return prefix + context + body


def check_text_only(prompts: list[EvalPrompt]) -> None:
    """This loop continues text; image prompts go through `generate_images.sample_prompts`."""
    with_image = [prompt for prompt in prompts if prompt.image is not None]
    if with_image:
        raise DataError(f"{with_image[0].origin} has an image", "continue image prompts with generate_images.sample_prompts")


def batch_plan(lengths: list[int], settings: SamplingSettings) -> list[list[tuple[int, int]]]:
    """(prompt, sample) rows per batch, `batch_size` each: longest prompts first (prompts of
    `lengths` tokens), so that a batch's rows need little padding."""
    order = sorted(range(len(lengths)), key=lambda index: (-lengths[index], index))
    rows = [(index, sample) for index in order for sample in range(settings.samples)]
    return [rows[start : start + settings.batch_size] for start in range(0, len(rows), settings.batch_size)]


def sample_continuations(
    loaded: LoadedModel, prompts: list[EvalPrompt], preprompt: str, settings: SamplingSettings, description: str = "Generating"
) -> Continuations:
    """Sample `settings.samples` continuations of every prompt (see the module docstring)."""
    check_text_only(prompts)
    tokenizer = loaded.tokenizer
    padding = loaded.pad_token_id
    eos_ids = _eos_ids(loaded.model, tokenizer)
    encoded = [encode_prompt(tokenizer, prompt.text, preprompt, settings.max_length) for prompt in prompts]
    tokens: list[list[list[int]]] = [[[] for _ in range(settings.samples)] for _ in prompts]
    texts: list[list[str]] = [["" for _ in range(settings.samples)] for _ in prompts]
    with torch.inference_mode(), progress_bar(description, total=len(prompts) * settings.samples, unit="continuations") as advance:
        for rows in batch_plan([len(ids) for ids in encoded], settings):
            batch = collate([Encoded(encoded[index], [True] * len(encoded[index])) for index, _ in rows], [], padding, padding_side="left")
            uniforms = continuation_uniforms(settings.seed, rows, settings.max_new_tokens)
            sequences = decode(loaded, batch.input_ids, batch.attention_mask, uniforms, settings, eos_ids, padding)
            for (index, sample), sequence in zip(rows, sequences, strict=True):
                tokens[index][sample] = sequence
                texts[index][sample] = tokenizer.decode(sequence, skip_special_tokens=True)
            advance(len(rows))
    return Continuations(tokens, texts)


def decode(
    loaded: LoadedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    uniforms: torch.Tensor,
    settings: SamplingSettings,
    eos_ids: list[int],
    padding: int,
) -> list[list[int]]:
    """New tokens of every row of a left-padded batch, each cut before its first EOS.

    Positions count from each row's first real token (as `generate` does for left padding);
    rows that have finished keep feeding the padding token until all have.
    """
    model, device = loaded.model, loaded.device
    attention_mask = attention_mask.to(device)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    uniforms = uniforms.to(device)
    eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=device)
    logits = model(
        input_ids=input_ids.to(device), attention_mask=attention_mask, position_ids=position_ids, cache=cache, logits_to_keep=1
    ).logits[:, -1]
    steps = []
    for step in range(settings.max_new_tokens):
        token = draw_tokens(logits, uniforms[:, step], settings.top_k, settings.temperature).masked_fill(finished, padding)
        steps.append(token)
        finished |= torch.isin(token, eos)
        if step + 1 == settings.max_new_tokens or bool(finished.all()):
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(attention_mask.shape[0], 1)], dim=1)
        position_ids = position_ids[:, -1:] + 1
        logits = model(
            input_ids=token.unsqueeze(1), attention_mask=attention_mask, position_ids=position_ids, cache=cache, logits_to_keep=1
        ).logits[:, -1]
    return [_until_eos(sequence, eos_ids) for sequence in torch.stack(steps, dim=1).tolist()]


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
