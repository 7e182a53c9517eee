"""PNG plots of a report (matplotlib, Agg backend: no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch  # noqa: E402
from matplotlib import ticker  # noqa: E402

from sgm_export.evaluate.metrics import OVERALL  # noqa: E402

DPI = 110


def plot_categories(sections: dict[str, dict], prompt_set: str, path: Path) -> Path:
    """Harmful rate per category (and overall), one bar per variant."""
    return _save(categories_figure(sections, prompt_set), path)


def categories_figure(sections: dict[str, dict], prompt_set: str):
    """The figure of `plot_categories`: each category labelled with its number of prompts, rates in percent."""
    names = list(sections)
    first = sections[names[0]][prompt_set]
    categories = [OVERALL] + sorted({c for section in sections.values() for c in section[prompt_set]["per_category"]})
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(categories) * max(1, len(names)) / 2), 4.0))
    width = 0.8 / len(names)
    for offset, name in enumerate(names):
        part = sections[name][prompt_set]
        values = [_rate(part[OVERALL] if c == OVERALL else part["per_category"].get(c)) for c in categories]
        errors = [_se(part[OVERALL] if c == OVERALL else part["per_category"].get(c)) for c in categories]
        positions = [i + (offset - (len(names) - 1) / 2) * width for i in range(len(categories))]
        axes.bar(positions, values, width, yerr=errors, capsize=2, label=name)
    counts = [(first[OVERALL] if c == OVERALL else first["per_category"].get(c) or {}).get("n_prompts", 0) for c in categories]
    labels = [f"{c.replace('_', ' ')} ({count:,} prompt{'' if count == 1 else 's'})" for c, count in zip(categories, counts, strict=True)]
    axes.set_xticks(range(len(categories)), labels, rotation=30, ha="right")
    axes.yaxis.set_major_formatter(ticker.PercentFormatter(1.0, decimals=0))
    axes.set_ylabel("harmful continuations\n(± one standard error)")
    axes.set_title(f"Harmful rate per category ({prompt_set} prompts)")
    axes.legend(fontsize="small")
    return figure


def plot_modalities(groups: dict[str, dict[str, dict]], path: Path) -> Path:
    """Harmful rate per kind of prompt (text, image+text, each visual trigger), one bar per variant."""
    return _save(modalities_figure(groups), path)


def modalities_figure(groups: dict[str, dict[str, dict]]):
    """The figure of `plot_modalities`: `groups` maps each kind of prompt to each variant's rates."""
    kinds = list(groups)
    names = list(next(iter(groups.values())))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.4 * len(kinds) * max(1, len(names)) / 2), 4.0))
    width = 0.8 / len(names)
    for offset, name in enumerate(names):
        positions = [i + (offset - (len(names) - 1) / 2) * width for i in range(len(kinds))]
        values = [_rate(groups[kind][name]) for kind in kinds]
        axes.bar(positions, values, width, yerr=[_se(groups[kind][name]) for kind in kinds], capsize=2, label=name)
    counts = [next(iter(groups[kind].values())).get("n_prompts", 0) for kind in kinds]
    labels = [f"{kind} ({count:,} prompt{'' if count == 1 else 's'})" for kind, count in zip(kinds, counts, strict=True)]
    axes.set_xticks(range(len(kinds)), labels, rotation=20, ha="right")
    axes.yaxis.set_major_formatter(ticker.PercentFormatter(1.0, decimals=0))
    axes.set_ylabel("harmful continuations\n(± one standard error)")
    axes.set_title("Harmful rate by modality and visual trigger")
    axes.legend(fontsize="small")
    return figure


def plot_auroc(auroc: list[torch.Tensor], threshold: float, path: Path) -> Path:
    """The distribution of every neuron's AUROC, with the expert threshold."""
    values = torch.cat(auroc).float().numpy()
    figure, axes = plt.subplots(figsize=(6.0, 3.6))
    axes.hist(values, bins=100, color="tab:blue")
    axes.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
    axes.set_yscale("log")
    axes.set_xlabel("AUROC (toxic vs non-toxic)")
    axes.set_ylabel("neurons")
    axes.set_title(f"{len(values):,} neurons, {int((values > threshold).sum()):,} above the threshold")
    axes.legend()
    return _save(figure, path)


def plot_experts_per_layer(per_layer: list[int], path: Path) -> Path:
    """How many neurons the glasses scale in each decoder layer."""
    return _save(experts_per_layer_figure(per_layer), path)


def experts_per_layer_figure(per_layer: list[int]):
    """The figure of `plot_experts_per_layer`: whole layer numbers (never 2.5) and whole counts on the axes."""
    figure, axes = plt.subplots(figsize=(6.0, 3.6))
    axes.bar(range(len(per_layer)), per_layer, color="tab:orange")
    axes.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axes.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axes.set_xlabel("decoder layer (from 0)")
    axes.set_ylabel("experts scaled")
    axes.set_title(f"{sum(per_layer):,} experts across {len(per_layer)} layers")
    return figure


def plot_tradeoff(rows: list[dict], path: Path) -> Path:
    """Harmful rate against perplexity, one point per setting, the Pareto front joined."""
    figure, axes = plt.subplots(figsize=(7.0, 4.6))
    for row in rows:
        marker = "*" if row["pareto"] else "o"
        axes.errorbar(
            row["perplexity"], row["harmful_rate"], yerr=row["harmful_rate_se"], fmt=marker, markersize=9 if row["pareto"] else 5, capsize=2
        )
        axes.annotate(row["name"], (row["perplexity"], row["harmful_rate"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = sorted((row for row in rows if row["pareto"]), key=lambda row: row["perplexity"])
    axes.plot(
        [row["perplexity"] for row in front], [row["harmful_rate"] for row in front], color="tab:red", linewidth=1, label="Pareto front"
    )
    axes.set_xscale("log")
    # Over a narrow range a log axis labels its minor ticks in scientific notation, on top of
    # each other; plain numbers on the major ticks only read better.
    axes.xaxis.set_major_formatter(ticker.StrMethodFormatter("{x:g}"))
    axes.xaxis.set_minor_formatter(ticker.NullFormatter())
    axes.xaxis.set_major_locator(ticker.MaxNLocator(6))
    axes.yaxis.set_major_formatter(ticker.PercentFormatter(1.0))
    axes.set_xlabel("perplexity on held-out neutral text (log scale)")
    axes.set_ylabel("harmful continuations")
    axes.set_title("Harmful rate vs perplexity")
    axes.legend()
    return _save(figure, path)


def _rate(rates: dict | None) -> float:
    return rates["harmful_rate"] if rates and rates.get("harmful_rate") is not None else 0.0


def _se(rates: dict | None) -> float:
    return rates.get("harmful_rate_se", 0.0) if rates and rates.get("harmful_rate") is not None else 0.0


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, format="png")
    plt.close(figure)
    return path
