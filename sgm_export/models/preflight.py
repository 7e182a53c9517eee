"""Everything that can be checked about MODEL before it is loaded, without importing torch.

That it exists, is a model folder of a supported family, holds whole safetensors files (or
pickles the user allowed), runs no code the user did not allow, and takes sequences as long as
asked. `score` and `run` call this first, so that a bad model is reported in a second, before any
data is read or any output is started; `load_model` calls it too, so no path skips it.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from sgm_export.arch import Family, family_for
from sgm_export.errors import CheckpointError, SgmError, UnsafeCheckpointError
from sgm_export.modeling import MODELING_FILE, SGM_MODEL_TYPE, WEIGHTS_VARIANT, sha256_file, shipped_modeling_sha256
from sgm_export.models.checkpoint import check_safetensors, read_config, weight_files
from sgm_export.models.resolve import ModelSource, resolve_model

# Where a config may name code of its own, which transformers runs with trust_remote_code.
CODE_CONFIGS = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")
CONTEXT_KEYS = ("max_position_embeddings", "n_positions")


@dataclass(frozen=True)
class CheckedModel:
    """A model folder that passed every check, and what loading it needs to know."""

    source: ModelSource
    config: dict
    family: Family
    is_sgm_export: bool
    use_safetensors: bool


def check_model(name: str, allow_pickle: bool = False, trust_remote_code: bool = False) -> CheckedModel:
    """Resolve MODEL and check it thoroughly without loading a weight; errors are one line."""
    source = resolve_model(name, allow_pickle=allow_pickle)
    config = read_config(source.path)
    family, is_sgm_export = model_family(config)
    try:
        check_safetensors(weight_files(source.path, WEIGHTS_VARIANT if is_sgm_export else None))
        use_safetensors = True
    except UnsafeCheckpointError:
        if not allow_pickle:
            raise
        use_safetensors = False
    if is_sgm_export:
        check_modeling_file(source.path, trust_remote_code)
    elif not trust_remote_code:
        refuse_remote_code(source.path, name)
    return CheckedModel(source, config, family, is_sgm_export, use_safetensors)


def model_family(config: dict) -> tuple[Family, bool]:
    """The family row of a config.json, and whether it is an sgm-export module checkpoint."""
    if config.get("model_type") == SGM_MODEL_TYPE:
        base_config = config.get("base_config")
        base_type = base_config.get("model_type") if isinstance(base_config, dict) else None
        if not isinstance(base_type, str):
            raise CheckpointError("config.json of this sgm export has no base_config.model_type", "export the model again")
        return family_for(base_type), True
    if not isinstance(config.get("model_type"), str):
        raise CheckpointError("config.json has no model_type", "restore config.json from the original checkpoint")
    return family_for(config["model_type"]), False


def check_modeling_file(path: Path, trust_remote_code: bool) -> None:
    """Run an export's modeling_sgm.py only if it is our own file, unless the user trusts it."""
    modeling = path / MODELING_FILE
    if not modeling.is_file():
        raise CheckpointError(f"{path} is an sgm module export without {MODELING_FILE}", "export it again")
    if not trust_remote_code and sha256_file(modeling) != shipped_modeling_sha256():
        raise UnsafeCheckpointError(
            f"{modeling} differs from the {MODELING_FILE} that sgm-export ships, so it may run foreign code",
            "re-export the model, or pass --trust-remote-code if you have read the file",
        )


def refuse_remote_code(path: Path, name: str) -> None:
    """A model that names its own code (`auto_map`) is refused unless remote code is trusted.

    Transformers would quietly fall back to its built-in class for a known model type; refusing
    instead makes the choice explicit, whichever code the user then picks.
    """
    for file_name in CODE_CONFIGS:
        file = path / file_name
        if not file.is_file():
            continue
        try:
            content = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # not ours to judge here; loading reports it
        if isinstance(content, dict) and content.get("auto_map"):
            raise UnsafeCheckpointError(
                f"{name} ships its own code (auto_map in {file_name}), which runs only with --trust-remote-code",
                "pass --trust-remote-code (trust_remote_code: true in a recipe) if you trust its author, "
                "or delete auto_map to use the transformers class",
            )


def check_max_length(checked: CheckedModel, max_length: int) -> None:
    """Sequences may not be longer than the model's positions (learned ones would fail mid-run)."""
    config = checked.config.get("base_config", checked.config) if checked.is_sgm_export else checked.config
    context = next((config[key] for key in CONTEXT_KEYS if isinstance(config.get(key), int) and config[key] > 0), None)
    if context is not None and max_length > context:
        raise SgmError(
            f"--max-length {max_length} is longer than the {context} tokens {checked.source.name} can take",
            f"use --max-length {context} or less (score.max_length in a recipe)",
        )
