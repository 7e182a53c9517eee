"""Running sgm-export's ONNX exports with ONNX Runtime, without torch.

This package imports only onnxruntime, numpy, tokenizers (and Pillow, for images) besides the
standard library, so a deployment needs none of torch or transformers:

    from sgm_export.runtime import OnnxCausalLM, Sampling

    model = OnnxCausalLM("out/demo-onnx")            # the folder `sgm-export onnx` wrote
    print(model.generate("The weather today is", max_new_tokens=20))
    print(model.generate(["Hi", "Once upon a time"], sampling=Sampling(do_sample=True, top_p=0.9, seed=0)))

The CUDA execution provider is used when `onnxruntime-gpu` is installed (`device="auto"`), the
CPU one otherwise.
"""

from sgm_export.runtime.causal_lm import OnnxCausalLM
from sgm_export.runtime.layout import OnnxDescription, read_description
from sgm_export.runtime.sampling import Sampling

__all__ = ["OnnxCausalLM", "OnnxDescription", "Sampling", "read_description"]
