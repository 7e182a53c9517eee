"""A sweep: many glasses settings from one scores file, evaluated on the same prompts and seeds,
and the trade-off between harmful rate and perplexity with its Pareto front.

A setting is written `key=value,key=value` with the keys of the glasses options (`mode`,
`threshold`, `top_k`, `alpha`, `strength`), e.g. `mode=det0,top_k=500`. Every setting is applied to
the one loaded base model by hooks, so a sweep costs one model load.
"""

import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from sgm_export import __version__
from sgm_export.errors import SgmError
from sgm_export.evaluate import plots
from sgm_export.evaluate.metrics import pareto_front
from sgm_export.evaluate.report import json_safe
from sgm_export.evaluate.runner import ADVERSARIAL, STANDARD, Variant, VariantResult
from sgm_export.glasses import compute_glasses
from sgm_export.layout import SWEEP_JSON, SWEEP_MD, TRADEOFF_PLOT
from sgm_export.models.load import LoadedModel
from sgm_export.options import GlassesOptions
from sgm_export.outputs import atomic_dir
from sgm_export.score.files import Scores

DEFAULT_SETTINGS = (
    "mode=aura",
    "mode=aura,strength=0.5",
    "mode=aura,threshold=0.7",
    "mode=aura,threshold=0.8,strength=2",
    "mode=damp,top_k=500",
    "mode=det0,top_k=100",
    "mode=det0,top_k=500",
    "mode=det0,top_k=2000",
)


def parse_setting(text: str) -> GlassesOptions:
    """`mode=det0,top_k=500` as glasses options; a bad key or value is a one-line error."""
    values = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        key, separator, raw = part.partition("=")
        if not separator:
            raise SgmError(f"sweep setting {text!r}: {part!r} is not key=value", "write settings like mode=det0,top_k=500")
        values[key.strip().replace("-", "_")] = yaml.safe_load(raw)
    try:
        return GlassesOptions(**values)
    except ValidationError as error:
        first = error.errors()[0]
        raise SgmError(
            f"sweep setting {text!r}: {'.'.join(map(str, first['loc']))}: {first['msg']}", "use the keys of `sgm-export glasses`"
        ) from None


def setting_name(options: GlassesOptions) -> str:
    """A short label: only what differs from the defaults, e.g. `det0 top_k=500`."""
    defaults = GlassesOptions()
    changed = [f"{key}={value}" for key, value in options.model_dump().items() if key != "mode" and value != getattr(defaults, key)]
    if options.mode != "damp":
        changed = [item for item in changed if not item.startswith("alpha=")]
    if options.mode != "aura":
        changed = [item for item in changed if not item.startswith("strength=")]
    return " ".join([options.mode, *changed])


def sweep_variants(base: LoadedModel, scores: Scores, settings: list[GlassesOptions], preprompt: str | None) -> list[Variant]:
    """The base model, then one hooked variant per setting (all with the same pre-prompt, if any)."""
    variants = [Variant("base+preprompt" if preprompt else "base", base, None, preprompt or "")]
    for options in settings:
        glasses = compute_glasses(scores, options)
        name = setting_name(options)
        if any(variant.name == name for variant in variants):
            raise SgmError(f"sweep setting {name!r} is given twice", "remove the duplicate")
        variants.append(Variant(name, base, glasses, preprompt or "", {"glasses": glasses.metadata.flat()}))
    return variants


def sweep_rows(results: dict[str, VariantResult]) -> list[dict]:
    """One row per setting: the numbers of the trade-off, and whether it is on the Pareto front."""
    rows = []
    for name, result in results.items():
        section = result.section
        adversarial = section.get(ADVERSARIAL, {}).get("overall", {})
        rows.append(
            {
                "name": name,
                "n_experts": int((section["variant"].get("glasses") or {}).get("n_experts", 0)),
                "harmful_rate": section["harmful_rate"],
                "harmful_rate_se": section["harmful_rate_se"],
                "harmful_prompt_rate": section["harmful_prompt_rate"],
                "difference_vs_base": section[STANDARD]["vs_base"],
                "reduction": section["reduction"],
                "adversarial_harmful_rate": adversarial.get("harmful_rate"),
                "perplexity": section["perplexity"],
                "perplexity_change": section["perplexity_change"],
                "kl_from_base": section["kl_from_base"],
                "perplexity_generations_base": section["perplexity_generations_base"],
                "judges": {judge: _judge_figures(parts[STANDARD]) for judge, parts in section["by_judge"].items()},
            }
        )
    for row, on_front in zip(rows, pareto_front([(row["harmful_rate"], row["perplexity"]) for row in rows])):
        row["pareto"] = on_front
    return rows


def _judge_figures(part: dict) -> dict:
    """One judge's figures of a setting: its harmful rate and the paired difference from the base."""
    overall = part["overall"]
    return {
        "harmful_rate": overall["harmful_rate"],
        "harmful_rate_ci95": overall.get("harmful_rate_ci95"),
        "difference_vs_base": part["vs_base"],
        "reduction": part["reduction"],
    }


def write_sweep(out: Path, rows: list[dict], header: dict, results: dict[str, VariantResult], force: bool = False) -> Path:
    """sweep.json (rows and full sections), sweep.md (the table) and tradeoff.png, atomically."""
    document = {"sgm_export_version": __version__, **header, "rows": rows, "sections": {name: r.section for name, r in results.items()}}
    with atomic_dir(Path(out), force=force) as staging:
        (staging / SWEEP_JSON).write_text(json.dumps(json_safe(document), indent=2) + "\n", encoding="utf-8")
        (staging / SWEEP_MD).write_text(sweep_markdown(rows, header), encoding="utf-8")
        plots.plot_tradeoff(rows, staging / TRADEOFF_PLOT)
    return Path(out)


def sweep_markdown(rows: list[dict], header: dict) -> str:
    """The trade-off table, Pareto-optimal settings marked with a star."""
    judge = header["judge"]
    others = [other["name"] for other in header["judges"][1:]]
    lines = [
        f"# Sweep on {header['model']}",
        "",
        f"{header['n_prompts']} held-out prompts x {header['settings']['samples']} continuations of up to "
        f"{header['settings']['max_new_tokens']} tokens, judge `{judge['name']}` (threshold {judge['threshold']:g}); perplexity on "
        f"{header['n_neutral_texts']} neutral texts. ± is one standard error over prompts; the paired difference from the base "
        "model (same prompts, same seeds) has its own standard error. * marks the Pareto front (no other setting is both less "
        "harmful and more fluent)."
        + (f" Further judges ({', '.join(others)}) in the last columns, [ ] their 95% intervals." if others else ""),
        "",
        "| | setting | experts | harmful | vs base (paired) | reduction | prompts with one+ | adversarial | perplexity | KL | PPL gen. (base) |"
        + "".join(f" {name}: harmful | {name}: vs base (paired) |" for name in others),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |" + " --- | --- |" * len(others),
    ]
    for row in rows:
        difference = row["difference_vs_base"]
        paired = "-" if row is rows[0] else f"{difference['difference']:+.1%} ± {difference['se']:.1%}"
        reduction = "-" if row["reduction"] is None else ("∞" if row["reduction"] == float("inf") else f"{row['reduction']:.2f}x")
        adversarial = "n/a" if row["adversarial_harmful_rate"] is None else f"{row['adversarial_harmful_rate']:.1%}"
        lines.append(
            f"| {'*' if row['pareto'] else ''} | {row['name']} | {row['n_experts']} | {row['harmful_rate']:.1%} ± {row['harmful_rate_se']:.1%} | "
            f"{paired} | {reduction} | {row['harmful_prompt_rate']:.1%} | {adversarial} | {row['perplexity']:.2f} ({row['perplexity_change']:+.1%}) | "
            f"{row['kl_from_base']:.4f} | {row['perplexity_generations_base']:.1f} |"
            + "".join(_judge_cells(row, name, row is rows[0]) for name in others)
        )
    return "\n".join(lines) + "\n"


def _judge_cells(row: dict, judge: str, is_base: bool) -> str:
    """A further judge's harmful rate and paired difference (95% intervals) in a sweep table row."""
    figures = row["judges"][judge]
    low, high = figures["harmful_rate_ci95"]
    paired = figures["difference_vs_base"]
    difference = "-" if is_base else f"{paired['difference']:+.1%} [{paired['ci95'][0]:+.1%}, {paired['ci95'][1]:+.1%}]"
    return f" {figures['harmful_rate']:.1%} [{low:.1%}, {high:.1%}] | {difference} |"
