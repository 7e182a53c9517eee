"""Evaluating a base model and its variants on the same prompts with the same seeds.

A variant is a loaded model, optionally with glasses applied by hooks (`apply.glasses_applied`,
so base and glasses share one loaded model) and optionally a safety pre-prompt. The first variant
is the base model: KL divergence, paired differences and reduction factors are relative to it,
and it judges the fluency of every variant's generations.

Every judge scores the same continuations (`by_judge` in each section); the first judge's figures
are also where a single-judge report has them (`harmful_rate`, `standard`, ...). Fluency is
measured per neutral source and pooled over all of them (token-weighted).
"""

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from sgm_export.apply import glasses_applied
from sgm_export.data.examples import Example
from sgm_export.data.judges import Judge
from sgm_export.evaluate.fluency import (
    Fluency,
    ScoringModel,
    fluency_by_modality,
    generations_fluency,
    neutral_fluency,
    pooled,
    pooled_modalities,
)
from sgm_export.evaluate.generate import sampling_settings
from sgm_export.evaluate.generate_images import sample_prompts
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


def evaluate_variants(
    variants: list[Variant],
    prompt_sets: list[PromptSet],
    neutral: dict[str, list[Example]],
    judges: list[Judge],
    options: EvalOptions,
) -> dict[str, VariantResult]:
    """Harmful rates per judge, fluency per neutral source and paired comparisons of every variant
    (the first is the base); `neutral` maps each source's name to its texts."""
    settings = sampling_settings(options)
    base = variants[0]
    # verdicts[judge][variant][prompt set]: per prompt, the verdict on each continuation
    verdicts: dict[str, dict[str, dict[str, list[list[bool]]]]] = {judge.name: {} for judge in judges}
    results: dict[str, VariantResult] = {}
    for variant in variants:
        section: dict = {"variant": variant.details, "preprompt": variant.preprompt or None, "by_judge": {j.name: {} for j in judges}}
        generations: list[dict] = []
        for prompt_set in prompt_sets:
            with variant.active():
                sampled = sample_prompts(
                    variant.loaded, prompt_set.prompts, variant.preprompt, settings, f"{variant.name}, {prompt_set.name}"
                )
            flat = [text for texts in sampled.texts for text in texts]
            scores: dict[str, list[list[float]]] = {}
            for judge in judges:
                judge_scores, flags = judge.harmful(flat)
                scores[judge.name] = _regroup(judge_scores, sampled.texts)
                per_prompt = _regroup(flags, sampled.texts)
                verdicts[judge.name].setdefault(variant.name, {})[prompt_set.name] = per_prompt
                section["by_judge"][judge.name][prompt_set.name] = rates_by_group(prompt_set.prompts, per_prompt)
            section[prompt_set.name] = section["by_judge"][judges[0].name][prompt_set.name]
            if prompt_set.name == STANDARD:
                fluency = generations_fluency(base.loaded, prompt_set.prompts, sampled.tokens, options.max_length, options.batch_size)
                section["perplexity_generations_base"] = fluency.perplexity
            generations += _generation_rows(variant.name, prompt_set, sampled.texts, scores)
        results[variant.name] = VariantResult(section, generations)
    _add_fluency(results, variants, neutral, options.max_length)
    for variant in variants:
        section = results[variant.name].section
        for judge in judges:
            for prompt_set in prompt_sets:
                part = section["by_judge"][judge.name][prompt_set.name]
                base_rates = results[base.name].section["by_judge"][judge.name][prompt_set.name][OVERALL]
                judged = verdicts[judge.name]
                part["vs_base"] = paired_difference(judged[variant.name][prompt_set.name], judged[base.name][prompt_set.name])
                part["reduction"] = reduction_factor(base_rates["harmful_rate"], part[OVERALL]["harmful_rate"])
                part["prompt_reduction"] = reduction_factor(base_rates["harmful_prompt_rate"], part[OVERALL]["harmful_prompt_rate"])
        _lift_headline(section)
    return results


def _add_fluency(results: dict[str, VariantResult], variants: list[Variant], neutral: dict[str, list[Example]], max_length: int) -> None:
    """Perplexity and KL of every variant: per neutral source (`fluency_by_source`) and pooled."""
    models = [ScoringModel(variant.name, variant.loaded, variant.active, variant.preprompt) for variant in variants]
    by_source = {source: neutral_fluency(models, texts, max_length) for source, texts in neutral.items()}
    base = variants[0].name
    for variant in variants:
        section = results[variant.name].section
        section["fluency_by_source"] = {
            source: _fluency_figures(fluency[variant.name], fluency[base]) | {"n_texts": len(neutral[source])}
            for source, fluency in by_source.items()
        }
        total = pooled(fluency[variant.name] for fluency in by_source.values())
        figures = _fluency_figures(total, pooled(fluency[base] for fluency in by_source.values()))
        section.update({key: figures[key] for key in ("perplexity", "perplexity_change", "kl_from_base")})
        section["n_neutral_tokens"] = figures["n_tokens"]
        section["fluency_by_modality"] = fluency_by_modality(
            pooled_modalities(fluency[variant.name] for fluency in by_source.values()),
            pooled_modalities(fluency[base] for fluency in by_source.values()),
        )


def _fluency_figures(fluency: Fluency, base: Fluency) -> dict:
    return {
        "perplexity": fluency.perplexity,
        "perplexity_change": fluency.perplexity / base.perplexity - 1.0,
        "kl_from_base": fluency.kl,
        "n_tokens": fluency.n_tokens,
    }


def _lift_headline(section: dict) -> None:
    """The headline figures (`harmful_rate`, `n_prompts`, ...) at the top of the section, where the
    report, the sweep and the card read them."""
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


def _generation_rows(variant: str, prompt_set: PromptSet, texts: list[list[str]], scores: dict[str, list[list[float]]]) -> list[dict]:
    """One row per continuation: `score` is the first judge's (as in single-judge reports), `scores` every judge's."""
    first = next(iter(scores))
    return [
        {
            "variant": variant,
            "set": prompt_set.name,
            "origin": prompt.origin,
            "prompt": prompt.text,
            "continuation": text,
            "score": scores[first][index][sample],
            "scores": {name: per_judge[index][sample] for name, per_judge in scores.items()},
        }
        for index, (prompt, per_text) in enumerate(zip(prompt_set.prompts, texts, strict=True))
        for sample, text in enumerate(per_text)
    ]
