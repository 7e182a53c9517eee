"""Fluency: does the variant still write and read ordinary text like the base model?

Three measures, all in float32 log-probabilities:
- `perplexity`: exp of the mean negative log-likelihood of the tokens of held-out neutral texts
  under the variant (its pre-prompt, if any, is context that is not scored). AurA's measure.
- `kl_from_base`: the mean, over the same token positions, of KL(base || variant) between the
  next-token distributions of the base model (no pre-prompt) and of the variant.
- `perplexity_generations_base`: exp of the mean negative log-likelihood of the variant's own
  sampled continuations under the base model, given the prompt without the pre-prompt. It
  catches a variant that reads well but writes badly (fluency of generations, as RealToxicity-
  Prompts detoxification papers measure it with a reference model).
"""

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch

from sgm_export.data.encode import Encoded, collate
from sgm_export.data.examples import Example
from sgm_export.evaluate.generate import encode_prompt, pad_id
from sgm_export.evaluate.prompts import EvalPrompt
from sgm_export.models.load import LoadedModel
from sgm_export.progress import progress_bar

FLUENCY_BATCH = 8  # full-vocabulary logits of every position: keep batches small


@dataclass(frozen=True)
class ScoringModel:
    """A model to read neutral text with: the loaded model, how to switch it on, its pre-prompt."""

    name: str
    loaded: LoadedModel
    active: Callable[[], AbstractContextManager]
    preprompt: str


@dataclass
class Fluency:
    """Token-level totals, and the measures computed from them."""

    nll_sum: float = 0.0
    kl_sum: float = 0.0
    n_tokens: int = 0
    by_modality: dict[str, "Fluency"] = field(default_factory=dict)  # `text`, `image+text`: the same measures per kind of row

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll_sum / self.n_tokens) if self.n_tokens else math.nan

    @property
    def kl(self) -> float:
        return self.kl_sum / self.n_tokens if self.n_tokens else math.nan


def pooled(parts: Iterable[Fluency]) -> Fluency:
    """Several measurements as one: totals add, so every token weighs the same."""
    total = Fluency()
    for part in parts:
        total.nll_sum += part.nll_sum
        total.kl_sum += part.kl_sum
        total.n_tokens += part.n_tokens
    return total


def pooled_modalities(parts: Iterable[Fluency]) -> Fluency:
    """`pooled`, per modality too (`by_modality` of the result pools the parts' own)."""
    parts = list(parts)
    total = pooled(parts)
    names = dict.fromkeys(name for part in parts for name in part.by_modality)
    total.by_modality = {name: pooled(part.by_modality[name] for part in parts if name in part.by_modality) for name in names}
    return total


def fluency_by_modality(variant: Fluency, base: Fluency) -> dict[str, dict]:
    """Perplexity, its change from the base model, KL and token count per kind of neutral row."""
    return {
        name: {
            "perplexity": part.perplexity,
            "perplexity_change": part.perplexity / base.by_modality[name].perplexity - 1.0,
            "kl_from_base": part.kl,
            "n_tokens": part.n_tokens,
        }
        for name, part in variant.by_modality.items()
    }


def encode_neutral(tokenizer, example: Example, preprompt: str, max_length: int) -> Encoded:
    """Context (BOS, pre-prompt, the row's own prompt) and text cut to `max_length` tokens; the mask marks the text."""
    context = encode_prompt(tokenizer, example.prompt, preprompt, max_length)
    text = tokenizer(example.text, add_special_tokens=False)["input_ids"][:max_length]
    return Encoded(context + text, [False] * len(context) + [True] * len(text))


def neutral_fluency(models: list[ScoringModel], texts: list[Example], max_length: int) -> dict[str, Fluency]:
    """Perplexity of every model on the texts, and its KL divergence from the first (the base),
    over all rows and per modality (rows with an image are read as answers about it)."""
    from sgm_export.evaluate.fluency_images import image_fluency
    from sgm_export.evaluate.prompts import IMAGE_AND_TEXT, TEXT_ONLY

    image_rows = [row for row in texts if row.image is not None]
    totals = _text_fluency(models, [row for row in texts if row.image is None], max_length)
    for model in models:
        totals[model.name].by_modality[TEXT_ONLY] = Fluency(
            totals[model.name].nll_sum, totals[model.name].kl_sum, totals[model.name].n_tokens
        )
    if image_rows:
        images = {model.name: Fluency() for model in models}
        with torch.inference_mode():
            image_fluency(models, image_rows, max_length, images)
        for model in models:
            total, part = totals[model.name], images[model.name]
            total.nll_sum, total.kl_sum, total.n_tokens = (
                total.nll_sum + part.nll_sum,
                total.kl_sum + part.kl_sum,
                total.n_tokens + part.n_tokens,
            )
            total.by_modality[IMAGE_AND_TEXT] = part
    for model in models:
        totals[model.name].by_modality = {name: part for name, part in totals[model.name].by_modality.items() if part.n_tokens}
    return totals


def _text_fluency(models: list[ScoringModel], texts: list[Example], max_length: int) -> dict[str, Fluency]:
    """`neutral_fluency` on rows without images."""
    base = models[0]
    totals = {model.name: Fluency() for model in models}
    progress = progress_bar("Perplexity", total=len(texts) * len(models), unit="texts", enabled=bool(texts))
    with torch.inference_mode(), progress as advance:
        for start in range(0, len(texts), FLUENCY_BATCH):
            chunk = texts[start : start + FLUENCY_BATCH]
            base_logprobs, targets = _text_logprobs(base, chunk, max_length)
            for model in models:
                logprobs, same_targets = (base_logprobs, targets) if model is base else _text_logprobs(model, chunk, max_length)
                if not torch.equal(same_targets, targets):
                    raise RuntimeError(f"{model.name} scored other tokens than the base model")
                total = totals[model.name]
                total.nll_sum += float(-logprobs.gather(1, targets.unsqueeze(1)).sum())
                total.kl_sum += float((base_logprobs.exp() * (base_logprobs - logprobs)).sum())
                total.n_tokens += int(targets.numel())
                advance(len(chunk))
    return totals


def _text_logprobs(model: ScoringModel, chunk: list[Example], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities [text tokens, vocab] predicting each text token, and those tokens."""
    tokenizer = model.loaded.tokenizer
    encoded = [encode_neutral(tokenizer, example, model.preprompt, max_length) for example in chunk]
    batch = collate(encoded, list(range(len(chunk))), pad_id(tokenizer))
    device = model.loaded.device
    with model.active():
        logits = model.loaded.model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)).logits
    predicted = batch.pool_mask[:, 1:].to(device)
    return logits[:, :-1][predicted].float().log_softmax(dim=-1), batch.input_ids[:, 1:].to(device)[predicted]


def generations_fluency(
    base: LoadedModel, prompts: list[EvalPrompt], continuations: list[list[list[int]]], max_length: int, batch_size: int
) -> Fluency:
    """Negative log-likelihood of sampled continuations under the base model (no pre-prompt)."""
    from sgm_export.evaluate.fluency_images import answers_nll

    tokenizer = base.tokenizer
    padding = pad_id(tokenizer)
    total = Fluency()
    answers = [
        Example(text=tokenizer.decode(tokens, skip_special_tokens=True), label=0, prompt=prompts[index].text, image=prompts[index].image)
        for index, per_prompt in enumerate(continuations)
        for tokens in per_prompt
        if tokens and prompts[index].image is not None
    ]
    with torch.inference_mode():
        answers_nll(base, [answer for answer in answers if answer.text], max_length, total)
    rows = [
        (index, tokens)
        for index, per_prompt in enumerate(continuations)
        for tokens in per_prompt
        if tokens and prompts[index].image is None
    ]
    with torch.inference_mode(), progress_bar("Perplexity of generations", total=len(rows), unit="continuations") as advance:
        for chunk in _chunks(rows, batch_size):
            contexts = [encode_prompt(tokenizer, prompts[index].text, "", max_length) for index, _ in chunk]
            width = max(len(tokens) for _, tokens in chunk)
            # [left-padded prompt | continuation, right-padded]: every continuation starts in one column.
            prompt_batch = collate([Encoded(ids, [False] * len(ids)) for ids in contexts], [], padding, padding_side="left")
            continuation_batch = collate([Encoded(tokens, [True] * len(tokens)) for _, tokens in chunk], [], padding)
            input_ids = torch.cat([prompt_batch.input_ids, continuation_batch.input_ids], dim=1).to(base.device)
            attention_mask = torch.cat([prompt_batch.attention_mask, continuation_batch.attention_mask], dim=1).to(base.device)
            position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
            logits = base.model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=width + 1
            ).logits
            logprobs = logits[:, :width].float().log_softmax(dim=-1)
            scored = continuation_batch.pool_mask.to(base.device)
            targets = continuation_batch.input_ids.to(base.device)
            total.nll_sum += float(-logprobs.gather(2, targets.unsqueeze(2)).squeeze(2)[scored].sum())
            total.n_tokens += int(scored.sum())
            advance(len(chunk))
    return total


def _chunks(rows: list, size: int) -> Iterator[list]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
