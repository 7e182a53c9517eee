"""Reading our own safetensors artifacts (scores, glasses) with one clear error when they are not.

The framework is chosen by the caller: scores are read as torch tensors ("pt"), glasses as numpy
arrays ("np"), so that commands that only copy files and write scales (`export --format module`)
never import torch. Only `safetensors.safe_open` is imported here, which loads no framework itself.
"""

from pathlib import Path
from typing import Any, Literal

from safetensors import SafetensorError, safe_open

from sgm_export.errors import CheckpointError


def read_tensor_file(path: Path, what: str, remedy: str, framework: Literal["pt", "np"] = "pt") -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors and string metadata of a safetensors file; `what`/`remedy` word the error.

    A dtype that the framework lacks (bfloat16 for numpy) is reported like a corrupt file."""
    try:
        with safe_open(path, framework) as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.offset_keys()}
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, TypeError) as error:
        raise CheckpointError(f"{path} is not a valid {what} file ({error})", remedy) from None
    return tensors, metadata
