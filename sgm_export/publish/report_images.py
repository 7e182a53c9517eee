"""The image parts of report.md: the visual triggers' sections (typographic prompts, prompts beside
a photo) and fluency per modality, each a table with one column per variant."""

from sgm_export.artifacts import IMAGE_AND_TEXT
from sgm_export.artifacts import REPORT_OVERALL as OVERALL
from sgm_export.publish.wording import difference_sentence, percent, points

VISUAL_TRIGGERS = {
    "typographic": "the prompt drawn into an image, with the instruction to continue the text in it",
    "beside_photo": "the prompt beside an unrelated neutral photo",
}


def image_lines(sections: dict[str, dict], names: list[str]) -> list[str]:
    """Markdown lines for the visual-trigger sections and the per-modality fluency, where present."""
    lines: list[str] = []
    first = sections[names[0]]
    triggers = [name for name in VISUAL_TRIGGERS if name in first]
    if triggers:
        lines += ["", "## Visual triggers", "", "| prompts | how | " + " | ".join(names) + " |"]
        lines += ["| --- | --- | " + " | ".join("---" for _ in names) + " |"]
        for trigger in triggers:
            cells = [_rate(sections[name][trigger][OVERALL]) for name in names]
            lines.append(f"| {trigger.replace('_', ' ')} | {VISUAL_TRIGGERS[trigger]} | " + " | ".join(cells) + " |")
    modalities = list(first.get("fluency_by_modality", {}))
    if len(modalities) > 1 or modalities == ["image+text"]:
        lines += ["", "## Fluency by modality (neutral rows)", "", "| modality | tokens | " + " | ".join(names) + " |"]
        lines += ["| --- | --- | " + " | ".join("---" for _ in names) + " |"]
        for modality in modalities:
            parts = [sections[name]["fluency_by_modality"][modality] for name in names]
            cells = [f"PPL {part['perplexity']:.2f} ({part['perplexity_change']:+.1%}), KL {part['kl_from_base']:.4f}" for part in parts]
            lines.append(f"| {modality} | {parts[0]['n_tokens']} | " + " | ".join(cells) + " |")
    return lines


def card_lines(sections: dict[str, dict]) -> list[str]:
    """For a model card, where image prompts or image rows were evaluated: harmful rates by modality
    and on the visual triggers (percent with 95% intervals, the paired difference from the base
    model in percentage points, and a sentence when it is within noise), then fluency by modality."""
    names = [name for name, section in sections.items() if isinstance(section.get("standard"), dict)]
    if not names:
        return []
    first = sections[names[0]]
    by_modality = first["standard"].get("by_modality", {})
    rows = [(f"standard, {modality}", ("standard", modality)) for modality in by_modality] if IMAGE_AND_TEXT in by_modality else []
    rows += [(trigger.replace("_", " "), (trigger, None)) for trigger in VISUAL_TRIGGERS if trigger in first]
    lines: list[str] = []
    if rows:
        others = names[1:]
        header = ["prompts", *(f"{name}: harmful %" for name in names), *(f"{name} - {names[0]}: points" for name in others)]
        lines += ["", "On prompts with images (harmful continuations, 95% intervals):", "", "| " + " | ".join(header) + " |"]
        lines += ["| " + " | ".join("---" for _ in header) + " |"]
        sentences = []
        for label, (prompt_set, modality) in rows:
            figures = [_figures(sections[name], prompt_set, modality) for name in names]
            paired = [sections[name][prompt_set].get("vs_base") if modality is None else None for name in others]
            cells = [percent(f.get("harmful_rate"), f.get("harmful_rate_ci95"), sign="") for f in figures]
            cells += [points(p["difference"], p.get("ci95")) if p else "n/a" for p in paired]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
            sentences += [difference_sentence(name, label, p) for name, p in zip(others, paired) if p]
        sentences = [sentence for sentence in sentences if sentence]
        lines += ["", " ".join(sentences)] if sentences else []
    fluency = first.get("fluency_by_modality", {})
    if IMAGE_AND_TEXT in fluency:
        lines += ["", "Fluency on neutral rows, by modality (perplexity, and its change from the base model):", ""]
        lines += ["| modality | tokens | " + " | ".join(names) + " |", "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
        for modality, part in fluency.items():
            cells = [_perplexity(sections[name]["fluency_by_modality"][modality]) for name in names]
            lines.append(f"| {modality} | {part['n_tokens']} | " + " | ".join(cells) + " |")
    return lines


def _figures(section: dict, prompt_set: str, modality: str | None) -> dict:
    return section[prompt_set][OVERALL] if modality is None else section[prompt_set]["by_modality"][modality]


def _perplexity(part: dict) -> str:
    return f"{part['perplexity']:.2f} ({100 * part['perplexity_change']:+.1f}%)"


def _rate(overall: dict) -> str:
    rate, se = overall.get("harmful_rate"), overall.get("harmful_rate_se")
    if rate is None:
        return "n/a"
    return f"{rate:.1%} ± {se:.1%}" if se is not None else f"{rate:.1%}"
