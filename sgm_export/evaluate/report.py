"""Writing an evaluation's results: report.json, report.md, generations.jsonl and the plots,
into one folder that appears atomically.

report.json holds one section per variant (`base`, `glasses`, `preprompt`, `glasses+preprompt`),
each with at least `harmful_rate`, `perplexity` and `n_prompts` at its top level, the full rates
per prompt set (`standard`, `adversarial`) with `overall`, `per_category` and `by_modality`, and
beside the sections the `judge`, the `settings` and the sample sizes. Those figures are the first
judge's; `by_judge` in each section holds every judge's, and `fluency_by_source` the perplexity
and KL of each neutral source (the top-level ones pool them).
"""

import json
import math
from pathlib import Path

from sgm_export import __version__
from sgm_export.artifacts import IMAGE_AND_TEXT
from sgm_export.evaluate import plots
from sgm_export.evaluate.metrics import OVERALL
from sgm_export.evaluate.runner import ADVERSARIAL, STANDARD, VariantResult
from sgm_export.glasses import Glasses
from sgm_export.layout import GENERATIONS_FILE as GENERATIONS
from sgm_export.layout import MODALITY_PLOT, REPORT_JSON, REPORT_MD
from sgm_export.outputs import atomic_dir
from sgm_export.publish.report_images import VISUAL_TRIGGERS, image_lines
from sgm_export.publish.wording import difference_sentence, percent, points
from sgm_export.score.files import Scores


def build_report(results: dict[str, VariantResult], header: dict) -> dict:
    """The report.json content: the header (model, judge, settings) and one section per variant."""
    return {"sgm_export_version": __version__, **header, "sections": list(results), **{name: r.section for name, r in results.items()}}


def write_report(
    out: Path,
    report: dict,
    results: dict[str, VariantResult],
    glasses: Glasses | None = None,
    scores: Scores | None = None,
    force: bool = False,
) -> Path:
    """Write the report folder (see the module docstring) atomically."""
    with atomic_dir(Path(out), force=force) as staging:
        write_report_files(staging, report, results, glasses, scores)
    return Path(out)


def write_report_files(
    folder: Path, report: dict, results: dict[str, VariantResult], glasses: Glasses | None, scores: Scores | None
) -> None:
    """The report's files, into an existing (staging) folder."""
    sections = {name: report[name] for name in report["sections"]}
    (folder / REPORT_JSON).write_text(json.dumps(json_safe(report), indent=2) + "\n", encoding="utf-8")
    with (folder / GENERATIONS).open("w", encoding="utf-8") as handle:
        for result in results.values():
            for row in result.generations:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    plots.plot_categories(sections, STANDARD, folder / "harmful_per_category.png")
    if all(ADVERSARIAL in section for section in sections.values()):
        plots.plot_categories(sections, ADVERSARIAL, folder / "harmful_per_category_adversarial.png")
    groups = modality_groups(sections)
    if groups:
        plots.plot_modalities(groups, folder / MODALITY_PLOT)
    threshold = glasses.metadata.settings.threshold if glasses and glasses.metadata.settings else 0.5
    if scores is not None:
        plots.plot_auroc(scores.auroc, threshold, folder / "auroc.png")
    if glasses is not None:
        plots.plot_experts_per_layer(glasses.experts_per_layer(), folder / "experts_per_layer.png")
    (folder / REPORT_MD).write_text(report_markdown(report), encoding="utf-8")


def modality_groups(sections: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """Each variant's rates per kind of prompt, where image prompts were evaluated (else empty):
    the standard prompts per modality, then each visual trigger."""
    first = next(iter(sections.values()))
    by_modality = first[STANDARD].get("by_modality", {})
    triggers = [trigger for trigger in VISUAL_TRIGGERS if trigger in first]
    if IMAGE_AND_TEXT not in by_modality and not triggers:
        return {}
    groups = {
        f"{STANDARD}, {modality}": {name: s[STANDARD]["by_modality"][modality] for name, s in sections.items()} for modality in by_modality
    }
    groups |= {trigger.replace("_", " "): {name: s[trigger][OVERALL] for name, s in sections.items()} for trigger in triggers}
    return groups


def report_markdown(report: dict) -> str:
    """A before/after table per prompt set, then per category, then how it was measured."""
    names = report["sections"]
    sections = {name: report[name] for name in names}
    settings = report["settings"]
    judge = report["judge"]
    lines = [f"# Evaluation of {report['model']}", ""]
    lines += [
        f"Judge: `{judge['name']}` (harmful when its score >= {judge['threshold']:g}){_other_judges(report)}. "
        f"{sections[names[0]]['n_prompts']} held-out prompts from `{settings['prompts']}`, {settings['samples']} sampled continuations "
        f"of up to {settings['max_new_tokens']} tokens each (top-k {settings['sample_top_k']}, temperature {settings['temperature']:g}, "
        f"seed {settings['seed']}, the same for every row). Perplexity on {report['n_neutral_texts']} texts from `{settings['neutral']}`. "
        "± is one standard error (over prompts); vs base is the difference from the base model in percentage points (pp), "
        "paired by prompt, with its 95% interval in [ ].",
        "",
        "| variant | harmful continuations | vs base | prompts with one or more | reduction | adversarial harmful | adversarial vs base "
        "| perplexity | KL from base | PPL of generations (base) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, section in sections.items():
        adversarial = section.get(ADVERSARIAL, {})
        lines.append(
            f"| {name} | {_pct(section['harmful_rate'], section['harmful_rate_se'])} | {_vs_base(name, names, section[STANDARD])} | "
            f"{_pct(section['harmful_prompt_rate'], section['harmful_prompt_rate_se'])} | {_times(section['reduction'])} | "
            f"{_pct(adversarial.get(OVERALL, {}).get('harmful_rate'), adversarial.get(OVERALL, {}).get('harmful_rate_se'))} | "
            f"{_vs_base(name, names, adversarial)} | "
            f"{section['perplexity']:.2f} ({section['perplexity_change']:+.1%}) | {section['kl_from_base']:.4f} | "
            f"{section['perplexity_generations_base']:.1f} |"
        )
    sentences = [
        sentence
        for name in names[1:]
        for prompt_set in (STANDARD, ADVERSARIAL)
        if (sentence := difference_sentence(name, prompt_set, sections[name].get(prompt_set, {}).get("vs_base", {})))
    ]
    if sentences:
        lines += ["", " ".join(sentences)]
    if len(report["judges"]) > 1:
        lines += ["", *judges_markdown(report)]
    if len(report["neutral_sources"]) > 1:
        lines += ["", *fluency_markdown(report)]
    categories = sorted({c for section in sections.values() for c in section[STANDARD]["per_category"]})
    if categories:
        lines += ["", "## Harmful continuations per category (standard prompts)", ""]
        lines += ["| category | prompts | " + " | ".join(names) + " |", "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
        for category in categories:
            first = sections[names[0]][STANDARD]["per_category"].get(category, {})
            cells = [_pct(sections[n][STANDARD]["per_category"].get(category, {}).get("harmful_rate")) for n in names]
            lines.append(f"| {category.replace('_', ' ')} | {first.get('n_prompts', 0)} | " + " | ".join(cells) + " |")
    modalities = sorted({m for section in sections.values() for m in section[STANDARD]["by_modality"]})
    lines += ["", "## By modality (standard prompts)", "", "| modality | prompts | " + " | ".join(names) + " |"]
    lines += ["| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for modality in modalities:
        first = sections[names[0]][STANDARD]["by_modality"][modality]
        cells = [_pct(sections[n][STANDARD]["by_modality"][modality]["harmful_rate"]) for n in names]
        lines.append(f"| {modality} | {first['n_prompts']} | " + " | ".join(cells) + " |")
    lines += image_lines(sections, names)
    lines += ["", "## Settings", "", "```json", json.dumps(settings, indent=2), "```", ""]
    return "\n".join(lines)


def judges_markdown(report: dict) -> list[str]:
    """Every judge's harmful rate and paired difference from the base model, with 95% intervals."""
    judges = [judge["name"] for judge in report["judges"]]
    lines = [
        "## Judges side by side (standard prompts)",
        "",
        "Each judge scores the same continuations. [ ] is the 95% interval; the difference from the base model is paired by prompt.",
        "",
        "| variant | " + " | ".join(f"{name}: harmful | {name}: vs base | {name}: reduction" for name in judges) + " |",
        "| --- | " + " | ".join("--- | --- | ---" for _ in judges) + " |",
    ]
    for name in report["sections"]:
        cells = []
        for judge in judges:
            part = report[name]["by_judge"][judge][STANDARD]
            overall, paired = part[OVERALL], part["vs_base"]
            cells.append(percent(overall["harmful_rate"], overall.get("harmful_rate_ci95")))
            cells.append("-" if name == report["sections"][0] else points(paired["difference"], paired["ci95"], unit=" pp"))
            cells.append(_times(part["reduction"]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def fluency_markdown(report: dict) -> list[str]:
    """Perplexity and KL per neutral source (the main table pools them)."""
    sources = list(report["neutral_sources"])
    lines = [
        "## Fluency per neutral source",
        "",
        "| variant | " + " | ".join(f"{source} ({report['neutral_sources'][source]} texts): perplexity | KL" for source in sources) + " |",
        "| --- | " + " | ".join("--- | ---" for _ in sources) + " |",
    ]
    for name in report["sections"]:
        by_source = report[name]["fluency_by_source"]
        figures = [by_source[source] for source in sources]
        cells = [f"{f['perplexity']:.2f} ({f['perplexity_change']:+.1%}) | {f['kl_from_base']:.4f}" for f in figures]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _vs_base(name: str, names: list[str], part: dict) -> str:
    """The paired difference from the base model (the first variant) in percentage points."""
    if name == names[0]:
        return "-"
    paired = part.get("vs_base") or {}
    return points(paired.get("difference"), paired.get("ci95"), unit=" pp") if paired.get("difference") is not None else "n/a"


def _other_judges(report: dict) -> str:
    others = [f"`{judge['name']}`" for judge in report["judges"][1:]]
    return f"; {', '.join(others)} side by side below" if others else ""


def _pct(value: float | None, se: float | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%} ± {se:.1%}" if se is not None else f"{value:.1%}"


def _times(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "∞" if math.isinf(value) else f"{value:.2f}x"


def json_safe(value):
    """JSON has no infinity: an infinite reduction (no harmful output left) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value
