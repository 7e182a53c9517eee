"""Sampling continuations of image+text prompts, and the dispatch between text and image prompts.

An image prompt is rendered as scoring renders a row (data/multimodal.py): the processor's chat
template with a user turn holding the image and the prompt (the pre-prompt, when given, first,
then a blank line), then the assistant header; PaliGemma uses its processor's own layout. The
model then answers as the assistant, and the judge reads the answer.

As for text prompts (generate.py), every variant sees the same prompts in the same batches with
the same seeds: batch b of the image prompts is sampled after `torch.manual_seed(seed + b)`. Each
prompt is repeated `samples` times inside its batch (rather than `num_return_sequences`, which
some vision-language models cannot expand over their pixel inputs), left-padded.
"""

import torch
from transformers import GenerationConfig

from sgm_export.data.encode import Batch
from sgm_export.data.examples import Example
from sgm_export.data.multimodal import MultimodalEncoded, MultimodalEncoder, _keys
from sgm_export.errors import DataError
from sgm_export.evaluate.generate import (
    PREPROMPT_SEPARATOR,
    Continuations,
    SamplingSettings,
    _eos_ids,
    _until_eos,
    sample_continuations,
)
from sgm_export.evaluate.prompts import EvalPrompt
from sgm_export.models.load import LoadedModel
from sgm_export.progress import progress_bar
from sgm_export.score.runner import model_inputs


def sample_prompts(
    loaded: LoadedModel, prompts: list[EvalPrompt], preprompt: str, settings: SamplingSettings, description: str = "Generating"
) -> Continuations:
    """Continuations of every prompt: text prompts through generate.py, image prompts here."""
    with_image = [index for index, prompt in enumerate(prompts) if prompt.image is not None]
    if with_image and not loaded.family.multimodal:
        raise DataError(
            f"{len(with_image)} prompts have an image (the first: {prompts[with_image[0]].origin}), "
            f"but {loaded.source.name} is a text-only model",
            "evaluate a vision-language model, or use prompts without images",
        )
    text_only = [index for index in range(len(prompts)) if prompts[index].image is None]
    tokens: list[list[list[int]]] = [[] for _ in prompts]
    texts: list[list[str]] = [[] for _ in prompts]
    for indices, sample in ((text_only, sample_continuations), (with_image, sample_image_continuations)):
        if not indices:
            continue
        part = sample(loaded, [prompts[index] for index in indices], preprompt, settings, description)
        for position, index in enumerate(indices):
            tokens[index], texts[index] = part.tokens[position], part.texts[position]
    return Continuations(tokens, texts)


def sample_image_continuations(
    loaded: LoadedModel, prompts: list[EvalPrompt], preprompt: str, settings: SamplingSettings, description: str = "Generating"
) -> Continuations:
    """`settings.samples` sampled answers to every image+text prompt (see the module docstring)."""
    model, tokenizer = loaded.model, loaded.tokenizer
    encoder = MultimodalEncoder(loaded.processor, loaded.family, model, settings.max_length)
    padding = loaded.pad_token_id
    eos_ids = _eos_ids(model, tokenizer)
    config = GenerationConfig(
        do_sample=True,
        max_new_tokens=settings.max_new_tokens,
        top_k=settings.top_k,
        top_p=1.0,
        temperature=settings.temperature,
        pad_token_id=padding,
        eos_token_id=eos_ids,
    )
    per_batch = max(1, settings.batch_size // settings.samples)
    tokens: list[list[list[int]]] = [[] for _ in prompts]
    texts: list[list[str]] = [[] for _ in prompts]
    with torch.inference_mode(), progress_bar(description, total=len(prompts) * settings.samples, unit="continuations") as advance:
        for number, start in enumerate(range(0, len(prompts), per_batch)):
            indices = list(range(start, min(start + per_batch, len(prompts))))
            encoded = [encoder.encode(question(prompts[index], preprompt)) for index in indices]
            inputs = model_inputs(loaded, left_collate([item for item in encoded for _ in range(settings.samples)], padding, encoder))
            torch.manual_seed(settings.seed + number)
            output = model.generate(**inputs, generation_config=config)
            for row, sequence in enumerate(output[:, inputs["input_ids"].shape[1] :].tolist()):
                kept = _until_eos(sequence, eos_ids)
                tokens[indices[row // settings.samples]].append(kept)
                texts[indices[row // settings.samples]].append(tokenizer.decode(kept, skip_special_tokens=True))
            advance(len(indices) * settings.samples)
    return Continuations(tokens, texts)


def question(prompt: EvalPrompt, preprompt: str) -> Example:
    """The prompt as a row with an empty answer: the user turn (pre-prompt, prompt, image) alone."""
    text = preprompt + PREPROMPT_SEPARATOR + prompt.text if preprompt else prompt.text
    return Example(text="", label=0, prompt=text, image=prompt.image, origin=prompt.origin)


def left_collate(items: list[MultimodalEncoded], pad: int, encoder: MultimodalEncoder) -> Batch:
    """As `MultimodalEncoder.collate`, with the token tensors padded on the left for generation."""
    batch = encoder.collate(items, list(range(len(items))), pad)
    width = batch.input_ids.shape[1]
    batch.input_ids = torch.full_like(batch.input_ids, pad)
    batch.attention_mask = torch.zeros_like(batch.attention_mask)
    for row, item in enumerate(items):
        batch.input_ids[row, width - len(item.input_ids) :] = torch.tensor(item.input_ids)
        batch.attention_mask[row, width - len(item.input_ids) :] = 1
    for key in _keys(items, "per_token"):
        padded = []
        for item in items:
            tensor = item.per_token.get(key)
            target = torch.zeros((1, width, *batch.inputs[key].shape[2:]), dtype=batch.inputs[key].dtype)
            if tensor is not None:
                target[(slice(None), slice(width - tensor.shape[1], width), *(slice(0, size) for size in tensor.shape[2:]))] = tensor
            padded.append(target)
        batch.inputs[key] = torch.cat(padded)
    return batch
