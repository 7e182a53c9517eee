"""What an ONNX export starts from: a base model with a glasses file, or a checkpoint that
`sgm-export export` wrote (which carries its own glasses).

Whatever the start, the result is the same: the plain base model in float32 (the weights as the
base model had them) and the glasses, which the export then applies as a visible `Mul`.
- a base model: loaded as is; `--glasses` is required;
- a module export: its weights are the base weights byte for byte, loaded with the base class
  straight from safetensors (modeling_sgm.py never runs); the glasses are its scales file;
- a folded export: the scales are unfolded from the output projections again (see
  `unfold_scale`), so that the graph does not apply them twice.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sgm_export.arch import Family, decoder_projections
from sgm_export.artifacts import ExportManifest, read_export_manifest
from sgm_export.errors import CheckpointError, SgmError
from sgm_export.export.folded import unfold_scale
from sgm_export.export.folder import export_format, export_glasses
from sgm_export.export.onnx.families import check_onnx_family
from sgm_export.export.source import companion_files
from sgm_export.glasses import Glasses
from sgm_export.layout import MANIFEST_FILE, MODELING_FILE, SCALES_FILE
from sgm_export.modeling import WEIGHTS_VARIANT
from sgm_export.models.audit import audit_folder
from sgm_export.models.checkpoint import SAFE_INDEX, read_config, with_variant
from sgm_export.models.load import load_model
from sgm_export.models.preflight import CheckedModel, model_family
from sgm_export.models.resolve import ModelSource, resolve_model
from sgm_export.publish.card import PIPELINE_TAGS, base_license

# Manifest fields of a module or folded export that an ONNX folder made from it keeps.
PROVENANCE_FIELDS = (
    "base_model",
    "base_model_name",
    "base_model_hub_id",
    "base_license",
    "auto_class",
    "pipeline_tag",
    "data_sources",
    "recipe",
)

# Files of a module export that belong to the PyTorch checkpoint, not to the ONNX folder.
MODULE_ONLY_FILES = frozenset({MODELING_FILE, MANIFEST_FILE, SCALES_FILE, with_variant(SAFE_INDEX, WEIGHTS_VARIANT)})


@dataclass
class OnnxSource:
    """The plain base model and the glasses to put into the graph."""

    model: nn.Module
    family: Family
    glasses: Glasses
    config: dict
    folder: Path
    kind: str
    base_model: str
    provenance: dict[str, Any] = field(default_factory=dict)  # manifest fields about the base model and the data

    def companion_files(self) -> list[Path]:
        """Tokenizer, processor, generation config and the like, to copy beside the graph."""
        return companion_files(self.folder, also_skip=MODULE_ONLY_FILES)


def open_onnx_source(model: str | CheckedModel, glasses: Glasses | None) -> OnnxSource:
    """Load MODEL_OR_DIR (resolved here unless `run` passes it checked) for the ONNX export, with its glasses."""
    held = model if isinstance(model, CheckedModel) else None
    source = held.source if held else resolve_model(model)
    name = source.name
    config = read_config(source.path)
    if held is None or held.trust_remote_code:  # a held model was audited without trusted code already
        audit_folder(source.path, name)  # the ONNX folder carries the tokenizer and configs over: none may name code
    kind = _kind(source.path)
    if kind == "onnx":
        raise SgmError(f"{name} is already an ONNX export", "pass the base model or a module/folded export")
    if kind != "base" and glasses is not None:
        raise SgmError(
            f"{name} is a {kind} export that carries its own glasses, so --glasses would be a second pair",
            "drop --glasses, or export from the base model",
        )
    if kind == "base" and glasses is None:
        raise SgmError(f"{name} is a base model, so the ONNX export needs glasses", "pass --glasses FILE")
    family, _ = model_family(config)
    if family.multimodal:
        check_onnx_family(_model_type(config), name)
    manifest = read_export_manifest(source.path)
    base_name = (manifest.base_model if manifest else None) or source.hub_id or source.name
    provenance = _provenance(manifest) if kind != "base" else _base_provenance(source, family, glasses)
    if kind == "module":
        base_config = {**config["base_config"], "architectures": [config["sgm"]["base_architecture"]]}
        glasses = _with_settings(export_glasses(source.path), manifest)
        return OnnxSource(_load_module_weights(source.path, config), family, glasses, base_config, source.path, kind, base_name, provenance)
    loaded = load_model(held or name, device="cpu", dtype="float32")
    if kind == "folded":
        glasses = _with_settings(export_glasses(source.path), manifest)
        _unfold(loaded.model, family, glasses)
    _check_fits(loaded.model, family, glasses, name)
    return OnnxSource(loaded.model, family, glasses, config, source.path, kind, base_name, provenance)


def _provenance(manifest: ExportManifest | None) -> dict[str, Any]:
    """What a module or folded export's manifest says about its base model and data, carried into
    the ONNX folder's manifest and card (the settings travel with the glasses)."""
    return manifest.model_dump(include=set(PROVENANCE_FIELDS)) if manifest else {}


def _base_provenance(source: ModelSource, family: Family, glasses: Glasses) -> dict[str, Any]:
    """The same, for a base model given with --glasses."""
    return {
        "base_model": source.hub_id or source.name,
        "base_model_name": source.name,
        "base_model_hub_id": source.hub_id,
        "base_license": base_license(source.path, source.license),
        "auto_class": family.auto_class,
        "pipeline_tag": PIPELINE_TAGS.get(family.auto_class),
        "data_sources": glasses.metadata.provenance.data,
        "recipe": None,
    }


def _with_settings(glasses: Glasses, manifest: ExportManifest | None) -> Glasses:
    """The glasses with the settings that made them, where the export's glasses file lacks them
    (the manifest records them too)."""
    if glasses.metadata.settings is None and manifest is not None:
        glasses.metadata = manifest.glasses
    return glasses


def _model_type(config: dict) -> str:
    """The model type of a base config or of a module export (whose own config is sgm's)."""
    return config.get("base_config", config).get("model_type", "")


def _kind(path: Path) -> str:
    try:
        return export_format(path)
    except CheckpointError:
        return "base"


def _load_module_weights(path: Path, config: dict) -> nn.Module:
    """The base class with the module export's (untouched) base weights, without its glasses."""
    import transformers

    base_config = dict(config["base_config"])
    base_class = getattr(transformers, config["sgm"]["base_architecture"], None)
    if base_class is None:
        raise CheckpointError(
            f"this transformers has no {config['sgm']['base_architecture']}", "upgrade transformers to the version that exported it"
        )
    model = base_class.from_pretrained(
        path,
        config=transformers.AutoConfig.for_model(base_config.pop("model_type"), **base_config),
        variant=config["sgm"]["weights_variant"],
        dtype=torch.float32,
        use_safetensors=True,
    )
    return model.eval()


def _unfold(model: nn.Module, family: Family, glasses: Glasses) -> None:
    _check_fits(model, family, glasses, "the folded export")
    with torch.no_grad():
        for projection, scale in zip(decoder_projections(model, family), glasses.scales):
            projection.weight.copy_(unfold_scale(projection.weight, torch.from_numpy(scale), family.input_axis()))


def _check_fits(model: nn.Module, family: Family, glasses: Glasses, what: str) -> None:
    glasses.check_fits([int(p.weight.shape[family.input_axis()]) for p in decoder_projections(model, family)], f"model {what}")
