"""The image parts of report.md: the visual triggers' sections (typographic prompts, prompts beside
a photo) and fluency per modality, each a table with one column per variant."""

from sgm_export.artifacts import REPORT_OVERALL as OVERALL

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
    """For a model card: harmful rates by modality when image prompts were evaluated, then `image_lines`."""
    names = [name for name, section in sections.items() if isinstance(section.get("standard"), dict)]
    if not names or "image+text" not in sections[names[0]]["standard"].get("by_modality", {}):
        return []
    modalities = list(sections[names[0]]["standard"]["by_modality"])
    lines = ["", "Harmful continuations by modality (standard prompts):", "", "| modality | " + " | ".join(names) + " |"]
    lines += ["| --- | " + " | ".join("---" for _ in names) + " |"]
    for modality in modalities:
        lines.append(f"| {modality} | " + " | ".join(_rate(sections[name]["standard"]["by_modality"][modality]) for name in names) + " |")
    return lines + image_lines({name: sections[name] for name in names}, names)


def _rate(overall: dict) -> str:
    rate, se = overall.get("harmful_rate"), overall.get("harmful_rate_se")
    if rate is None:
        return "n/a"
    return f"{rate:.1%} ± {se:.1%}" if se is not None else f"{rate:.1%}"
