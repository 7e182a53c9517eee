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
    for name, path in summary.outputs.items():
        console.print(f"{name}: {path}")
    console.print("seconds: " + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in summary.seconds.items()))
