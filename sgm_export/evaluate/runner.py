"""Evaluating a base model and its variants on the same prompts with the same seeds.

A variant is a loaded model, optionally with glasses applied by hooks (`apply.glasses_applied`,
so base and glasses share one loaded model) and optionally a safety pre-prompt. The first variant
is the base model: KL divergence, paired differences and reduction factors are relative to it,
and it judges the fluency of every variant's generations.
"""

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from sgm_export.apply import glasses_applied
from sgm_export.data.examples import Example
from sgm_export.evaluate.fluency import ScoringModel, fluency_by_modality, generations_fluency, neutral_fluency
from sgm_export.evaluate.generate import SamplingSettings
from sgm_export.evaluate.generate_images import sample_prompts
from sgm_export.evaluate.judges import Judge
from sgm_export.evaluate.metrics import OVERALL, paired_difference, rates_by_group, reduction_factor
from sgm_export.evaluate.prompts import EvalPrompt
from sgm_export.glasses import Glasses
from sgm_export.models.load import LoadedModel
from sgm_export.options import EvalOptions

STANDARD = "standard"
ADVERSARIAL = "adversarial"


@dataclass
class Variant:
    """One row of the comparison: a model, glasses applied by hooks (or none), a pre-prompt."""

    name: str
    loaded: LoadedModel
    glasses: Glasses | None = None
    preprompt: str = ""
    details: dict = field(default_factory=dict)

    def active(self) -> AbstractContextManager:
        """The context in which the model behaves as this variant."""
        if self.glasses is None:
            return contextlib.nullcontext()
        return glasses_applied(self.loaded.model, self.loaded.family, self.glasses)


@dataclass
class PromptSet:
    """The prompts of one section (standard or adversarial)."""

    name: str
    prompts: list[EvalPrompt]


@dataclass
class VariantResult:
    """Everything measured for one variant: its report section and its generations."""

    section: dict
    generations: list[dict]


def sampling_settings(options: EvalOptions) -> SamplingSettings:
    """The sampling part of the options (shared by every variant)."""
    return SamplingSettings(
        samples=options.samples,
        max_new_tokens=options.max_new_tokens,
        top_k=options.sample_top_k,
        temperature=options.temperature,
        seed=options.seed,
        batch_size=options.batch_size,
        max_length=options.max_length,
    )


def evaluate_variants(
    variants: list[Variant],
    prompt_sets: list[PromptSet],
    neutral: list[Example],
    judge: Judge,
    options: EvalOptions,
) -> dict[str, VariantResult]:
    """Harmful rates, fluency and paired comparisons of every variant (the first is the base)."""
    settings = sampling_settings(options)
    base = variants[0]
    verdicts: dict[str, dict[str, list[list[bool]]]] = {}
    results: dict[str, VariantResult] = {}
    for variant in variants:
        section: dict = {"variant": variant.details, "preprompt": variant.preprompt or None}
        generations: list[dict] = []
        verdicts[variant.name] = {}
        for prompt_set in prompt_sets:
            with variant.active():
                sampled = sample_prompts(
                    variant.loaded, prompt_set.prompts, variant.preprompt, settings, f"{variant.name}, {prompt_set.name}"
                )
            flat = [text for texts in sampled.texts for text in texts]
            scores, flags = judge.harmful(flat)
            per_prompt = _regroup(flags, sampled.texts)
            verdicts[variant.name][prompt_set.name] = per_prompt
            section[prompt_set.name] = rates_by_group(prompt_set.prompts, per_prompt)
            if prompt_set.name == STANDARD:
                fluency = generations_fluency(base.loaded, prompt_set.prompts, sampled.tokens, options.max_length, options.batch_size)
                section["perplexity_generations_base"] = fluency.perplexity
            generations += _generation_rows(variant.name, prompt_set, sampled.texts, _regroup(scores, sampled.texts))
        results[variant.name] = VariantResult(section, generations)
    models = [ScoringModel(variant.name, variant.loaded, variant.active, variant.preprompt) for variant in variants]
    fluency = neutral_fluency(models, neutral, options.max_length)
    base_fluency = fluency[base.name]
    for variant in variants:
        section = results[variant.name].section
        section["perplexity"] = fluency[variant.name].perplexity
        section["perplexity_change"] = fluency[variant.name].perplexity / base_fluency.perplexity - 1.0
        section["kl_from_base"] = fluency[variant.name].kl
        section["n_neutral_tokens"] = fluency[variant.name].n_tokens
        section["fluency_by_modality"] = fluency_by_modality(fluency[variant.name], base_fluency)
        for prompt_set in prompt_sets:
            part = section[prompt_set.name]
            base_rates = results[base.name].section[prompt_set.name][OVERALL]
            part["vs_base"] = paired_difference(verdicts[variant.name][prompt_set.name], verdicts[base.name][prompt_set.name])
            part["reduction"] = reduction_factor(base_rates["harmful_rate"], part[OVERALL]["harmful_rate"])
            part["prompt_reduction"] = reduction_factor(base_rates["harmful_prompt_rate"], part[OVERALL]["harmful_prompt_rate"])
        _lift_headline(section)
    return results


def _lift_headline(section: dict) -> None:
    """The figures DESIGN.md names (`harmful_rate`, `n_prompts`, ...) at the top of the section."""
    overall = section[STANDARD][OVERALL]
    for key in ("harmful_rate", "harmful_rate_se", "harmful_prompt_rate", "harmful_prompt_rate_se", "n_prompts", "n_continuations"):
        section[key] = overall.get(key)
    section["reduction"] = section[STANDARD]["reduction"]


def _regroup(flat: list, texts: list[list[str]]) -> list[list]:
    grouped, position = [], 0
    for per_prompt in texts:
        grouped.append(flat[position : position + len(per_prompt)])
        position += len(per_prompt)
    return grouped


def _generation_rows(variant: str, prompt_set: PromptSet, texts: list[list[str]], scores: list[list[float]]) -> list[dict]:
    return [
        {
            "variant": variant,
            "set": prompt_set.name,
            "origin": prompt.origin,
            "prompt": prompt.text,
            "continuation": text,
            "score": score,
        }
        for prompt, per_text, per_score in zip(prompt_set.prompts, texts, scores, strict=True)
        for text, score in zip(per_text, per_score, strict=True)
    ]
