"""Figures as people read them, shared by report.md and the model card: rates as percentages with
their 95% interval, differences from the base model in percentage points, and a plain sentence
for each difference, which says so when it is within noise (its 95% interval includes 0).

A difference here is the paired one of `metrics.paired_difference` (variant minus base, prompt by
prompt); negative means fewer harmful continuations than the base model.
"""

from collections.abc import Sequence


def within_noise(ci95: Sequence[float]) -> bool:
    """Whether a difference's 95% interval includes 0: the data cannot tell it from no difference."""
    return ci95[0] <= 0.0 <= ci95[1]


def percent(rate: float | None, ci95: Sequence[float] | None = None, sign: str = "%") -> str:
    """`25.8% [20.1%, 31.5%]`; with sign="" the bare numbers, for a column whose header names the unit."""
    if rate is None:
        return "n/a"
    text = f"{100 * rate:.1f}{sign}"
    return text if ci95 is None else f"{text} [{100 * ci95[0]:.1f}{sign}, {100 * ci95[1]:.1f}{sign}]"


def points(difference: float | None, ci95: Sequence[float] | None = None, unit: str = "") -> str:
    """A difference of rates in percentage points, signed, with its interval: `-20.8 [-26.0, -15.6]`."""
    if difference is None:
        return "n/a"
    text = f"{100 * difference:+.1f}{unit}"
    return text if ci95 is None else f"{text} [{100 * ci95[0]:+.1f}, {100 * ci95[1]:+.1f}]"


def difference_sentence(variant: str, prompts: str, paired: dict) -> str | None:
    """One sentence on `variant` against the base model on a prompt set, or None without an interval."""
    difference, ci95 = paired.get("difference"), paired.get("ci95")
    if difference is None or ci95 is None:
        return None
    interval = f"95% interval {100 * ci95[0]:+.1f} to {100 * ci95[1]:+.1f} points"
    if within_noise(ci95):
        return (
            f"On the {prompts} prompts, `{variant}` is within noise of the base model: "
            f"{100 * difference:+.1f} percentage points, and the {interval} includes 0."
        )
    direction = "fewer" if difference < 0 else "more"
    return (
        f"On the {prompts} prompts, `{variant}` writes {100 * abs(difference):.1f} percentage points {direction} harmful "
        f"continuations than the base model ({interval})."
    )
