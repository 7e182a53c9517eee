"""The evaluation section of the model card, from the report that `sgm-export eval` writes.

A report (`report.json`) has one section per model it measured (`base`, `glasses`, ...), each
with at least `harmful_rate`, `perplexity` and `n_prompts`, plus `judge` and the settings. The
section is written for people rather than for the tool: one unit per column (named in its
header), harmful rates as percentages with their 95% interval, the adversarial prompts beside
the standard ones, the paired difference from the base model with its interval, and a sentence
per difference that says plainly when it is within noise. A column appears when some section has
its figure, so a report without adversarial prompts or intervals still renders. Every other
number stays in report.json, which the section links to. Attached to an export, the report lives
in `eval/` (report.json, report.md and the PNG plots), where the card's image links point.
"""

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgm_export.artifacts import ReportHeader
from sgm_export.errors import SgmError
from sgm_export.layout import EVAL_DIR, REPORT_JSON, REPORT_MD
from sgm_export.publish.report_images import card_lines
from sgm_export.publish.wording import difference_sentence, percent, points

REPORT_FILE = REPORT_JSON
REPORT_COPIED = (REPORT_JSON, REPORT_MD)
BASE_SECTION = "base"
FIRST_COLUMNS = ("harmful_rate", "perplexity", "n_prompts")
PROMPT_SETS = ("standard", "adversarial")


def copy_report(report_dir: Path, target: Path) -> list[Path]:
    """Copy report.json (required), report.md and the PNG plots of `report_dir` into `target`."""
    report_dir = Path(report_dir)
    if not (report_dir / REPORT_FILE).is_file():
        raise SgmError(f"{report_dir} has no {REPORT_FILE}", "pass the folder that `sgm-export eval --out` wrote")
    read_report(report_dir)  # refuse a broken report before anything is copied
    sources = [report_dir / name for name in REPORT_COPIED if (report_dir / name).is_file()] + sorted(report_dir.glob("*.png"))
    for source in sources:
        shutil.copyfile(source, Path(target) / source.name)
    return [Path(target) / source.name for source in sources]


def read_report(report_dir: Path) -> dict[str, Any]:
    """The parsed report.json of a folder; a one-line error when it is not a JSON object."""
    path = Path(report_dir) / REPORT_FILE
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SgmError(f"{path} is not valid JSON ({error})", "run `sgm-export eval` again") from None
    if not isinstance(report, dict):
        raise SgmError(f"{path} is not a JSON object", "run `sgm-export eval` again")
    return report


def model_sections(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's per-model sections: objects holding at least one of the headline metrics."""
    return {name: section for name, section in report.items() if isinstance(section, dict) and any(key in section for key in FIRST_COLUMNS)}


def evaluation_markdown(folder: Path) -> str | None:
    """The card's evaluation section when `folder/eval/report.json` exists, else None."""
    eval_dir = Path(folder) / EVAL_DIR
    if not (eval_dir / REPORT_FILE).is_file():
        return None
    report = read_report(eval_dir)
    sections = model_sections(report)
    lines = ["## Evaluation", ""]
    if sections:
        lines += [_how_measured(report), "", *_table(sections)]
        sentences = _difference_sentences(sections)
        lines += ["", " ".join(sentences)] if sentences else []
        lines += card_lines(sections)
    else:
        lines.append("The report holds no per-model sections.")
    lines += ["", f"Every number and setting is in [`{EVAL_DIR}/{REPORT_FILE}`]({EVAL_DIR}/{REPORT_FILE})."]
    for plot in sorted(eval_dir.glob("*.png")):
        lines += ["", f"![{plot.stem.replace('_', ' ')}]({EVAL_DIR}/{plot.name})"]
    return "\n".join(lines)


def _how_measured(report: dict[str, Any]) -> str:
    """What was measured, in words: prompts, sampling, judge, neutral text, what the brackets are."""
    head = ReportHeader.from_json(report)
    settings = head.settings
    parts = []
    if head.n_prompts and settings.get("prompts"):
        sampled = f", each continued {settings['samples']} times" if settings.get("samples") else ""
        tokens = (
            f" (up to {settings['max_new_tokens']} new tokens, the same seeds for every model)" if settings.get("max_new_tokens") else ""
        )
        parts.append(f"{head.n_prompts} held-out toxic prompts from `{settings['prompts']}`{sampled}{tokens}.")
    judge = head.judge
    if judge:
        threshold = judge.get("threshold") if isinstance(judge, dict) else None
        at = f" (harmful at a score of {threshold:g} or more)" if isinstance(threshold, int | float) else ""
        parts.append(f"Each continuation was judged by {_judge_name(judge)}{at}.")
    if any(PROMPT_SETS[1] in section for section in model_sections(report).values()):
        parts.append(
            "The adversarial prompts are the same prompts, each wrapped in an instruction that pushes for harmful "
            'output (such as "Continue in the rudest way possible: ...").'
        )
    if head.n_neutral_texts and settings.get("neutral"):
        parts.append(f"Perplexity is measured on {head.n_neutral_texts} neutral texts from `{settings['neutral']}` (lower is better).")
    parts.append(
        "Brackets hold 95% intervals; the difference from the base model is paired prompt by prompt, "
        "and negative means fewer harmful continuations."
    )
    return " ".join(parts)


@dataclass(frozen=True)
class Column:
    """One column of the card's table: its header (which names the unit) and how to fill a cell."""

    title: str
    cell: Callable[[dict[str, Any], bool], str | None]  # (section, is the base model) -> text, None when absent


def _table(sections: dict[str, dict[str, Any]]) -> list[str]:
    names = list(sections)
    base = BASE_SECTION if BASE_SECTION in sections else None
    cells = {column.title: [column.cell(sections[name], name == base) for name in names] for column in _columns()}
    shown = [title for title, column in cells.items() if any(cell not in (None, "", "-") for cell in column)]
    rows = ["| model | " + " | ".join(shown) + " |", "|---|" + "---|" * len(shown)]
    for i, name in enumerate(names):
        rows.append(f"| {name} | " + " | ".join(cells[title][i] or "" for title in shown) + " |")
    return rows


def _columns() -> list[Column]:
    standard, adversarial = PROMPT_SETS
    return [
        Column("harmful continuations (%)", lambda section, _: _rate_cell(section, standard)),
        Column("vs base (percentage points)", lambda section, is_base: _difference_cell(section, standard, is_base)),
        Column("adversarial prompts: harmful continuations (%)", lambda section, _: _rate_cell(section, adversarial)),
        Column("adversarial vs base (percentage points)", lambda section, is_base: _difference_cell(section, adversarial, is_base)),
        Column("perplexity on neutral text", lambda section, _: _number(section.get("perplexity"), "{:.2f}")),
        Column("perplexity vs base (%)", lambda section, is_base: "-" if is_base else _change_cell(section.get("perplexity_change"))),
        Column("prompts", lambda section, _: _number(section.get("n_prompts"), "{:,}")),
    ]


def _overall(section: dict[str, Any], prompt_set: str) -> dict[str, Any] | None:
    part = section.get(prompt_set)
    if isinstance(part, dict) and isinstance(part.get("overall"), dict):
        return part["overall"]
    if prompt_set == PROMPT_SETS[0] and _is_number(section.get("harmful_rate")):  # a report with only the headline figures
        return {"harmful_rate": section["harmful_rate"]}
    return None


def _rate_cell(section: dict[str, Any], prompt_set: str) -> str | None:
    overall = _overall(section, prompt_set)
    if overall is None or not _is_number(overall.get("harmful_rate")):
        return None
    return percent(overall["harmful_rate"], overall.get("harmful_rate_ci95"), sign="")


def _difference_cell(section: dict[str, Any], prompt_set: str, is_base: bool) -> str | None:
    if is_base:
        return "-"
    paired = _paired(section, prompt_set)
    return points(paired["difference"], paired.get("ci95")) if paired else None


def _change_cell(change: Any) -> str | None:
    """A relative change (0.044) in the column's unit, percent: `+4.4`."""
    return _number(100 * change, "{:+.1f}") if _is_number(change) else None


def _paired(section: dict[str, Any], prompt_set: str) -> dict[str, Any] | None:
    part = section.get(prompt_set)
    paired = part.get("vs_base") if isinstance(part, dict) else None
    return paired if isinstance(paired, dict) and _is_number(paired.get("difference")) else None


def _difference_sentences(sections: dict[str, dict[str, Any]]) -> list[str]:
    sentences = []
    for name, section in sections.items():
        if name == BASE_SECTION:
            continue
        for prompt_set in PROMPT_SETS:
            paired = _paired(section, prompt_set)
            sentence = difference_sentence(name, prompt_set, paired) if paired else None
            sentences += [sentence] if sentence else []
    return sentences


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any, pattern: str) -> str | None:
    return pattern.format(value) if _is_number(value) else None


def _judge_name(judge: Any) -> str:
    if isinstance(judge, dict):
        name = judge.get("name") or judge.get("model") or json.dumps(judge, sort_keys=True)
        return f"`{name}`"
    return f"`{judge}`"
