"""The base checkpoint an export starts from, checked against the glasses before anything is
written: that it names no code of its own, its family, its weight files, its config's sizes, and
the width of every output projection, read from the safetensors headers without loading a
single weight."""

from dataclasses import dataclass
from pathlib import Path

from sgm_export.arch import Family
from sgm_export.errors import SgmError, UnsafeCheckpointError
from sgm_export.glasses import Glasses
from sgm_export.models.audit import audit_folder
from sgm_export.models.checkpoint import check_safetensors, read_config, weight_files, weight_index
from sgm_export.models.preflight import CheckedModel, model_family
from sgm_export.models.resolve import ModelSource, resolve_model
from sgm_export.models.sizes import check_sizes, projection_widths

# Files of a model folder that an export does not carry over: weights are handled on their own,
# config.json is rewritten, the card is written anew, and pickles never travel.
SKIPPED_FILES = {"config.json", "README.md", ".gitattributes", "model.safetensors", "model.safetensors.index.json"}
SKIPPED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".pkl", ".ckpt", ".gguf", ".onnx", ".onnx_data", ".h5", ".msgpack")


@dataclass
class BaseCheckpoint:
    """A base model folder ready to be exported."""

    source: ModelSource
    config: dict
    family: Family
    weights: list[Path]
    projection_keys: dict[int, str]

    @property
    def path(self) -> Path:
        return self.source.path

    def companion_files(self) -> list[Path]:
        """Tokenizer, processor, chat template, generation config, license: what travels as is."""
        return companion_files(self.path)


def companion_files(folder: Path, also_skip: frozenset[str] = frozenset()) -> list[Path]:
    """The files of a model folder that an export copies unchanged (not weights, config or card)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in SKIPPED_FILES | also_skip and not p.name.endswith(SKIPPED_SUFFIXES)
    )


def open_base_checkpoint(model: str | CheckedModel, glasses: Glasses) -> BaseCheckpoint:
    """Resolve MODEL (unless `run` passes it checked) and check that the glasses fit its output
    projections exactly."""
    held = model if isinstance(model, CheckedModel) else None
    source = held.source if held else resolve_model(model)
    name = source.name
    config = read_config(source.path)
    try:
        if held is None or held.trust_remote_code:  # a held model was audited without trusted code already
            audit_folder(source.path, name)  # an export copies the folder's code and configs: none may name code
    except UnsafeCheckpointError as error:
        raise UnsafeCheckpointError(
            error.problem, "delete auto_map (and the code it names) to export with the transformers class"
        ) from None
    family, is_sgm_export = model_family(config)
    if is_sgm_export:
        raise SgmError(f"{name} is already an sgm-export module checkpoint", "export from the base model instead")
    try:
        weights = weight_files(source.path)
    except UnsafeCheckpointError as error:
        raise UnsafeCheckpointError(error.problem, "convert it to safetensors first: export reads and writes safetensors only") from None
    check_safetensors(weights)
    projection_keys = check_sizes(source.path, config, family, name)
    widths = projection_widths(projection_keys, weight_index(source.path), family)
    glasses.check_fits(widths, f"model {name}")
    return BaseCheckpoint(source, config, family, weights, projection_keys)
