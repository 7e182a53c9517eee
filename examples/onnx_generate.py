"""Generate text from an sgm-export ONNX folder with ONNX Runtime; torch is not needed (nor imported).

    sgm-export run recipes/demo.yaml                        # out/demo/model: the demo's module export
    sgm-export onnx out/demo/model --out out/demo-onnx      # its ONNX folder, glasses taken from it
    python examples/onnx_generate.py out/demo-onnx --prompt "The weather today is"
    python examples/onnx_generate.py out/demo-onnx --sample --temperature 0.8 --top-p 0.9 --seed 0

Several --prompt run as one left-padded batch. With onnxruntime-gpu installed the CUDA provider
is used (--device auto), else the CPU.
"""

import argparse
import time

from sgm_export.runtime import OnnxCausalLM, Sampling

DEFAULT_PROMPTS = ["The weather today is", "I can't believe you would say something like that, you"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a folder written by `sgm-export onnx` (or OUT/model-onnx of `sgm-export run`)")
    parser.add_argument("--prompt", action="append", help="a prompt (repeat for a batch)")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    model = OnnxCausalLM(args.folder, device=args.device)
    sampling = Sampling(do_sample=args.sample, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    prompts = args.prompt or DEFAULT_PROMPTS
    start = time.perf_counter()
    continuations = model.generate(prompts, max_new_tokens=args.max_new_tokens, sampling=sampling)
    seconds = time.perf_counter() - start
    glasses = model.description.raw["glasses"]
    print(f"{model.description.decoder_file} on {model.session.get_providers()[0]}, glasses on {len(glasses['nodes'])} layers")
    for prompt, continuation in zip(prompts, continuations):
        print(f"\n{prompt}{continuation}")
    print(f"\n({seconds:.1f} s for {len(prompts)} prompt(s))")


if __name__ == "__main__":
    main()
