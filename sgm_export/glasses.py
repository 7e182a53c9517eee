"""The glasses: a fixed scale per neuron, computed from the scores.

Experts are the neurons whose AUROC is above `threshold` (optionally only the `top_k` best across
all layers). Every other neuron keeps scale 1.0. Experts are scaled by:
- `aura`: alpha = 1 - 2 * strength * (AUROC - 0.5), clamped to [0, 1] (AurA's 1 - Gini at
  strength 1): the better a neuron separates toxic text, the more it is damped;
- `damp`: the constant `alpha`;
- `det0`: 0 (the neuron is switched off).

`glasses.safetensors` holds `layers.{i}.scale` (float32 [d_ff]) per layer, with an
`artifacts.GlassesMetadata` (the settings, where the experts were found, `base_model`) in its
metadata.

The scales are float32 numpy arrays, not torch tensors: exporting a module checkpoint only copies
files and writes the scales, and importing torch would be most of its time. Code that applies
the scales to a model converts them with `torch.from_numpy`.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from safetensors.numpy import save_file

from sgm_export import __version__
from sgm_export.artifacts import GlassesMetadata
from sgm_export.errors import CheckpointError, ShapeMismatchError
from sgm_export.options import GlassesOptions
from sgm_export.outputs import atomic_file
from sgm_export.tensorfile import read_tensor_file

if TYPE_CHECKING:
    from sgm_export.score.files import Scores

_KEY = re.compile(r"^layers\.(\d+)\.(scale|shift)$")


@dataclass
class Glasses:
    """One scale vector per decoder layer, and the settings that produced it.

    `scales` may be given as torch tensors (on the CPU) or anything array-like; they are kept as
    contiguous float32 numpy vectors, which `safetensors.numpy` writes as they are."""

    scales: list[np.ndarray]
    metadata: GlassesMetadata = field(default_factory=GlassesMetadata)
    shifts: list[np.ndarray] | None = None  # added after the scale (`shift` option); None: all zero

    def __post_init__(self) -> None:
        if isinstance(self.metadata, Mapping):  # the safetensors strings, as tests and callers may give them
            self.metadata = GlassesMetadata.from_strings(self.metadata)
        self.scales = [_float32(scale) for scale in self.scales]
        if self.shifts is not None:
            self.shifts = [_float32(shift) for shift in self.shifts]

    @property
    def widths(self) -> list[int]:
        """d_ff of each layer."""
        return [int(scale.size) for scale in self.scales]

    def experts_per_layer(self) -> list[int]:
        """How many neurons each layer suppresses (scale below 1)."""
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
    """Per-neuron scales (and offsets, with `shift`) from the scores, following the options."""
    flat = np.concatenate([_float32(auroc) for auroc in scores.auroc])
    experts, ranking = expert_ranking(scores, options, flat)
    guarded = heavy_neurons(scores, options.guard)
    if guarded is not None:
        experts &= ~guarded
    if options.top_k is not None and int(experts.sum()) > options.top_k:
        experts = _top_experts(ranking, experts, options.top_k)
    if options.mode == "aura":
        suppressed = _aura_alpha(flat, options.strength)
    elif options.mode == "damp":
        suppressed = np.full_like(flat, options.alpha)
    else:
        suppressed = np.zeros_like(flat)
    scale = np.where(experts, suppressed, np.float32(1.0))
    if options.amplify is not None and options.mode == "aura":
        anti = flat < 0.5 if guarded is None else (flat < 0.5) & ~guarded
        scale = np.where(anti & ~experts, _amplified(flat, options.strength, options.amplify), scale)
    shifts = None
    if options.shift:
        target = np.concatenate([_float32(mean) for mean in scores.mean_neutral])
        shifts = np.split(((1.0 - scale) * target * experts).astype(np.float32), np.cumsum(scores.widths)[:-1])
    metadata = GlassesMetadata(
        settings=options,
        provenance=scores.metadata.provenance(),  # where the experts were found, carried on to every export and its card
        base_model=scores.metadata.model,
        n_experts=int(experts.sum()),
        n_guarded=None if guarded is None else int(guarded.sum()),
        sgm_export_version=__version__,
    )
    return Glasses(np.split(scale, np.cumsum(scores.widths)[:-1]), metadata, shifts)


def expert_ranking(scores: "Scores", options: GlassesOptions, flat_auroc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which neurons may be experts, and the key that orders them for `top_k` (higher first)."""
    if options.rank == "auroc":
        return flat_auroc > options.threshold, flat_auroc
    if scores.vocab is None:
        reason = scores.metadata.vocabulary or "they were written by an older sgm-export"
        raise CheckpointError(
            f"--rank {options.rank} needs the vocabulary rating of each neuron, which these scores lack ({reason})",
            "score the model again with this version (and without --no-vocabulary), or use --rank auroc",
        )
    ranking = vocabulary_rank(scores)
    candidates = ranking > 0
    if options.rank == "combined":
        candidates &= flat_auroc > options.threshold
    return candidates, ranking


def vocabulary_rank(scores: "Scores") -> np.ndarray:
    """How much more a neuron pushes toxic words on toxic text than on non-toxic text: its
    vocabulary toxicity (what its output direction writes) times the difference of its class
    means (how it fires). Positive: it writes toxic words where the text is toxic."""
    vocab = np.concatenate([_float32(layer) for layer in scores.vocab])
    difference = np.concatenate([_float32(t) - _float32(n) for t, n in zip(scores.mean_toxic, scores.mean_neutral)])
    return (vocab * difference).astype(np.float32)


def heavy_neurons(scores: "Scores", guard: float) -> np.ndarray | None:
    """Neurons whose mean magnitude on non-toxic data is above `guard` times the median: a few
    such neurons carry much of every token's computation, and scaling them costs fluency far
    beyond their share. None when the guard is off (0) or the scores predate the statistic."""
    if not guard or scores.mean_abs_neutral is None:
        return None
    magnitude = np.concatenate([_float32(layer) for layer in scores.mean_abs_neutral])
    return magnitude > guard * np.median(magnitude)


def _top_experts(ranking: np.ndarray, experts: np.ndarray, top_k: int) -> np.ndarray:
    """The `top_k` experts ranked highest. Among equal keys (common: AUROC values are fractions
    of n_toxic * n_neutral) the earlier neuron wins, so the choice never depends on the sorting
    algorithm."""
    ranked = np.where(experts, ranking, -np.inf)
    keep = np.argsort(-ranked, kind="stable")[:top_k]
    chosen = np.zeros_like(experts)
    chosen[keep] = True
    return chosen


def _amplified(flat: np.ndarray, strength: float, cap: float) -> np.ndarray:
    """SGM's recalibration for anti-toxic neurons: 1 + 2 * strength * (0.5 - AUROC), at most `cap`."""
    return np.clip(1.0 + 2.0 * strength * (0.5 - flat.astype(np.float64)), 1.0, cap).astype(np.float32)


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
    tensors.update({f"layers.{i}.shift": shift for i, shift in enumerate(glasses.shifts or [])})
    metadata = {"format": "pt", **glasses.metadata.to_strings(), "sgm_export_version": glasses.metadata.sgm_export_version or __version__}
    with atomic_file(Path(path), force=force) as staging:
        save_file(tensors, staging, metadata=metadata)
    return Path(path)


def load_glasses(path: Path) -> Glasses:
    """Read and check a glasses file: consecutive layers, finite scales within [0, 1] (up to the
    `amplify` cap it records), and shifts, when present, of the scales' widths."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"glasses file {path} does not exist", "compute it with `sgm-export glasses SCORES_DIR --out FILE`")
    tensors, metadata = read_tensor_file(path, "glasses", "compute the glasses again", framework="np")
    layers: dict[int, dict[str, np.ndarray]] = {}
    for key, tensor in tensors.items():
        if match := _KEY.match(key):
            layers.setdefault(int(match[1]), {})[match[2]] = tensor
    if not layers or sorted(layers) != list(range(len(layers))) or any("scale" not in layer for layer in layers.values()):
        raise CheckpointError(f"{path} does not hold layers.{{i}}.scale for consecutive layers", "compute the glasses again")
    settings = GlassesMetadata.from_strings(metadata, str(path))
    amplify = settings.settings.amplify if settings.settings is not None else None
    ceiling = 1.0 if amplify is None else amplify
    scales = [layers[i]["scale"].astype(np.float32) for i in range(len(layers))]
    with_shift = [i for i in range(len(layers)) if "shift" in layers[i]]
    if with_shift and len(with_shift) != len(layers):
        raise CheckpointError(f"{path} has layers.{{i}}.shift for some layers only", "compute the glasses again")
    shifts = [layers[i]["shift"].astype(np.float32) for i in range(len(layers))] if with_shift else None
    for i, scale in enumerate(scales):
        if scale.ndim != 1:
            raise CheckpointError(f"{path}: layers.{i}.scale is not a vector", "compute the glasses again")
        if not np.isfinite(scale).all():
            raise CheckpointError(f"{path}: layers.{i}.scale contains NaN or infinity", "compute the glasses again")
        if (scale < 0).any() or (scale > ceiling).any():
            raise CheckpointError(f"{path}: layers.{i}.scale has values outside [0, {ceiling:g}]", "compute the glasses again")
        if shifts is not None and (shifts[i].shape != scale.shape or not np.isfinite(shifts[i]).all()):
            raise CheckpointError(f"{path}: layers.{i}.shift is not a finite vector as wide as the scale", "compute the glasses again")
    return Glasses(scales, settings, shifts)


def describe(glasses: Glasses) -> str:
    """One line for people: how many experts, in which mode."""
    per_layer = glasses.experts_per_layer()
    settings = glasses.metadata.settings
    extras = [f"rank {settings.rank}"] if settings is not None and settings.rank != "auroc" else []
    if glasses.shifts is not None:
        extras.append("shifted towards the non-toxic mean")
    if settings is not None and settings.amplify is not None:
        extras.append(f"{int(sum((scale > 1).sum() for scale in glasses.scales))} amplified up to {settings.amplify}")
    detail = ", ".join([f"{settings.mode if settings is not None else '?'} mode", *extras])
    return f"{sum(per_layer)} experts ({detail}) across {len(per_layer)} layers: {json.dumps(per_layer)}"


def _short(widths: list[int]) -> str:
    distinct = sorted(set(widths))
    return str(distinct[0]) if len(distinct) == 1 else str(widths)


def _float32(values: ArrayLike) -> np.ndarray:
    """A contiguous float32 numpy copy or view of a vector; CPU torch tensors convert through
    `__array__`, so torch need not be imported here."""
    return np.ascontiguousarray(values, dtype=np.float32)
