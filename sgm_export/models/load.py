"""Loading a model for scoring, verifying or evaluating: the right Auto class from the family
table, the requested device and dtype, and a tokenizer (plus the processor for vision-language
models). Untrusted code never runs: remote code
only with `trust_remote_code`, pickles only with `allow_pickle`, and our own module exports only
when their `modeling_sgm.py` is byte-identical to the one this package ships."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sgm_export.arch import Family, family_for
from sgm_export.errors import CheckpointError, SgmError, UnsafeCheckpointError
from sgm_export.modeling import (
    SGM_MODEL_TYPE,
    WEIGHTS_VARIANT,
    sha256_file,
    shipped_modeling_sha256,
)
from sgm_export.models.checkpoint import check_safetensors, read_config, weight_files
from sgm_export.models.processor import load_processor
from sgm_export.models.resolve import ModelSource, resolve_model


@dataclass
class LoadedModel:
    """A model ready to run, with what the stages need to know about it."""

    model: Any
    tokenizer: Any
    family: Family
    source: ModelSource
    device: torch.device
    dtype: torch.dtype
    is_sgm_export: bool
    processor: Any = None  # AutoProcessor of a vision-language model; None for text models


def resolve_device(device: str) -> torch.device:
    """`auto` is CUDA when present, else the CPU; asking for CUDA without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SgmError("--device cuda was asked for but no CUDA GPU is available", "use --device cpu or --device auto")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on GPUs and float32 on CPUs (where bfloat16 matmuls are slow)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def model_family(config: dict) -> tuple[Family, bool]:
    """The family row of a config.json, and whether it is an sgm-export module checkpoint."""
    if config.get("model_type") == SGM_MODEL_TYPE:
        return family_for(config["base_config"]["model_type"]), True
    if "model_type" not in config:
        raise CheckpointError("config.json has no model_type", "restore config.json from the original checkpoint")
    return family_for(config["model_type"]), False


def load_model(
    name: str,
    device: str = "auto",
    dtype: str = "auto",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load MODEL (demo, a directory, or a Hub id) with its tokenizer (and processor), in eval mode."""
    import transformers

    source = resolve_model(name, allow_pickle=allow_pickle)
    family, is_sgm_export = model_family(read_config(source.path))
    variant = WEIGHTS_VARIANT if is_sgm_export else None
    try:
        check_safetensors(weight_files(source.path, variant))
        use_safetensors = True
    except UnsafeCheckpointError:
        if not allow_pickle:
            raise
        use_safetensors = False
    if is_sgm_export:
        _check_modeling_file(source.path, trust_remote_code)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    auto_class = getattr(transformers, family.auto_class)
    try:
        model = auto_class.from_pretrained(
            source.path,
            dtype=torch_dtype,
            use_safetensors=use_safetensors,
            trust_remote_code=trust_remote_code or is_sgm_export,
        )
        # AutoTokenizer reads config.json too; for our own (checked) export that needs the same trust.
        tokenizer = transformers.AutoTokenizer.from_pretrained(source.path, trust_remote_code=trust_remote_code or is_sgm_export)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"could not load {name}: {first_line}", "check that the checkpoint is complete and supported") from None
    processor = load_processor(source.path, trust_remote_code or is_sgm_export) if family.multimodal else None
    if processor is not None:
        tokenizer = processor.tokenizer  # the processor's copy, with the image tokens it registers
    model.to(torch_device).eval()
    return LoadedModel(model, tokenizer, family, source, torch_device, torch_dtype, is_sgm_export, processor)


def _check_modeling_file(path: Path, trust_remote_code: bool) -> None:
    """Run an export's modeling_sgm.py only if it is our own file, unless the user trusts it."""
    modeling = path / "modeling_sgm.py"
    if not modeling.is_file():
        raise CheckpointError(f"{path} is an sgm module export without modeling_sgm.py", "export it again")
    if not trust_remote_code and sha256_file(modeling) != shipped_modeling_sha256():
        raise UnsafeCheckpointError(
            f"{modeling} differs from the modeling_sgm.py that sgm-export ships, so it may run foreign code",
            "re-export the model, or pass --trust-remote-code if you have read the file",
        )
