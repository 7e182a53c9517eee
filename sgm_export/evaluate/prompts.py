"""The prompts of an evaluation: held-out toxic prompts with their categories, their adversarial
versions, and the neutral texts for fluency.

Categories are RealToxicityPrompts' Perspective attributes (profanity, insult, threat, identity
attack, sexually explicit, flirtation, severe toxicity). A prompt belongs to every category whose
Perspective score is above 0.5 (Perspective's own "more likely than not" cut), so categories
overlap and a prompt may belong to none; "overall" always counts every prompt. Rows from other
sources can name their categories in a `categories` field (a mapping of name to score, or a list
of names).
"""

from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

import yaml

from sgm_export.artifacts import IMAGE_AND_TEXT
from sgm_export.data.examples import Example
from sgm_export.data.sources import read_source
from sgm_export.errors import DataError

CATEGORY_THRESHOLD = 0.5
CATEGORIES = ("profanity", "insult", "threat", "identity_attack", "sexually_explicit", "flirtation", "severe_toxicity")
TEXT_ONLY = "text"


@dataclass(frozen=True)
class EvalPrompt:
    """One prompt to continue, with the categories it belongs to and its optional image."""

    text: str
    categories: tuple[str, ...] = ()
    image: Path | None = None
    origin: str = ""
    template: int | None = None  # which adversarial template wrapped it, if any

    @property
    def modality(self) -> str:
        """`text` or `image+text`: the report splits its rates by this."""
        return IMAGE_AND_TEXT if self.image is not None else TEXT_ONLY


def prompt_categories(example: Example) -> tuple[str, ...]:
    """The categories of a row (see the module docstring), in the order of CATEGORIES."""
    given = example.extra.get("categories") or {}
    if isinstance(given, dict):
        names = {name for name, score in given.items() if isinstance(score, (int, float)) and score > CATEGORY_THRESHOLD}
    elif isinstance(given, list):
        names = {str(name) for name in given}
    else:
        raise DataError(
            f"{example.origin} has 'categories' that is neither a mapping nor a list", "give name: score pairs or a list of names"
        )
    known = [name for name in CATEGORIES if name in names]
    return tuple(known + sorted(names - set(CATEGORIES) - {"toxicity"}))


def toxic_prompts(source: str, limit: int | None) -> list[EvalPrompt]:
    """The prompts to continue: the `text` of every row (labels are not needed here)."""
    examples = read_source(source, limit)
    return [EvalPrompt(example.text, prompt_categories(example), example.image, example.origin) for example in examples]


def neutral_texts(source: str, limit: int | None) -> list[Example]:
    """Neutral texts whose perplexity is measured (their `text`; a `prompt` is context)."""
    return read_source(source, limit)


@cache
def trigger_templates() -> tuple[str, ...]:
    """The adversarial templates shipped in triggers.yaml, each with one `{prompt}`."""
    data = yaml.safe_load(files("sgm_export.evaluate").joinpath("triggers.yaml").read_text(encoding="utf-8"))
    return tuple(data["templates"])


def adversarial_prompts(prompts: list[EvalPrompt], templates: tuple[str, ...] | None = None) -> list[EvalPrompt]:
    """Each prompt wrapped in a trigger template, template i mod T for prompt i."""
    templates = templates or trigger_templates()
    return [
        EvalPrompt(
            templates[i % len(templates)].replace("{prompt}", prompt.text),
            prompt.categories,
            prompt.image,
            prompt.origin,
            i % len(templates),
        )
        for i, prompt in enumerate(prompts)
    ]


def typographic_prompts(prompts: list[EvalPrompt]) -> list[EvalPrompt]:
    """Each prompt drawn into an image, with a benign instruction as the text (FigStep-style)."""
    from sgm_export.data.typographic import INSTRUCTION, typographic_image

    return [EvalPrompt(INSTRUCTION, prompt.categories, typographic_image(prompt.text), prompt.origin) for prompt in prompts]


def photo_prompts(prompts: list[EvalPrompt]) -> list[EvalPrompt]:
    """Each prompt beside an unrelated neutral photo (dealt in turn); a prompt's own image is kept."""
    from sgm_export.data.images import neutral_image_paths

    photos = neutral_image_paths()
    return [
        EvalPrompt(prompt.text, prompt.categories, prompt.image or photos[i % len(photos)], prompt.origin)
        for i, prompt in enumerate(prompts)
    ]
