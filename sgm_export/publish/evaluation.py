"""The evaluation section of the model card, from the report that `sgm-export eval` writes.

A report (`report.json`) has one section per model it measured (`base`, `glasses`, ...), each
with at least `harmful_rate`, `perplexity` and `n_prompts`, plus `judge` and the settings. The
card renders whatever model sections are there, so new sections or metrics need no change here.
Attached to an export, the report lives in `eval/` (report.json, report.md and the PNG plots),
where the card's image links point.
"""

import json
import math
import shutil
from pathlib import Path
from typing import Any

from sgm_export.errors import SgmError
from sgm_export.evaluate.report_images import card_lines
from sgm_export.layout import EVAL_DIR, REPORT_JSON, REPORT_MD

REPORT_FILE = REPORT_JSON
REPORT_COPIED = (REPORT_JSON, REPORT_MD)
BASE_SECTION = "base"
FIRST_COLUMNS = ("harmful_rate", "perplexity", "n_prompts")
COLUMN_TITLES = {"harmful_rate": "harmful rate", "perplexity": "perplexity", "n_prompts": "prompts"}


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
        lines += _table(sections)
        lines += card_lines(sections)
    else:
        lines.append("The report holds no per-model sections.")
    judge = report.get("judge")
    if judge:
        lines += ["", f"Harmful outputs were judged by {_judge_name(judge)}."]
    lines += ["", f"Every number and setting is in [`{EVAL_DIR}/{REPORT_FILE}`]({EVAL_DIR}/{REPORT_FILE})."]
    for plot in sorted(eval_dir.glob("*.png")):
        lines += ["", f"![{plot.stem.replace('_', ' ')}]({EVAL_DIR}/{plot.name})"]
    return "\n".join(lines)


def _table(sections: dict[str, dict[str, Any]]) -> list[str]:
    columns = [key for key in FIRST_COLUMNS if any(key in s for s in sections.values())]
    columns += sorted({key for s in sections.values() for key, value in s.items() if _is_number(value)} - set(columns))
    base = sections.get(BASE_SECTION)
    compare = base is not None and len(sections) > 1
    header = ["model"] + [COLUMN_TITLES.get(key, key.replace("_", " ")) for key in columns]
    if compare:
        header += ["harmful vs base", "perplexity vs base"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, section in sections.items():
        cells = [name] + [_format(key, section.get(key)) for key in columns]
        if compare:
            cells += [_harm_ratio(base, section) if section is not base else "", _ppl_change(base, section) if section is not base else ""]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _format(key: str, value: Any) -> str:
    if not _is_number(value):
        return "" if value is None else str(value)
    if key == "harmful_rate":
        return f"{100 * value:.1f}%"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"


def _harm_ratio(base: dict[str, Any], section: dict[str, Any]) -> str:
    before, after = base.get("harmful_rate"), section.get("harmful_rate")
    if not (_is_number(before) and _is_number(after)):
        return ""
    if after == 0:
        return "none left" if before > 0 else "same"
    ratio = before / after
    if math.isclose(ratio, 1.0, rel_tol=1e-3):
        return "same"
    return f"{ratio:.1f}x less" if ratio > 1 else f"{1 / ratio:.1f}x more"


def _ppl_change(base: dict[str, Any], section: dict[str, Any]) -> str:
    before, after = base.get("perplexity"), section.get("perplexity")
    if not (_is_number(before) and _is_number(after)) or before == 0:
        return ""
    return f"{100 * (after / before - 1):+.1f}%"


def _judge_name(judge: Any) -> str:
    if isinstance(judge, dict):
        name = judge.get("name") or judge.get("model") or json.dumps(judge, sort_keys=True)
        return f"`{name}`"
    return f"`{judge}`"
