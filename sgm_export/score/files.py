"""`scores.safetensors` and its human summary `scores.json`.

For each decoder layer i: `layers.{i}.auroc` (float32 [d_ff]), plus `layers.{i}.mean_toxic` and
`layers.{i}.mean_neutral` (the pooled activation's class means), `layers.{i}.mean_abs_neutral`
(the mean magnitude on non-toxic examples, for the heavy-neuron guard) and `layers.{i}.vocab`
(the vocabulary toxicity of `score/vocabulary.py`); the last two are absent from files written
before 0.2 (and `vocab` where the model has no output embedding or no toxic word). The metadata
is an `artifacts.ScoresMetadata` (the model, how it was scored, on which data).
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from sgm_export import __version__
from sgm_export.artifacts import ScoresMetadata
from sgm_export.errors import CheckpointError
from sgm_export.layout import SCORES_FILE, SCORES_SUMMARY_FILE
from sgm_export.outputs import atomic_dir
from sgm_export.tensorfile import read_tensor_file

SUMMARY_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
_KEY = re.compile(r"^layers\.(\d+)\.(auroc|mean_toxic|mean_neutral|mean_abs_neutral|vocab)$")
OPTIONAL = ("mean_abs_neutral", "vocab")


@dataclass
class Scores:
    """Per-layer neuron scores of one model, and how they were obtained."""

    auroc: list[torch.Tensor]
    mean_toxic: list[torch.Tensor]
    mean_neutral: list[torch.Tensor]
    metadata: ScoresMetadata = field(default_factory=ScoresMetadata)
    mean_abs_neutral: list[torch.Tensor] | None = None
    vocab: list[torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.metadata, Mapping):  # the safetensors strings, as tests and callers may give them
            self.metadata = ScoresMetadata.from_strings(self.metadata)

    @property
    def widths(self) -> list[int]:
        """d_ff of each layer."""
        return [int(layer.numel()) for layer in self.auroc]

    def summary(self, top: int = 20) -> dict:
        """Top experts and experts per layer at a few thresholds, for people to read."""
        flat = torch.cat(self.auroc)
        layer_of = torch.cat([torch.full((w,), i) for i, w in enumerate(self.widths)])
        offsets = torch.tensor([0] + self.widths).cumsum(0)
        best = flat.topk(min(top, flat.numel()))
        return {
            "metadata": self.metadata.model_dump(),
            "n_neurons": int(flat.numel()),
            "n_layers": len(self.auroc),
            "top_experts": [
                {"layer": int(layer_of[i]), "neuron": int(i - offsets[layer_of[i]]), "auroc": round(float(flat[i]), 6)}
                for i in best.indices
            ],
            "experts_per_layer": {f"auroc>{t}": [int((layer > t).sum()) for layer in self.auroc] for t in SUMMARY_THRESHOLDS},
            "experts_total": {f"auroc>{t}": int((flat > t).sum()) for t in SUMMARY_THRESHOLDS},
        }


def save_scores(scores: Scores, out_dir: Path, force: bool = False) -> Path:
    """Write scores.safetensors and scores.json into `out_dir`, atomically."""
    tensors = {}
    for i, (auroc, toxic, neutral) in enumerate(zip(scores.auroc, scores.mean_toxic, scores.mean_neutral)):
        tensors[f"layers.{i}.auroc"] = auroc.float().contiguous()
        tensors[f"layers.{i}.mean_toxic"] = toxic.float().contiguous()
        tensors[f"layers.{i}.mean_neutral"] = neutral.float().contiguous()
    for name in OPTIONAL:
        for i, tensor in enumerate(getattr(scores, name) or []):
            tensors[f"layers.{i}.{name}"] = tensor.float().contiguous()
    metadata = {"format": "pt", **scores.metadata.to_strings(), "sgm_export_version": scores.metadata.sgm_export_version or __version__}
    with atomic_dir(out_dir, force=force) as staging:
        save_file(tensors, staging / SCORES_FILE, metadata=metadata)
        (staging / SCORES_SUMMARY_FILE).write_text(json.dumps(scores.summary(), indent=2) + "\n", encoding="utf-8")
    return out_dir


def load_scores(path: Path) -> Scores:
    """Read a scores directory (or the scores.safetensors file itself)."""
    path = Path(path)
    file = path / SCORES_FILE if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"no scores at {path}", f"pass the directory that `sgm-export score` wrote (it holds {SCORES_FILE})")
    tensors, metadata = read_tensor_file(file, "scores", "score the model again")
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match:
            layers.setdefault(int(match[1]), {})[match[2]] = tensor
    if not layers or sorted(layers) != list(range(len(layers))) or any("auroc" not in v for v in layers.values()):
        raise CheckpointError(f"{file} does not hold layers.{{i}}.auroc for consecutive layers", "score the model again")
    ordered = [layers[i] for i in range(len(layers))]
    for i, layer in enumerate(ordered):
        auroc = layer["auroc"]
        if auroc.ndim != 1 or any(tensor.shape != auroc.shape for tensor in layer.values()):
            raise CheckpointError(f"{file}: the tensors of layer {i} are not vectors of one width", "score the model again")
        if not torch.isfinite(auroc).all() or (auroc < 0).any() or (auroc > 1).any():
            raise CheckpointError(f"{file}: layers.{i}.auroc has values that are NaN or outside [0, 1]", "score the model again")
    return Scores(
        auroc=[layer["auroc"] for layer in ordered],
        mean_toxic=[layer.get("mean_toxic", torch.zeros_like(layer["auroc"])) for layer in ordered],
        mean_neutral=[layer.get("mean_neutral", torch.zeros_like(layer["auroc"])) for layer in ordered],
        metadata=ScoresMetadata.from_strings(metadata, str(file)),
        **{name: [layer[name] for layer in ordered] if all(name in layer for layer in ordered) else None for name in OPTIONAL},
    )
