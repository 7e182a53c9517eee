"""Printing a run's summary for people: experts per layer, verification, where outputs are."""

from rich.console import Console
from rich.table import Table

from sgm_export.pipeline import RunSummary


def print_run_summary(summary: RunSummary) -> None:
    """A compact table of experts per layer, then the outputs and stage times."""
    console = Console()
    per_layer = summary.experts_per_layer
    table = Table(title=f"{sum(per_layer)} experts scaled across {len(per_layer)} layers", show_header=True)
    table.add_column("layer", justify="right")
    table.add_column("experts", justify="right")
    for layer, count in enumerate(per_layer):
        table.add_row(str(layer), str(count))
    console.print(table)
    console.print(f"top AUROC: {', '.join(f'{value:.4f}' for value in summary.top_auroc)}")
    console.print(f"examples: {summary.n_examples.get('toxic', 0)} toxic, {summary.n_examples.get('neutral', 0)} non-toxic")
    for fmt, result in summary.verification.items():
        verdict = "passed" if result["passed"] else "FAILED"
        console.print(f"verify {fmt}: {verdict} (max |logit diff| {result['max_abs_diff']:.3g})")
    for name, figures in summary.evaluation.items():
        console.print(
            f"eval {name}: {figures['harmful_rate']:.1%} harmful continuations, {figures['harmful_prompt_rate']:.1%} of "
            f"{figures['n_prompts']} prompts with one or more, perplexity {figures['perplexity']:.2f}"
        )
    for name, path in summary.outputs.items():
        console.print(f"{name}: {path}")
    console.print("seconds: " + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in summary.seconds.items()))


def print_eval_summary(report: dict) -> None:
    """The before/after table of an evaluation: harmful rates, fluency, per variant."""
    console = Console()
    judge = report["judge"]
    table = Table(title=f"{report['n_prompts']} held-out prompts, judge {judge['name']} (threshold {judge['threshold']:g})")
    for column in ("variant", "harmful", "prompts with one+", "adversarial", "reduction", "perplexity", "KL"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name in report["sections"]:
        section = report[name]
        adversarial = section.get("adversarial", {}).get("overall", {})
        table.add_row(
            name,
            _percent(section["harmful_rate"], section["harmful_rate_se"]),
            _percent(section["harmful_prompt_rate"], section["harmful_prompt_rate_se"]),
            _percent(adversarial.get("harmful_rate"), adversarial.get("harmful_rate_se")),
            "-" if section["reduction"] is None else f"{section['reduction']:.2f}x",
            f"{section['perplexity']:.2f} ({section['perplexity_change']:+.1%})",
            f"{section['kl_from_base']:.4f}",
        )
    console.print(table)


def _percent(value: float | None, se: float | None) -> str:
    return "-" if value is None else f"{value:.1%} ± {se:.1%}"


def print_sweep_summary(rows: list[dict]) -> None:
    """The trade-off table of a sweep, Pareto-optimal settings starred."""
    table = Table(title="harmful rate vs perplexity (* Pareto front)")
    for column in ("", "setting", "experts", "harmful", "reduction", "perplexity", "KL"):
        table.add_column(column, justify="left" if column in ("", "setting") else "right")
    for row in rows:
        table.add_row(
            "*" if row["pareto"] else "",
            row["name"],
            str(row["n_experts"]),
            _percent(row["harmful_rate"], row["harmful_rate_se"]),
            "-" if row["reduction"] is None else f"{row['reduction']:.2f}x",
            f"{row['perplexity']:.2f} ({row['perplexity_change']:+.1%})",
            f"{row['kl_from_base']:.4f}",
        )
    Console().print(table)
