"""The family table: which module of which model is the MLP output projection.

The knowledge lives in `families.yaml` (one row per family, no if-chains in code); this module
reads it and answers two questions: which row fits a config, and which modules of a loaded model
(or which tensors of a checkpoint) are the output projections of the language decoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import yaml

from sgm_export.errors import UnsupportedArchitectureError

if TYPE_CHECKING:  # torch is imported only where a model is loaded: checks of files stay fast
    from torch import nn


@dataclass(frozen=True)
class Family:
    """One row of the family table."""

    name: str
    description: str
    model_types: tuple[str, ...]
    auto_class: str
    layers: str
    down_proj: str
    weight_layout: str
    checkpoint_keys: tuple[str, ...]
    multimodal: bool = False
    prompt_format: str = "chat_template"
    image_inputs: str = "flat"

    def module_name(self, layer: int) -> str:
        """Module path, from the loaded model, of layer `layer`'s output projection."""
        return f"{self.layers}.{layer}.{self.down_proj}"

    def checkpoint_key_pattern(self) -> re.Pattern[str]:
        """A regex matching the projection weight's names in checkpoints; group 1 is the layer."""
        alternatives = [re.escape(key).replace(re.escape("{i}"), r"(\d+)") for key in self.checkpoint_keys]
        return re.compile("|".join(f"^{alt}$" for alt in alternatives))

    def input_axis(self) -> int:
        """The weight axis that runs over neurons (the projection's input features)."""
        return 0 if self.weight_layout == "in_out" else 1


@cache
def families() -> tuple[Family, ...]:
    """All rows of the family table, in file order."""
    rows = yaml.safe_load(files("sgm_export.arch").joinpath("families.yaml").read_text(encoding="utf-8"))
    return tuple(_family_from_row(row) for row in rows)


def _family_from_row(row: dict[str, Any]) -> Family:
    default_key = f"{row['layers']}.{{i}}.{row['down_proj']}.weight"
    return Family(
        name=row["name"],
        description=row.get("description", ""),
        model_types=tuple(row["model_types"]),
        auto_class=row["auto_class"],
        layers=row["layers"],
        down_proj=row["down_proj"],
        weight_layout=row["weight_layout"],
        checkpoint_keys=tuple(row.get("checkpoint_keys", [default_key])),
        multimodal=bool(row.get("multimodal", False)),
        prompt_format=row.get("prompt_format", "chat_template"),
        image_inputs=row.get("image_inputs", "flat"),
    )


def supported_model_types() -> list[str]:
    """Every model_type some row covers, sorted, for error messages and docs."""
    return sorted({model_type for family in families() for model_type in family.model_types})


def family_for(model_type: str) -> Family:
    """The row covering `model_type`, or a one-line error listing what is supported."""
    for family in families():
        if model_type in family.model_types:
            return family
    raise UnsupportedArchitectureError(
        f"unsupported architecture {model_type!r}",
        "sgm-export supports " + ", ".join(supported_model_types()) + " (add a row to sgm_export/arch/families.yaml)",
    )


def decoder_layers(model: nn.Module, family: Family) -> list[nn.Module]:
    """Every language-decoder layer, in order."""
    return list(model.get_submodule(family.layers))


def decoder_projections(model: nn.Module, family: Family) -> list[nn.Module]:
    """The output projection of every language-decoder layer, in layer order."""
    return [layer.get_submodule(family.down_proj) for layer in decoder_layers(model, family)]


def decoder_widths(model: nn.Module, family: Family) -> list[int]:
    """The number of neurons (d_ff) of every language-decoder layer, in layer order."""
    return [int(projection.weight.shape[family.input_axis()]) for projection in decoder_projections(model, family)]
