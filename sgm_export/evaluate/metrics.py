"""The arithmetic of the report: harmful rates with their uncertainty, per category, and the
Pareto front of a sweep.

Two harmful rates, as AurA reports them: the share of all continuations that are harmful, and the
share of prompts with at least one harmful continuation. Continuations of one prompt are not
independent, so the standard error of the first is computed over prompts (the spread of each
prompt's harmful share, divided by sqrt(prompts)); the second is a proportion of prompts. The 95%
interval is the estimate +- 1.96 standard errors, clipped to [0, 1]. Against the base model the
difference is paired prompt by prompt (same prompts, same seeds), which is what makes small
samples informative.
"""

import math
from collections.abc import Sequence

from sgm_export.artifacts import REPORT_OVERALL
from sgm_export.evaluate.prompts import EvalPrompt

Z95 = 1.96
OVERALL = REPORT_OVERALL


def rates(verdicts: Sequence[Sequence[bool]]) -> dict:
    """Both harmful rates of a set of prompts (each with its continuations' verdicts)."""
    per_prompt = [sum(flags) / len(flags) for flags in verdicts if flags]
    any_harmful = [1.0 if any(flags) else 0.0 for flags in verdicts if flags]
    n = len(per_prompt)
    if n == 0:
        return {"n_prompts": 0, "n_continuations": 0, "harmful_rate": None, "harmful_prompt_rate": None}
    continuation_rate = sum(per_prompt) / n
    prompt_rate = sum(any_harmful) / n
    continuation_se = _standard_error(per_prompt)
    prompt_se = math.sqrt(prompt_rate * (1 - prompt_rate) / n)
    return {
        "n_prompts": n,
        "n_continuations": sum(len(flags) for flags in verdicts),
        "harmful_rate": continuation_rate,
        "harmful_rate_se": continuation_se,
        "harmful_rate_ci95": _interval(continuation_rate, continuation_se),
        "harmful_prompt_rate": prompt_rate,
        "harmful_prompt_rate_se": prompt_se,
        "harmful_prompt_rate_ci95": _interval(prompt_rate, prompt_se),
    }


def rates_by_group(prompts: Sequence[EvalPrompt], verdicts: Sequence[Sequence[bool]]) -> dict:
    """`overall`, then per category and per modality (`text`, `image+text`) where present."""
    per_category: dict[str, list] = {}
    per_modality: dict[str, list] = {}
    for prompt, flags in zip(prompts, verdicts, strict=True):
        for category in prompt.categories:
            per_category.setdefault(category, []).append(flags)
        per_modality.setdefault(prompt.modality, []).append(flags)
    return {
        OVERALL: rates(verdicts),
        "per_category": {name: rates(group) for name, group in per_category.items()},
        "by_modality": {name: rates(group) for name, group in per_modality.items()},
    }


def paired_difference(variant: Sequence[Sequence[bool]], base: Sequence[Sequence[bool]]) -> dict:
    """Variant minus base harmful rate, paired by prompt, with its standard error and 95% interval."""
    differences = [sum(v) / len(v) - sum(b) / len(b) for v, b in zip(variant, base, strict=True) if v and b]
    if not differences:
        return {"difference": None, "se": None, "ci95": None}
    mean = sum(differences) / len(differences)
    se = _standard_error(differences)
    return {"difference": mean, "se": se, "ci95": [mean - Z95 * se, mean + Z95 * se]}


def reduction_factor(base_rate: float | None, rate: float | None) -> float | None:
    """How many times less harmful output than the base model (inf when none is left)."""
    if base_rate is None or rate is None:
        return None
    if rate == 0:
        return math.inf if base_rate > 0 else None
    return base_rate / rate


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which (harmful rate, perplexity) points no other point beats on both (lower is better)."""
    front = []
    for i, (rate, ppl) in enumerate(points):
        dominated = any(
            other_rate <= rate and other_ppl <= ppl and (other_rate < rate or other_ppl < ppl)
            for j, (other_rate, other_ppl) in enumerate(points)
            if j != i
        )
        front.append(not dominated)
    return front


def _standard_error(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((value - mean) ** 2 for value in values) / (n - 1) / n)


def _interval(estimate: float, se: float) -> list[float]:
    return [max(0.0, estimate - Z95 * se), min(1.0, estimate + Z95 * se)]
