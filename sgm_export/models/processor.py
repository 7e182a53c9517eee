"""Loading the processor of a vision-language model: tokenizer, image processor and chat template.

transformers 5 builds the Qwen2-VL, Qwen2.5-VL and SmolVLM processors with a video processor,
and its video processors need torchvision. Scoring reads images only, so where torchvision is
missing the processor is built without its video part (`images_only`) instead of failing: the
image processor, tokenizer and chat template it uses are the ones the checkpoint ships.
"""

import json
from pathlib import Path
from typing import Any

from sgm_export.errors import CheckpointError

VIDEO_ATTRIBUTE = "video_processor"


def load_processor(path: Path, trust_remote_code: bool = False) -> Any:
    """The checkpoint's processor, ready to turn images and chat turns into model inputs."""
    import transformers
    from transformers.utils import is_torchvision_available

    try:
        return transformers.AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, AttributeError, ImportError) as error:
        processor_class = _processor_class(path)
        if is_torchvision_available() or processor_class is None or VIDEO_ATTRIBUTE not in processor_class.get_attributes():
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(
                f"could not load the processor of {path}: {first_line}",
                "a vision-language checkpoint needs its processor files (preprocessor_config.json, tokenizer, chat template)",
            ) from None
    return images_only(processor_class).from_pretrained(path, trust_remote_code=trust_remote_code)


def images_only(processor_class: type) -> type:
    """A subclass of `processor_class` without its video processor (and so without torchvision).

    transformers reads a processor's parts from its `__init__` signature; the subclass leaves the
    video processor out of that list and passes None where `__init__` still expects one. It
    renders chats with the generic `apply_chat_template`: SmolVLM's own override only adds video
    sampling defaults, read from the video processor it lacks.
    """
    from transformers import ProcessorMixin

    def get_attributes(cls) -> list[str]:
        return [name for name in super(subclass, cls).get_attributes() if name != VIDEO_ATTRIBUTE]

    def from_args_and_dict(cls, args, processor_dict, **kwargs):
        return super(subclass, cls).from_args_and_dict(args, processor_dict, **{VIDEO_ATTRIBUTE: None, **kwargs})

    namespace = {
        "get_attributes": classmethod(get_attributes),
        "from_args_and_dict": classmethod(from_args_and_dict),
        "apply_chat_template": ProcessorMixin.apply_chat_template,
    }
    subclass = type(processor_class.__name__, (processor_class,), namespace)
    return subclass


def _processor_class(path: Path) -> type | None:
    """The processor class a checkpoint names (processor_config.json), else its model type's default."""
    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = None
    processor_config = path / "processor_config.json"
    if processor_config.is_file():
        name = json.loads(processor_config.read_text(encoding="utf-8")).get("processor_class")
    if name is None:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        model_type = config.get("base_config", config).get("model_type")
        name = PROCESSOR_MAPPING_NAMES.get(model_type)
    return getattr(transformers, name, None) if name else None
