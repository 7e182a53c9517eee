"""The glasses: a fixed scale per neuron, computed from the scores.

Experts are the neurons whose AUROC is above `threshold` (optionally only the `top_k` best across
all layers). Every other neuron keeps scale 1.0. Experts are scaled by:
- `aura`: alpha = 1 - 2 * strength * (AUROC - 0.5), clamped to [0, 1] (AurA's 1 - Gini at
  strength 1): the better a neuron separates toxic text, the more it is damped;
- `damp`: the constant `alpha`;
- `det0`: 0 (the neuron is switched off).

`glasses.safetensors` holds `layers.{i}.scale` (float32 [d_ff]) per layer, with the settings and
`base_model` in its metadata.
"""

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from sgm_export import __version__
from sgm_export.errors import CheckpointError, ShapeMismatchError
from sgm_export.options import GlassesOptions
from sgm_export.outputs import atomic_file
from sgm_export.score.files import Scores
from sgm_export.tensorfile import read_tensor_file

_KEY = re.compile(r"^layers\.(\d+)\.scale$")
SCORING_PROVENANCE = ("model_type", "pool", "max_length", "limit", "data", "n_toxic", "n_neutral")


@dataclass
class Glasses:
    """One scale vector per decoder layer, and the settings that produced it."""

    scales: list[torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def widths(self) -> list[int]:
        """d_ff of each layer."""
        return [int(scale.numel()) for scale in self.scales]

    def experts_per_layer(self) -> list[int]:
        """How many neurons each layer scales (scale below 1)."""
        return [int((scale < 1.0).sum()) for scale in self.scales]

    def check_fits(self, widths: list[int], what: str) -> None:
        """Fail with a clear message unless the glasses have exactly these layer widths."""
        if self.widths != widths:
            raise ShapeMismatchError(
                f"the glasses have {len(self.widths)} layers of widths {_short(self.widths)} but {what} has "
                f"{len(widths)} layers of widths {_short(widths)}",
                "use glasses computed from scores of this same model",
            )


def compute_glasses(scores: Scores, options: GlassesOptions) -> Glasses:
    """Per-neuron scales from per-neuron AUROC, following the chosen mode."""
    flat = torch.cat(scores.auroc).to(torch.float32)
    experts = flat > options.threshold
    if options.top_k is not None and int(experts.sum()) > options.top_k:
        ranked = torch.where(experts, flat, torch.tensor(-math.inf))
        keep = ranked.topk(options.top_k).indices
        experts = torch.zeros_like(experts)
        experts[keep] = True
    if options.mode == "aura":
        # In float64, and 1 wherever AUROC is exactly 0.5: a huge strength times a zero excess
        # would otherwise be inf * 0 = NaN.
        excess = flat.to(torch.float64) - 0.5
        alpha = (1.0 - 2.0 * options.strength * excess).clamp(0.0, 1.0)
        suppressed = torch.where(excess == 0, 1.0, alpha).to(torch.float32)
    elif options.mode == "damp":
        suppressed = torch.full_like(flat, options.alpha)
    else:
        suppressed = torch.zeros_like(flat)
    scale = torch.where(experts, suppressed, torch.ones_like(flat))
    metadata = {
        "mode": options.mode,
        "threshold": repr(options.threshold),
        "top_k": "" if options.top_k is None else str(options.top_k),
        "alpha": repr(options.alpha),
        "strength": repr(options.strength),
        "base_model": scores.metadata.get("model", ""),
        # Where the experts were found, carried on to every export and its model card.
        **{key: scores.metadata.get(key, "") for key in SCORING_PROVENANCE},
        "n_experts": str(int(experts.sum())),
    }
    return Glasses(list(scale.split(scores.widths)), metadata)


def save_glasses(glasses: Glasses, path: Path, force: bool = False) -> Path:
    """Write glasses.safetensors atomically."""
    tensors = {f"layers.{i}.scale": scale.to(torch.float32).contiguous() for i, scale in enumerate(glasses.scales)}
    metadata = {"format": "pt", "sgm_export_version": __version__, **glasses.metadata}
    with atomic_file(Path(path), force=force) as staging:
        save_file(tensors, staging, metadata=metadata)
    return Path(path)


def load_glasses(path: Path) -> Glasses:
    """Read and check a glasses file: consecutive layers, finite scales within [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"glasses file {path} does not exist", "compute it with `sgm-export glasses SCORES_DIR --out FILE`")
    tensors, metadata = read_tensor_file(path, "glasses", "compute the glasses again")
    layers = {int(m[1]): t for key, t in tensors.items() if (m := _KEY.match(key))}
    if not layers or sorted(layers) != list(range(len(layers))):
        raise CheckpointError(f"{path} does not hold layers.{{i}}.scale for consecutive layers", "compute the glasses again")
    scales = [layers[i].to(torch.float32) for i in range(len(layers))]
    for i, scale in enumerate(scales):
        if scale.ndim != 1:
            raise CheckpointError(f"{path}: layers.{i}.scale is not a vector", "compute the glasses again")
        if not torch.isfinite(scale).all():
            raise CheckpointError(f"{path}: layers.{i}.scale contains NaN or infinity", "compute the glasses again")
        if (scale < 0).any() or (scale > 1).any():
            raise CheckpointError(f"{path}: layers.{i}.scale has values outside [0, 1]", "compute the glasses again")
    return Glasses(scales, {k: v for k, v in metadata.items() if k != "format"})


def describe(glasses: Glasses) -> str:
    """One line for people: how many experts, in which mode."""
    per_layer = glasses.experts_per_layer()
    return f"{sum(per_layer)} experts ({glasses.metadata.get('mode', '?')} mode) across {len(per_layer)} layers: {json.dumps(per_layer)}"


def _short(widths: list[int]) -> str:
    distinct = sorted(set(widths))
    return str(distinct[0]) if len(distinct) == 1 else str(widths)
