"""Putting an evaluation together from what the user names: which models, which variants, which
prompts, which judge. Shared by `eval`, `sweep` and `run`."""

from dataclasses import dataclass

from sgm_export.artifacts import ReportHeader
from sgm_export.data.examples import Example
from sgm_export.data.judges import Judge, load_judge
from sgm_export.errors import SgmError
from sgm_export.evaluate.prompts import adversarial_prompts, neutral_texts, photo_prompts, toxic_prompts, typographic_prompts
from sgm_export.evaluate.runner import ADVERSARIAL, STANDARD, PromptSet, Variant
from sgm_export.glasses import Glasses
from sgm_export.models.load import LoadedModel
from sgm_export.options import EvalOptions

BASE = "base"
GLASSES = "glasses"
PREPROMPT = "preprompt"
BOTH = "glasses+preprompt"
TYPOGRAPHIC = "typographic"  # the visual triggers' sections (report.json and report.md)
BESIDE_PHOTO = "beside_photo"


@dataclass
class EvalInputs:
    """The prompts, neutral texts (per source) and judges of one evaluation (loaded before any model runs)."""

    prompt_sets: list[PromptSet]
    neutral: dict[str, list[Example]]
    judges: list[Judge]


def load_inputs(options: EvalOptions) -> EvalInputs:
    """Read the prompts and neutral texts and load the judges, so that bad input fails early."""
    if options.neutral in options.neutral_extra:
        raise SgmError(f"--neutral-extra repeats --neutral ({options.neutral})", "name each neutral source once")
    prompts = toxic_prompts(options.prompts, options.limit)
    sets = [PromptSet(STANDARD, prompts)] + ([PromptSet(ADVERSARIAL, adversarial_prompts(prompts))] if options.adversarial else [])
    if options.visual_triggers:
        sets += [PromptSet(TYPOGRAPHIC, typographic_prompts(prompts)), PromptSet(BESIDE_PHOTO, photo_prompts(prompts))]
    neutral = {options.neutral: neutral_texts(options.neutral, options.neutral_limit)}
    neutral |= {source: neutral_texts(source, None) for source in options.neutral_extra}
    return EvalInputs(sets, neutral, [load_judge(name, options.judge_threshold) for name in options.judge])


def comparison_variants(base: LoadedModel, variant: LoadedModel | None, glasses: Glasses, preprompt: str | None) -> list[Variant]:
    """base, glasses, and with a pre-prompt also preprompt and glasses+preprompt (SGM*).

    `variant` is a loaded export that carries the glasses itself; without one, the glasses are
    applied to the base model by hooks (one model in memory).
    """
    described = {"glasses": glasses.metadata.flat()}
    with_glasses = Variant(GLASSES, variant, None, "", described) if variant is not None else Variant(GLASSES, base, glasses, "", described)
    variants = [Variant(BASE, base), with_glasses]
    if preprompt:
        variants += [
            Variant(PREPROMPT, base, None, preprompt),
            Variant(BOTH, with_glasses.loaded, with_glasses.glasses, preprompt, described),
        ]
    return variants


def require_same_tokenizer(base: LoadedModel, variant: LoadedModel) -> None:
    """Base and variant must read the prompts as the same tokens, or the comparison is unfair."""
    if base.tokenizer.get_vocab() != variant.tokenizer.get_vocab():
        raise SgmError(
            f"{variant.source.name} and {base.source.name} have different tokenizers", "pass the model the export was made from as --base"
        )


def header(model: str, base_model: str, inputs: EvalInputs, options: EvalOptions, glasses: Glasses | None) -> dict:
    """The part of report.json that says what was evaluated and how (`artifacts.ReportHeader`)."""
    return ReportHeader(
        model=model,
        base_model=base_model,
        judge=inputs.judges[0].describe(),
        judges=[judge.describe() for judge in inputs.judges],
        settings=options.model_dump(mode="json"),
        glasses_settings=glasses.metadata.flat() if glasses is not None else None,
        n_prompts=len(inputs.prompt_sets[0].prompts),
        n_neutral_texts=sum(len(texts) for texts in inputs.neutral.values()),
        neutral_sources={source: len(texts) for source, texts in inputs.neutral.items()},
        n_image_prompts=sum(prompt.image is not None for prompt in inputs.prompt_sets[0].prompts),
    ).model_dump(mode="json", exclude={"sgm_export_version"})
