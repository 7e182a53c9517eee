"""Running sgm-export's ONNX exports with ONNX Runtime, without torch.

This package imports only onnxruntime, numpy and tokenizers besides the standard library (and
Pillow and jinja2 for the images and chat template of a vision-language export), so a
deployment needs none of torch or transformers:

    from sgm_export.runtime import OnnxCausalLM, Sampling

    model = OnnxCausalLM("out/demo-onnx")            # the folder `sgm-export onnx` wrote
    print(model.generate("The weather today is", max_new_tokens=20))
    print(model.generate(["Hi", "Once upon a time"], sampling=Sampling(do_sample=True, top_p=0.9, seed=0)))

The CUDA execution provider is used when `onnxruntime-gpu` is installed (`device="auto"`), the
CPU one otherwise. `OnnxVisionLM` runs the three graphs of a vision-language export from prompts
and images (`model.generate(["What is this?"], images=["cat.png"])`; see docs/onnx.md).
"""

from sgm_export.runtime.causal_lm import OnnxCausalLM
from sgm_export.runtime.layout import OnnxDescription, read_description
from sgm_export.runtime.sampling import Sampling
from sgm_export.runtime.vision_lm import OnnxVisionLM

__all__ = ["OnnxCausalLM", "OnnxDescription", "OnnxVisionLM", "Sampling", "read_description"]
