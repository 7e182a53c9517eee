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

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sgm_export.arch import Family, decoder_projections
from sgm_export.errors import CheckpointError, SgmError
from sgm_export.export.folded import unfold_scale
from sgm_export.export.onnx.families import check_onnx_family
from sgm_export.export.source import companion_files
from sgm_export.glasses import Glasses
from sgm_export.modeling import MODELING_FILE, SCALES_FILE, WEIGHTS_VARIANT
from sgm_export.models.audit import audit_folder
from sgm_export.models.checkpoint import SAFE_INDEX, read_config, with_variant
from sgm_export.models.load import load_model
from sgm_export.models.manifest import MANIFEST_FILE, read_manifest
from sgm_export.models.preflight import model_family
from sgm_export.models.resolve import resolve_model
from sgm_export.verify import export_format, export_glasses

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

    def companion_files(self) -> list[Path]:
        """Tokenizer, processor, generation config and the like, to copy beside the graph."""
        return companion_files(self.folder, also_skip=MODULE_ONLY_FILES)


def open_onnx_source(model: str, glasses: Glasses | None) -> OnnxSource:
    """Load MODEL_OR_DIR for the ONNX export, with its glasses."""
    source = resolve_model(model)
    config = read_config(source.path)
    audit_folder(source.path, model)  # the ONNX folder carries the tokenizer and configs over: none may name code
    kind = _kind(source.path)
    if kind == "onnx":
        raise SgmError(f"{model} is already an ONNX export", "pass the base model or a module/folded export")
    if kind != "base" and glasses is not None:
        raise SgmError(
            f"{model} is a {kind} export that carries its own glasses, so --glasses would be a second pair",
            "drop --glasses, or export from the base model",
        )
    if kind == "base" and glasses is None:
        raise SgmError(f"{model} is a base model, so the ONNX export needs glasses", "pass --glasses FILE")
    family, _ = model_family(config)
    if family.multimodal:
        check_onnx_family(_model_type(config), model)
    manifest = read_manifest(source.path) or {}
    base_name = manifest.get("base_model") or source.hub_id or source.name
    if kind == "module":
        base_config = {**config["base_config"], "architectures": [config["sgm"]["base_architecture"]]}
        return OnnxSource(
            _load_module_weights(source.path, config), family, export_glasses(source.path), base_config, source.path, kind, base_name
        )
    loaded = load_model(model, device="cpu", dtype="float32")
    if kind == "folded":
        glasses = export_glasses(source.path)
        _unfold(loaded.model, family, glasses)
    _check_fits(loaded.model, family, glasses, model)
    return OnnxSource(loaded.model, family, glasses, config, source.path, kind, base_name)


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
