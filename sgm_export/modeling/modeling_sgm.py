"""SGM safety glasses: a fixed per-neuron scale applied before each MLP's output projection.

This file ships inside checkpoints written by `sgm-export export --format module`. It needs only
torch and transformers (never the `sgm_export` package), and it is the same file in every export,
so its SHA-256 (recorded in `sgm_export.json`) identifies it.

Layout of a checkpoint that uses it:
- `config.json`: `model_type: "sgm"`, `base_config` (the untouched config of the base model),
  `sgm` (which modules carry glasses, the base architecture, the scales file) and `auto_map`.
  Transformers does not know `model_type: "sgm"`, so loading without `trust_remote_code=True`
  stops with an error instead of silently returning the model without its glasses (fail closed).
- the base model's safetensors shards, byte for byte as they were, saved as the weights variant
  `sgm` (`model.sgm.safetensors`, or `model.safetensors.index.sgm.json` for sharded weights), so
  that loading the base class directly also finds no weights and stops (fail closed again);
- `sgm_glasses.safetensors`: one float32 vector per module, named `{module path}.sgm_scale`, and,
  for glasses that shift experts towards their non-toxic mean, `{module path}.sgm_shift` (added
  after the scale). Scales lie within [0, 1], or up to `sgm.max_scale` in config.json where the
  glasses amplify anti-toxic neurons;
- `sgm_export.json`: the manifest, with the SHA-256 of the glasses file (among others). Loading
  refuses a glasses file that does not match it, or that it does not record: a scales file
  rewritten to all 1.0 would otherwise load, silently, as the base model.

Loading builds the base architecture from `base_config`, loads its weights as usual (refusing a
checkpoint with missing weights, which transformers would otherwise fill at random), then turns
each listed output projection into a subclass of its own class whose input is multiplied by a
buffer `sgm_scale`. The result is an instance of a subclass of the base class with the base
class's own name (generation, pipelines and PEFT work as usual); saving it again writes this same layout, so the glasses cannot fall off.
"""

import hashlib
import json
import os
import shutil

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.utils import cached_file

SGM_FORMAT_VERSION = 1
SCALES_FILE = "sgm_glasses.safetensors"
SCALE_SUFFIX = ".sgm_scale"
SHIFT_SUFFIX = ".sgm_shift"
MANIFEST_FILE = "sgm_export.json"


class SgmConfig(PretrainedConfig):
    """Wraps the base model's config so that only this file can load the checkpoint."""

    model_type = "sgm"

    def __init__(self, base_config=None, sgm=None, **kwargs):
        self.base_config = base_config or {}
        self.sgm = sgm or {}
        super().__init__(**kwargs)

    def to_base_config(self):
        """The base model's own config object, as it was before the glasses were added."""
        base = dict(self.base_config)
        return AutoConfig.for_model(base.pop("model_type"), **base)


class ScaledInput:
    """Mixin for an output projection: multiply the neuron vector (its input) by `sgm_scale`."""

    def forward(self, hidden_states, *args, **kwargs):
        return super().forward(hidden_states * self.sgm_scale, *args, **kwargs)


class ShiftedInput(ScaledInput):
    """Mixin for an output projection: multiply its input by `sgm_scale`, then add `sgm_shift`."""

    def forward(self, hidden_states, *args, **kwargs):
        return super(ScaledInput, self).forward(hidden_states * self.sgm_scale + self.sgm_shift, *args, **kwargs)


class GlassesMixin:
    """Mixin for the whole model: saving keeps the glasses and this checkpoint layout."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        kwargs["variant"] = self.sgm_settings["weights_variant"]
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True) is False:
            return
        scales = {
            name + SCALE_SUFFIX: module.sgm_scale.detach().to("cpu", torch.float32).contiguous()
            for name, module in self.named_modules()
            if isinstance(module, ScaledInput)
        }
        scales.update(
            {
                name + SHIFT_SUFFIX: module.sgm_shift.detach().to("cpu", torch.float32).contiguous()
                for name, module in self.named_modules()
                if isinstance(module, ShiftedInput)
            }
        )
        scales_path = os.path.join(save_directory, SCALES_FILE)
        save_file(scales, scales_path, metadata={"format": "pt"})
        with open(os.path.join(save_directory, MANIFEST_FILE), "w", encoding="utf-8") as f:
            json.dump({"files": {SCALES_FILE: sha256_of(scales_path)}}, f, indent=2)
        config_path = os.path.join(save_directory, "config.json")
        with open(config_path, encoding="utf-8") as f:
            base_config = json.load(f)
        base_config.pop("architectures", None)
        sgm_config = SgmConfig(base_config=base_config, sgm=dict(self.sgm_settings))
        sgm_config.architectures = [self.sgm_settings["entry_class"]]
        sgm_config.auto_map = dict(self.sgm_settings["auto_map"])
        sgm_config.save_pretrained(save_directory)
        shutil.copyfile(__file__, os.path.join(save_directory, os.path.basename(__file__)))


def sha256_of(path):
    """SHA-256 of a file (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_format_version(sgm_settings):
    """Refuse a checkpoint laid out in a newer format than this file reads: it would load wrongly."""
    version = sgm_settings.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError("SGM config does not record an integer format_version; this checkpoint is damaged")
    if version > SGM_FORMAT_VERSION:
        raise ValueError(
            f"SGM checkpoint format {version} is newer than this modeling_sgm.py reads (format {SGM_FORMAT_VERSION}); "
            "load it with the modeling_sgm.py it ships, or upgrade sgm-export"
        )


def check_scales_file(scales_path, manifest_path, scales_file):
    """Refuse glasses that differ from the SHA-256 the export recorded, or that it never recorded."""
    try:
        with open(manifest_path, encoding="utf-8") as f:
            recorded = json.load(f).get("files", {}).get(scales_file)
    except (ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, str):
        raise ValueError(f"SGM manifest {MANIFEST_FILE} does not record {scales_file}; this checkpoint is damaged")
    if sha256_of(scales_path) != recorded:
        raise ValueError(f"SGM glasses {scales_file} differ from the SHA-256 in {MANIFEST_FILE}; they were changed after export")


def put_on_glasses(model, scales, sgm_settings):
    """Attach each scale vector (and shift vector, if any) to its output projection; returns the
    model, now with glasses."""
    if not sgm_settings.get("modules"):
        raise ValueError("SGM config lists no modules to carry glasses; this checkpoint is damaged")
    max_scale = float(sgm_settings.get("max_scale", 1.0))
    modules = dict(model.named_modules())
    for key, scale in scales.items():
        if key.endswith(SHIFT_SUFFIX):
            if key[: -len(SHIFT_SUFFIX)] + SCALE_SUFFIX not in scales:
                raise ValueError(f"SGM glasses file has {key} without its scale; this checkpoint is damaged")
            continue
        if not key.endswith(SCALE_SUFFIX):
            raise ValueError(f"SGM glasses file holds {key!r}, which is neither a scale nor a shift")
        name = key[: -len(SCALE_SUFFIX)]
        projection = modules.get(name)
        if projection is None:
            raise ValueError(f"SGM glasses name module {name!r}, which this model does not have")
        weight = projection.weight
        in_features = weight.shape[0] if type(projection).__name__ == "Conv1D" else weight.shape[1]
        shift = scales.get(name + SHIFT_SUFFIX)
        for vector in (scale, shift):
            if vector is not None and vector.shape != (in_features,):
                raise ValueError(f"SGM glasses for {name} have shape {tuple(vector.shape)}, expected ({in_features},)")
        if not bool(torch.isfinite(scale).all()) or bool((scale < 0).any()) or bool((scale > max_scale).any()):
            raise ValueError(f"SGM scale for {name} has values that are not finite or not within [0, {max_scale:g}]")
        if shift is not None and not bool(torch.isfinite(shift).all()):
            raise ValueError(f"SGM shift for {name} has values that are not finite")
        base_class = type(projection)
        mixin = ScaledInput if shift is None else ShiftedInput
        projection.__class__ = type("Sgm" + base_class.__name__, (mixin, base_class), {})
        projection.register_buffer("sgm_scale", scale.to(weight.device, weight.dtype), persistent=False)
        if shift is not None:
            projection.register_buffer("sgm_shift", shift.to(weight.device, weight.dtype), persistent=False)
    missing = set(sgm_settings["modules"]) - {key[: -len(SCALE_SUFFIX)] for key in scales if key.endswith(SCALE_SUFFIX)}
    if missing:
        raise ValueError(f"SGM glasses file lacks scales for {sorted(missing)[:3]}")
    base_class = type(model)
    # The subclass keeps the base class's name: transformers' pipelines check the model's class
    # name against the architectures they support (text-generation: the names in
    # MODEL_FOR_CAUSAL_LM_MAPPING_NAMES), and log "is not supported" for any other name.
    model.__class__ = type(base_class.__name__, (GlassesMixin, base_class), {})
    model.sgm_settings = dict(sgm_settings)
    return model


class SgmForCausalLM(PreTrainedModel):
    """Entry point for the Auto classes: loads the base model, then puts the glasses on."""

    config_class = SgmConfig

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, **kwargs):
        kwargs.pop("trust_remote_code", None)
        kwargs.pop("adapter_kwargs", None)
        hub_kwargs = {
            key: kwargs[key]
            for key in ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
            if key in kwargs
        }
        if not isinstance(config, SgmConfig):
            config = SgmConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        # The format and the glasses are checked first: nothing is loaded for a checkpoint this file
        # cannot read or whose glasses were changed.
        check_format_version(config.sgm)
        scales_path = cached_file(pretrained_model_name_or_path, config.sgm["scales_file"], **hub_kwargs)
        manifest_path = cached_file(pretrained_model_name_or_path, MANIFEST_FILE, **hub_kwargs)
        check_scales_file(scales_path, manifest_path, config.sgm["scales_file"])
        base_class = getattr(transformers, config.sgm["base_architecture"])
        kwargs["variant"] = config.sgm["weights_variant"]
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = base_class.from_pretrained(
            pretrained_model_name_or_path, *model_args, config=config.to_base_config(), output_loading_info=True, **kwargs
        )
        if info["missing_keys"]:
            # Transformers would initialise them at random: a silently different model.
            raise ValueError(f"SGM checkpoint lacks weights {sorted(info['missing_keys'])[:3]}; it is incomplete")
        model = put_on_glasses(model, load_file(scales_path), config.sgm)
        return (model, info) if wants_info else model


class SgmForImageTextToText(SgmForCausalLM):
    """The same entry point, registered for `AutoModelForImageTextToText`."""
