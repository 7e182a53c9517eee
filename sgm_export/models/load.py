"""Loading a model for scoring, verifying or evaluating: the right Auto class from the family
table, the requested device and dtype, and a tokenizer. Untrusted code never runs: remote code
only with `trust_remote_code`, pickles only with `allow_pickle`, and our own module exports only
when their `modeling_sgm.py` is byte-identical to the one this package ships and no config names
other code (see audit.py, which runs before anything is loaded).
A checkpoint that lacks some weights is refused: transformers would fill them in at random."""

from dataclasses import dataclass
from typing import Any

import torch

from sgm_export.arch import Family
from sgm_export.errors import CheckpointError, SgmError, first_line
from sgm_export.models.preflight import CheckedModel, checked_model
from sgm_export.models.processor import load_processor
from sgm_export.models.resolve import ModelSource


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
    processor: Any | None = None  # vision-language models: builds image+text inputs

    @property
    def pad_token_id(self) -> int:
        """The id every stage pads a batch with (see `pad_token_id`)."""
        return pad_token_id(self.tokenizer)


def pad_token_id(tokenizer: Any) -> int:
    """How a batch is padded, for scoring, sampling, fluency and verification alike: with the
    tokenizer's pad token, else its EOS (many causal LMs have no pad token), else 0. Padded
    positions are masked out everywhere, so the choice changes no score and no logit; having one
    rule keeps the stages from drifting apart."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


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


def load_model(
    model: str | CheckedModel,
    device: str = "auto",
    dtype: str = "auto",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    device_map: str | None = None,
    gpus: list[int] | None = None,
) -> LoadedModel:
    """Load MODEL (demo, a directory, or a Hub id; or one `check_model` already checked) with its
    tokenizer, in eval mode.

    With `device_map` (auto, balanced, sequential), accelerate spreads the layers over the GPUs
    (over `gpus` only, when given: the share of one rank of a data-parallel run), for a model
    that one GPU cannot hold; `device` is then where the inputs go, the first layer's device.
    """
    import transformers

    checked = checked_model(model, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    name, path = checked.source.name, checked.source.path
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    # Our own export: check_model found no auto_map but the one naming modeling_sgm.py, and that
    # file equal to the shipped one, so trusting remote code runs exactly that file.
    trusted = trust_remote_code or checked.is_sgm_export
    auto_class = getattr(transformers, checked.family.auto_class)
    placement = _placement(device_map, gpus, torch_device)
    try:
        model, info = auto_class.from_pretrained(
            path,
            dtype=torch_dtype,
            use_safetensors=checked.use_safetensors,
            trust_remote_code=trusted,
            output_loading_info=True,
            **placement,
        )
    except Exception as error:  # third-party loading code raises every kind of error for a bad checkpoint
        raise CheckpointError(
            f"could not load {name}: {first_line(error)}", "check that the checkpoint is complete and supported"
        ) from None
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise CheckpointError(
            f"{name} lacks {len(missing)} weights ({', '.join(missing[:3])}), which would be filled in at random",
            "download or copy the whole checkpoint again",
        )
    try:
        # AutoTokenizer reads config.json too; for our own (checked) export that needs the same trust.
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=trusted)
    except Exception as error:
        raise CheckpointError(
            f"could not load the tokenizer of {name}: {first_line(error)}",
            "copy the model's tokenizer files (tokenizer.json, tokenizer_config.json, ...) into its folder",
        ) from None
    processor = load_processor(path, trusted) if checked.family.multimodal else None
    if processor is not None:
        tokenizer = processor.tokenizer  # the processor's copy, with the image tokens it registers
    if placement:
        torch_device = model.get_input_embeddings().weight.device
    else:
        model.to(torch_device)
    model.eval()
    return LoadedModel(model, tokenizer, checked.family, checked.source, torch_device, torch_dtype, checked.is_sgm_export, processor)


def _placement(device_map: str | None, gpus: list[int] | None, device: torch.device) -> dict[str, Any]:
    """from_pretrained's arguments that spread the model over devices (none without a device map)."""
    if device_map is None:
        return {}
    if device.type != "cuda":
        return {"device_map": {"": "cpu"}}  # nothing to spread over: accelerate would only add disk offloading
    from accelerate.utils import get_max_memory

    available = get_max_memory()
    return {
        "device_map": device_map,
        "max_memory": {gpu: available[gpu] for gpu in (gpus if gpus is not None else range(torch.cuda.device_count()))},
    }
