"""The labelled example, the unit every source produces."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOXIC = 1
NEUTRAL = 0


@dataclass
class Example:
    """One row: `text` is what gets pooled, `prompt` is context that runs but is not pooled."""

    text: str
    label: int
    prompt: str = ""
    image: Path | None = None
    origin: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
