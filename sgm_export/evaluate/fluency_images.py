"""Fluency on image+text rows: how well a vision-language model (a variant) reads an answer about
an image, and how far its next-token distributions move from the base model's there.

A row is laid out as scoring lays it out (data/multimodal.py): the chat's user turn holds the
image and the row's `prompt` (after the variant's pre-prompt, if any), and the row's `text` is
the assistant's answer; only the answer's tokens are scored. The same layout, with the prompt
as the user turn and the sampled continuation as the answer, gives the base model's perplexity of
a variant's answers to image prompts (re-tokenized from their text).
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import torch

from sgm_export.data.examples import Example
from sgm_export.data.multimodal import MultimodalEncoder
from sgm_export.evaluate.generate import PREPROMPT_SEPARATOR, pad_id
from sgm_export.models.load import LoadedModel
from sgm_export.progress import progress_bar
from sgm_export.score.runner import model_inputs

if TYPE_CHECKING:
    from sgm_export.evaluate.fluency import Fluency, ScoringModel

IMAGE_FLUENCY_BATCH = 4  # image rows carry hundreds of image tokens each


def answer_logprobs(
    loaded: LoadedModel, active: Callable[[], AbstractContextManager], rows: list[Example], max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities [answer tokens, vocab] predicting each answer token of the rows, and those tokens."""
    encoder = MultimodalEncoder(loaded.processor, loaded.family, loaded.model, max_length)
    batch = encoder.collate([encoder.encode(row) for row in rows], list(range(len(rows))), pad_id(loaded.tokenizer))
    with active():
        logits = loaded.model(**model_inputs(loaded, batch)).logits
    predicted = batch.pool_mask[:, 1:].to(logits.device)
    return logits[:, :-1][predicted].float().log_softmax(dim=-1), batch.input_ids[:, 1:].to(logits.device)[predicted]


def with_preprompt(row: Example, preprompt: str) -> Example:
    """The row with the pre-prompt before its own prompt, inside the user turn."""
    if not preprompt:
        return row
    prompt = preprompt + PREPROMPT_SEPARATOR + row.prompt if row.prompt else preprompt
    return Example(text=row.text, label=row.label, prompt=prompt, image=row.image, origin=row.origin)


def image_fluency(models: list["ScoringModel"], rows: list[Example], max_length: int, totals: dict[str, "Fluency"]) -> None:
    """Add each model's negative log-likelihood and KL from the first (the base) on the rows to `totals`."""
    with progress_bar("Perplexity with images", total=len(rows) * len(models), unit="rows") as advance:
        for start in range(0, len(rows), IMAGE_FLUENCY_BATCH):
            chunk = rows[start : start + IMAGE_FLUENCY_BATCH]
            _add_chunk(models, chunk, max_length, totals)
            advance(len(chunk) * len(models))


def _add_chunk(models: list["ScoringModel"], chunk: list[Example], max_length: int, totals: dict[str, "Fluency"]) -> None:
    """`image_fluency` on one batch of rows."""
    base = models[0]
    base_logprobs, targets = answer_logprobs(base.loaded, base.active, [with_preprompt(r, base.preprompt) for r in chunk], max_length)
    for model in models:
        if model is base:
            logprobs = base_logprobs
        else:
            logprobs, same = answer_logprobs(model.loaded, model.active, [with_preprompt(r, model.preprompt) for r in chunk], max_length)
            if not torch.equal(same, targets):
                raise RuntimeError(f"{model.name} scored other tokens than the base model")
        total = totals[model.name]
        total.nll_sum += float(-logprobs.gather(1, targets.unsqueeze(1)).sum())
        total.kl_sum += float((base_logprobs.exp() * (base_logprobs - logprobs)).sum())
        total.n_tokens += int(targets.numel())


def answers_nll(base: LoadedModel, rows: list[Example], max_length: int, total: "Fluency") -> None:
    """Add the base model's negative log-likelihood of the rows' answers to `total`."""
    for start in range(0, len(rows), IMAGE_FLUENCY_BATCH):
        logprobs, targets = answer_logprobs(base, _nothing, rows[start : start + IMAGE_FLUENCY_BATCH], max_length)
        total.nll_sum += float(-logprobs.gather(1, targets.unsqueeze(1)).sum())
        total.n_tokens += int(targets.numel())


def _nothing() -> AbstractContextManager:
    import contextlib

    return contextlib.nullcontext()
