"""Turning what the user typed as MODEL (`demo`, a local directory or a Hub id) into a local
directory of safetensors files, refusing pickles unless asked."""

import re
from dataclasses import dataclass
from pathlib import Path

from sgm_export.errors import ModelNotFoundError
from sgm_export.models import demo, demo_llava
from sgm_export.models.checkpoint import PICKLE_SUFFIXES

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PICKLE_PATTERNS = [f"*{suffix}" for suffix in PICKLE_SUFFIXES]
_NEVER_NEEDED = ["*.gguf", "*.onnx", "*.onnx_data", "*.h5", "*.msgpack", "*.ot", "*.tflite", "*.mlmodel"]


@dataclass(frozen=True)
class ModelSource:
    """A model as a local directory, and the Hub id it came from when there is one."""

    path: Path
    name: str
    hub_id: str | None
    license: str | None = None


def resolve_model(name: str, allow_pickle: bool = False, revision: str | None = None) -> ModelSource:
    """Find MODEL locally, or download it from the Hub (safetensors and small files only)."""
    if name == demo.DEMO_NAME:
        return ModelSource(demo.demo_model_dir(), name, demo.DEMO_HUB_ID, demo.DEMO_LICENSE)
    if name == demo_llava.DEMO_LLAVA_NAME:  # assembled here, so it has no Hub id of its own
        return ModelSource(demo_llava.demo_llava_dir(), name, None, demo_llava.DEMO_LLAVA_LICENSE)
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSource(path.resolve(), name, None)
    if path.exists():
        raise ModelNotFoundError(f"{name} is a file, not a model directory", "pass the directory that holds config.json")
    if not _HUB_ID.match(name):
        raise ModelNotFoundError(
            f"model {name!r} is neither a directory here nor a Hub id (owner/name)",
            "check the path, or use 'demo' for the embedded Gemma-3-270M ('demo-llava' for its multimodal variant)",
        )
    return ModelSource(_download(name, allow_pickle, revision), name, name)


def _download(repo_id: str, allow_pickle: bool, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    ignore = list(_NEVER_NEEDED) + ([] if allow_pickle else _PICKLE_PATTERNS)
    try:
        return Path(snapshot_download(repo_id, revision=revision, ignore_patterns=ignore))
    except RepositoryNotFoundError:
        raise ModelNotFoundError(
            f"the Hub has no model {repo_id!r} (or it is private)", "check the id, or log in with `hf auth login` for private models"
        ) from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelNotFoundError(
            f"could not download {repo_id!r} from the Hugging Face Hub ({reason})",
            "check your network, or download it once and pass the local directory",
        ) from None
