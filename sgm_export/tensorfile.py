"""Reading our own safetensors artifacts (scores, glasses) with one clear error when they are not."""

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open

from sgm_export.errors import CheckpointError


def read_tensor_file(path: Path, what: str, remedy: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of a safetensors file; `what`/`remedy` word the error."""
    try:
        tensors = load_file(path)
        with safe_open(path, "pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a valid {what} file ({error})", remedy) from None
    return tensors, metadata
