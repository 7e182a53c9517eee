"""Generate text from an sgm-export ONNX folder with ONNX Runtime; torch is not needed (nor imported).

    sgm-export run recipes/demo.yaml                        # out/demo/model: the demo's module export
    sgm-export onnx out/demo/model --out out/demo-onnx      # its ONNX folder, glasses taken from it
    python examples/onnx_generate.py out/demo-onnx --prompt "The weather today is"
    python examples/onnx_generate.py out/demo-onnx --sample --temperature 0.8 --top-p 0.9 --seed 0
    sgm-export onnx out/llava/model --out out/llava-onnx    # a vision-language export: three graphs
    python examples/onnx_generate.py out/llava-onnx --image photo.jpg --prompt "What is in this picture?"

Several --prompt run as one left-padded batch. With a vision-language export, each prompt is asked
about an image through the model's chat template: give one --image for all prompts or one per
prompt (none: the prompts are asked without an image). With onnxruntime-gpu installed the CUDA
provider is used (--device auto), else the CPU.
"""

import argparse
import sys
import time

from sgm_export.errors import SgmError
from sgm_export.runtime import OnnxCausalLM, OnnxVisionLM, Sampling, read_description

DEFAULT_IMAGE_PROMPTS = ["What is in this picture?"]
DEFAULT_PROMPTS = ["The weather today is", "I can't believe you would say something like that, you"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a folder written by `sgm-export onnx` (or OUT/model-onnx of `sgm-export run`)")
    parser.add_argument("--prompt", action="append", help="a prompt (repeat for a batch)")
    parser.add_argument("--image", action="append", help="an image for a vision-language export (once, or once per --prompt)")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    sampling = Sampling(do_sample=args.sample, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    prompts = args.prompt or (DEFAULT_IMAGE_PROMPTS if args.image else DEFAULT_PROMPTS)
    vision = "image" in read_description(args.folder).raw
    if args.image and not vision:
        parser.error(f"{args.folder} is a text export: --image needs a vision-language export")
    if args.image and len(args.image) not in (1, len(prompts)):
        parser.error(f"give one --image, or one per --prompt ({len(prompts)})")
    start = time.perf_counter()
    if vision:
        model = OnnxVisionLM(args.folder, device=args.device)
        images = (args.image * len(prompts) if len(args.image) == 1 else args.image) if args.image else None
        continuations = model.generate(prompts, max_new_tokens=args.max_new_tokens, sampling=sampling, images=images)
    else:
        model = OnnxCausalLM(args.folder, device=args.device)
        continuations = model.generate(prompts, max_new_tokens=args.max_new_tokens, sampling=sampling)
    seconds = time.perf_counter() - start
    glasses = model.description.raw["glasses"]
    print(f"{model.description.decoder_file} on {model.session.get_providers()[0]}, glasses on {len(glasses['nodes'])} layers")
    for prompt, continuation in zip(prompts, continuations):
        print(f"\n{prompt}{continuation}")
    print(f"\n({seconds:.1f} s for {len(prompts)} prompt(s))")


if __name__ == "__main__":
    try:
        main()
    except SgmError as error:  # a bad folder or image: one line, as the CLI reports it
        sys.exit(f"error: {error}")
