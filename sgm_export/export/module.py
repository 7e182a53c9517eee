"""`--format module`: the base weights untouched, the scales beside them, and modeling_sgm.py.

The base safetensors files are copied byte for byte (or hard-linked): a single `model.safetensors`
becomes `model.sgm.safetensors` and a sharded index becomes `model.safetensors.index.sgm.json`
(transformers' weights "variant"), so nothing but modeling_sgm.py finds the weights. config.json
wraps the base config under `model_type: "sgm"`, which transformers refuses without
`trust_remote_code=True`: the checkpoint fails closed instead of loading without its glasses.
The card and manifest are added by `export_checkpoint`.
"""

import json
import shutil
from pathlib import Path

from safetensors.numpy import save_file

from sgm_export import __version__
from sgm_export.export.files import copy_file, copy_files
from sgm_export.export.source import BaseCheckpoint
from sgm_export.glasses import Glasses
from sgm_export.layout import MODELING_FILE, SCALES_FILE
from sgm_export.modeling import FORMAT_VERSION, SCALE_SUFFIX, SGM_MODEL_TYPE, SHIFT_SUFFIX, WEIGHTS_VARIANT, shipped_modeling_path
from sgm_export.models.checkpoint import SAFE_INDEX, SAFE_SINGLE, with_variant

ENTRY_CLASSES = {"AutoModelForCausalLM": "SgmForCausalLM", "AutoModelForImageTextToText": "SgmForImageTextToText"}


def write_module_checkpoint(base: BaseCheckpoint, glasses: Glasses, staging: Path, link: bool = False) -> dict[str, str]:
    """Fill the empty folder `staging` with the module checkpoint; return the SHA-256 of the
    files it copied (name -> digest), hashed while they were copied, for the manifest."""
    digests = {file.name: copy_file(file, staging / file.name, link) for file in base.companion_files()}
    digests |= _copy_weights(base, staging, link)
    modules = [base.family.module_name(layer) for layer in range(len(glasses.scales))]
    scales = {name + SCALE_SUFFIX: scale for name, scale in zip(modules, glasses.scales)}  # float32 vectors, as Glasses keeps them
    scales.update({name + SHIFT_SUFFIX: shift for name, shift in zip(modules, glasses.shifts or [])})
    save_file(scales, staging / SCALES_FILE, metadata={"format": "pt", **glasses.metadata.to_strings()})
    shutil.copyfile(shipped_modeling_path(), staging / MODELING_FILE)
    max_scale = max(float(scale.max()) for scale in glasses.scales)
    config = sgm_config(base, modules, max_scale)
    (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return digests


def sgm_config(base: BaseCheckpoint, modules: list[str], max_scale: float = 1.0) -> dict:
    """config.json of the module checkpoint: the base config nested under the sgm wrapper.
    `max_scale` is recorded only where glasses amplify (a scale above 1), so that the loader's
    range check stays as strict as it can be."""
    entry = ENTRY_CLASSES[base.family.auto_class]
    auto_map = {"AutoConfig": "modeling_sgm.SgmConfig", base.family.auto_class: f"modeling_sgm.{entry}"}
    base_config = {key: value for key, value in base.config.items() if key != "architectures"}
    return {
        "model_type": SGM_MODEL_TYPE,
        "architectures": [entry],
        "auto_map": auto_map,
        "base_config": base_config,
        "sgm": {
            "format_version": FORMAT_VERSION,
            "sgm_export_version": __version__,
            "base_architecture": base_architecture(base),
            "weights_variant": WEIGHTS_VARIANT,
            "scales_file": SCALES_FILE,
            "modules": modules,
            "entry_class": entry,
            "auto_map": auto_map,
            **({"max_scale": max_scale} if max_scale > 1.0 else {}),
        },
    }


def base_architecture(base: BaseCheckpoint) -> str:
    """The transformers class that holds the base weights, e.g. Gemma3ForCausalLM."""
    architectures = base.config.get("architectures") or []
    if architectures:
        return architectures[0]
    import transformers

    auto_class = getattr(transformers, base.family.auto_class)
    config = transformers.AutoConfig.for_model(**base.config)
    return auto_class._model_mapping[type(config)].__name__


def _copy_weights(base: BaseCheckpoint, staging: Path, link: bool) -> dict[str, str]:
    """Copy the safetensors files unchanged, renaming the entry file to the `sgm` variant."""
    single = base.path / SAFE_SINGLE
    if single.is_file():
        name = with_variant(SAFE_SINGLE, WEIGHTS_VARIANT)
        return {name: copy_file(single, staging / name, link)}
    digests = dict(zip((shard.name for shard in base.weights), copy_files([(shard, staging / shard.name) for shard in base.weights], link)))
    index = with_variant(SAFE_INDEX, WEIGHTS_VARIANT)
    return digests | {index: copy_file(base.path / SAFE_INDEX, staging / index, link)}
