"""The glasses: a fixed scale per neuron, computed from the scores.

Experts are the neurons whose AUROC is above `threshold` (optionally only the `top_k` best across
all layers). Every other neuron keeps scale 1.0. Experts are scaled by:
- `aura`: alpha = 1 - 2 * strength * (AUROC - 0.5), clamped to [0, 1] (AurA's 1 - Gini at
  strength 1): the better a neuron separates toxic text, the more it is damped;
- `damp`: the constant `alpha`;
- `det0`: 0 (the neuron is switched off).

`glasses.safetensors` holds `layers.{i}.scale` (float32 [d_ff]) per layer, with the settings and
`base_model` in its metadata.

The scales are float32 numpy arrays, not torch tensors: exporting a module checkpoint only copies
files and writes the scales, and importing torch would be most of its time. Code that applies
the scales to a model converts them with `torch.from_numpy`.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from safetensors.numpy import save_file

from sgm_export import __version__
from sgm_export.errors import CheckpointError, ShapeMismatchError
from sgm_export.options import GlassesOptions
from sgm_export.outputs import atomic_file
from sgm_export.tensorfile import read_tensor_file

if TYPE_CHECKING:
    from sgm_export.score.files import Scores

_KEY = re.compile(r"^layers\.(\d+)\.scale$")
# The glasses file that folded and ONNX exports carry beside their weights.
GLASSES_FILE = "glasses.safetensors"
SCORING_PROVENANCE = ("model_type", "pool", "max_length", "limit", "data", "n_toxic", "n_neutral")


@dataclass
class Glasses:
    """One scale vector per decoder layer, and the settings that produced it.

    `scales` may be given as torch tensors (on the CPU) or anything array-like; they are kept as
    contiguous float32 numpy vectors, which `safetensors.numpy` writes as they are."""

    scales: list[np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scales = [_float32(scale) for scale in self.scales]

    @property
    def widths(self) -> list[int]:
        """d_ff of each layer."""
        return [int(scale.size) for scale in self.scales]

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


def compute_glasses(scores: "Scores", options: GlassesOptions) -> Glasses:
    """Per-neuron scales from per-neuron AUROC, following the chosen mode."""
    flat = np.concatenate([_float32(auroc) for auroc in scores.auroc])
    experts = flat > options.threshold
    if options.top_k is not None and int(experts.sum()) > options.top_k:
        experts = _top_experts(flat, experts, options.top_k)
    if options.mode == "aura":
        suppressed = _aura_alpha(flat, options.strength)
    elif options.mode == "damp":
        suppressed = np.full_like(flat, options.alpha)
    else:
        suppressed = np.zeros_like(flat)
    scale = np.where(experts, suppressed, np.float32(1.0))
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
    return Glasses(np.split(scale, np.cumsum(scores.widths)[:-1]), metadata)


def _top_experts(flat: np.ndarray, experts: np.ndarray, top_k: int) -> np.ndarray:
    """The `top_k` experts with the highest AUROC. Among equal AUROC (common: AUROC values are
    fractions of n_toxic * n_neutral) the earlier neuron wins, so the choice never depends on the
    sorting algorithm."""
    ranked = np.where(experts, flat, -np.inf)
    keep = np.argsort(-ranked, kind="stable")[:top_k]
    chosen = np.zeros_like(experts)
    chosen[keep] = True
    return chosen


def _aura_alpha(flat: np.ndarray, strength: float) -> np.ndarray:
    """alpha = 1 - 2 * strength * (AUROC - 0.5) clamped to [0, 1], as float32.

    In float64, and 1 wherever AUROC is exactly 0.5: a huge strength times a zero excess would
    otherwise be inf * 0 = NaN (computed quietly, then replaced)."""
    excess = flat.astype(np.float64) - 0.5
    with np.errstate(over="ignore", invalid="ignore"):
        alpha = np.clip(1.0 - 2.0 * strength * excess, 0.0, 1.0)
    return np.where(excess == 0, 1.0, alpha).astype(np.float32)


def save_glasses(glasses: Glasses, path: Path, force: bool = False) -> Path:
    """Write glasses.safetensors atomically."""
    tensors = {f"layers.{i}.scale": scale for i, scale in enumerate(glasses.scales)}
    metadata = {"format": "pt", "sgm_export_version": __version__, **glasses.metadata}
    with atomic_file(Path(path), force=force) as staging:
        save_file(tensors, staging, metadata=metadata)
    return Path(path)


def load_glasses(path: Path) -> Glasses:
    """Read and check a glasses file: consecutive layers, finite scales within [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"glasses file {path} does not exist", "compute it with `sgm-export glasses SCORES_DIR --out FILE`")
    tensors, metadata = read_tensor_file(path, "glasses", "compute the glasses again", framework="np")
    layers = {int(m[1]): t for key, t in tensors.items() if (m := _KEY.match(key))}
    if not layers or sorted(layers) != list(range(len(layers))):
        raise CheckpointError(f"{path} does not hold layers.{{i}}.scale for consecutive layers", "compute the glasses again")
    scales = [layers[i].astype(np.float32) for i in range(len(layers))]
    for i, scale in enumerate(scales):
        if scale.ndim != 1:
            raise CheckpointError(f"{path}: layers.{i}.scale is not a vector", "compute the glasses again")
        if not np.isfinite(scale).all():
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


def _float32(values: ArrayLike) -> np.ndarray:
    """A contiguous float32 numpy copy or view of a vector; CPU torch tensors convert through
    `__array__`, so torch need not be imported here."""
    return np.ascontiguousarray(values, dtype=np.float32)
