"""Decode speed of the ONNX export in ONNX Runtime against the PyTorch module export, side by side.

    python benchmarks/onnx_decode.py                       # demo model, glasses of out/demo or synthetic
    python benchmarks/onnx_decode.py --glasses out/demo/glasses.safetensors --new-tokens 64 --repeats 5

Both exports of the same model and glasses are written into a temporary folder (the ONNX export
is timed), then each generates greedily from the same prompt, batch 1, with the same number of
threads: PyTorch through transformers' `generate` on the module export (`trust_remote_code`),
ONNX Runtime through `sgm_export.runtime`. Decode speed is (N - 1) new tokens over the time of
an N-token generation minus that of a 1-token one (which is the prefill), so the prompt is not
counted. The two run in alternation, `--repeats` times, and the median is reported, so that load
from other processes hits both alike. Scale values do not change the speed; without --glasses,
glasses that halve the first 100 neurons of every layer are used.
"""

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sgm_export.export import export_checkpoint
from sgm_export.export.onnx import export_onnx
from sgm_export.glasses import Glasses, load_glasses
from sgm_export.models.load import load_model
from sgm_export.runtime import OnnxCausalLM

PROMPT = "Here is a short story about a lighthouse keeper who finds a message in a bottle. One morning,"


def synthetic_glasses(model: str) -> Glasses:
    from sgm_export.arch import decoder_projections

    loaded = load_model(model, device="cpu", dtype="float32")
    scales = []
    for projection in decoder_projections(loaded.model, loaded.family):
        scale = torch.ones(projection.weight.shape[loaded.family.input_axis()])
        scale[:100] = 0.5
        scales.append(scale)
    return Glasses(scales, {"mode": "benchmark"})


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--glasses", type=Path, help="default: out/demo/glasses.safetensors if it exists, else synthetic")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    default_glasses = Path("out/demo/glasses.safetensors")
    glasses_path = args.glasses or (default_glasses if args.model == "demo" and default_glasses.is_file() else None)
    glasses = load_glasses(glasses_path) if glasses_path else synthetic_glasses(args.model)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        module_dir = export_checkpoint(args.model, glasses, Path(scratch) / "module", format="module")
        export_seconds = timed(lambda: export_onnx(args.model, Path(scratch) / "onnx", glasses))

        from transformers import AutoModelForCausalLM, AutoTokenizer

        module = AutoModelForCausalLM.from_pretrained(module_dir, trust_remote_code=True, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(module_dir, trust_remote_code=True)
        runtime = OnnxCausalLM(Path(scratch) / "onnx", device="cpu", threads=args.threads)
        # Both generate exactly N tokens: end-of-sequence is ignored on both sides.
        runtime.description = dataclasses.replace(runtime.description, eos_token_ids=())

        batch = tokenizer([PROMPT], return_tensors="pt")
        prompt_ids = batch["input_ids"][0].tolist()
        no_eos = {"eos_token_id": None, "pad_token_id": runtime.pad_token_id}

        def torch_generate(n: int) -> list[int]:
            with torch.inference_mode():
                out = module.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False, **no_eos)
            return out[0, len(prompt_ids) :].tolist()

        def onnx_generate(n: int) -> list[int]:
            return [int(step.tokens[0]) for step in runtime.steps([prompt_ids], n)]

        n = args.new_tokens
        torch_tokens, onnx_tokens = torch_generate(n), onnx_generate(n)  # warm-up, and the tokens to compare
        speeds: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
        for _ in range(args.repeats):
            for name, generate in (("pytorch", torch_generate), ("onnxruntime", onnx_generate)):
                decode_seconds = timed(lambda g=generate: g(n)) - timed(lambda g=generate: g(1))
                speeds[name].append((n - 1) / decode_seconds)

    median = {name: statistics.median(values) for name, values in speeds.items()}
    shared = next((i for i, (a, b) in enumerate(zip(torch_tokens, onnx_tokens)) if a != b), min(len(torch_tokens), len(onnx_tokens)))
    report = {
        "model": args.model,
        "threads": args.threads,
        "new_tokens": n,
        "prompt_tokens": len(prompt_ids),
        "onnx_export_seconds": round(export_seconds, 1),
        "decode_tokens_per_second": {name: round(value, 2) for name, value in median.items()},
        "all_runs": {name: [round(v, 2) for v in values] for name, values in speeds.items()},
        "onnxruntime_over_pytorch": round(median["onnxruntime"] / median["pytorch"], 2),
        "greedy_tokens_equal_for": f"{shared} of {n}",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
