"""Everything that can be checked about MODEL before it is loaded, without importing torch.

That it exists, is a model folder of a supported family, runs no code the user did not allow
(audit.py: checked before any file but config.json is read), holds whole safetensors files (or
pickles the user allowed) whose shapes match what config.json claims, and takes sequences as
long as asked. `score` and `run` call this first, so that a bad model is reported in a second,
before any data is read or any output is started; `load_model` calls it too, so no path skips it.
"""

from dataclasses import dataclass, replace

from sgm_export.arch import Family, family_for
from sgm_export.errors import CheckpointError, SgmError, UnsafeCheckpointError
from sgm_export.modeling import SGM_MODEL_TYPE, WEIGHTS_VARIANT
from sgm_export.models.audit import audit_folder
from sgm_export.models.checkpoint import check_safetensors, read_config, weight_files
from sgm_export.models.resolve import ModelSource, resolve_model
from sgm_export.models.sizes import check_sizes

CONTEXT_KEYS = ("max_position_embeddings", "n_positions")


@dataclass(frozen=True)
class CheckedModel:
    """A model folder that passed every check, and what loading it needs to know.

    `run` checks MODEL once and hands this to every stage (collect, score, export, ONNX, verify,
    eval), so that none resolves, downloads or audits it again; `allow_pickle` and
    `trust_remote_code` are the access it was checked with.
    """

    source: ModelSource
    config: dict
    family: Family
    is_sgm_export: bool
    use_safetensors: bool
    allow_pickle: bool = False
    trust_remote_code: bool = False

    def with_access(self, allow_pickle: bool, trust_remote_code: bool) -> "CheckedModel":
        """This model as `check_model` passes it with the given access. A stage that allows less
        than the model was checked with checks only what the wider access let through (the audit
        without trusted code, safetensors without pickles), so the errors are the same as if it
        had checked MODEL itself; one that allows more checks it again in full."""
        if (allow_pickle and not self.allow_pickle) or (trust_remote_code and not self.trust_remote_code):
            return check_model(self.source.name, allow_pickle, trust_remote_code)
        if self.trust_remote_code and not trust_remote_code:
            audit_folder(self.source.path, self.source.name)
        if not self.use_safetensors and not allow_pickle:
            check_safetensors(weight_files(self.source.path, WEIGHTS_VARIANT if self.is_sgm_export else None))  # refuses the pickles
        return replace(self, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)


def checked_model(model: "str | CheckedModel", allow_pickle: bool = False, trust_remote_code: bool = False) -> CheckedModel:
    """MODEL checked now, or the checked model a caller already holds, with the access asked for."""
    if isinstance(model, CheckedModel):
        return model.with_access(allow_pickle, trust_remote_code)
    return check_model(model, allow_pickle, trust_remote_code)


def check_model(name: str, allow_pickle: bool = False, trust_remote_code: bool = False) -> CheckedModel:
    """Resolve MODEL and check it thoroughly without loading a weight; errors are one line."""
    source = resolve_model(name, allow_pickle=allow_pickle)
    config = read_config(source.path)
    family, is_sgm_export = model_family(config)
    audit_folder(source.path, name, trust_remote_code)  # before any other file of the folder is read
    variant = WEIGHTS_VARIANT if is_sgm_export else None
    try:
        check_safetensors(weight_files(source.path, variant))
        use_safetensors = True
    except UnsafeCheckpointError:
        if not allow_pickle:
            raise
        use_safetensors = False
    if use_safetensors:
        check_sizes(source.path, config["base_config"] if is_sgm_export else config, family, name, variant)
    return CheckedModel(source, config, family, is_sgm_export, use_safetensors, allow_pickle, trust_remote_code)


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


def check_max_length(checked: CheckedModel, max_length: int) -> None:
    """Sequences may not be longer than the model's positions (learned ones would fail mid-run)."""
    config = checked.config.get("base_config", checked.config) if checked.is_sgm_export else checked.config
    context = next((config[key] for key in CONTEXT_KEYS if isinstance(config.get(key), int) and config[key] > 0), None)
    if context is not None and max_length > context:
        raise SgmError(
            f"--max-length {max_length} is longer than the {context} tokens {checked.source.name} can take",
            f"use --max-length {context} or less (score.max_length in a recipe)",
        )
