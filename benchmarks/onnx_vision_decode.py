"""Decode speed with an image: the ONNX export in ONNX Runtime against the PyTorch module export.

    python benchmarks/onnx_vision_decode.py out/demo-llava/model out/demo-llava/onnx

Takes a vision-language module export and the ONNX folder made from it (the multimodal demo
recipe, recipes/demo-llava.yaml, writes both). Each answers the same prompt about the same photo,
batch 1, greedily, with the same number of threads: PyTorch through transformers' `generate` on
the module export (`trust_remote_code`, processor and chat template of the export), ONNX Runtime
through `sgm_export.runtime.OnnxVisionLM` (its numpy processor). Decode speed is (N - 1) new
tokens over the time of an N-token generation minus that of a 1-token one, so the vision tower
and the prefill of the image tokens are not counted; the prefill time is reported on its own.
The two run in alternation, `--repeats` times, and the medians are reported, so that load from
other processes hits both alike. Prints a JSON report.
"""

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import torch

from sgm_export.data.images import neutral_image_paths
from sgm_export.runtime import OnnxVisionLM

PROMPT = "Describe this picture in detail."


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", type=Path, help="the module export (a folder with modeling_sgm.py)")
    parser.add_argument("onnx", type=Path, help="the ONNX folder made from it")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image_path = neutral_image_paths()[0]

    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    module = AutoModelForImageTextToText.from_pretrained(args.module, trust_remote_code=True, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(args.module, trust_remote_code=True)
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(chat, add_generation_prompt=True)
    bos = processor.tokenizer.bos_token
    inputs = processor(  # the template writes <bos> itself where the model has one: the processor must not add another
        images=Image.open(image_path).convert("RGB"), text=text, return_tensors="pt", add_special_tokens=not (bos and text.startswith(bos))
    )
    prompt_length = inputs["input_ids"].shape[1]

    runtime = OnnxVisionLM(args.onnx, device="cpu", threads=args.threads)
    runtime.description = dataclasses.replace(runtime.description, eos_token_ids=())  # both make exactly N tokens
    ids, arrays = runtime.prepare([PROMPT], [image_path])
    no_eos = {"eos_token_id": None, "pad_token_id": runtime.pad_token_id}

    def torch_generate(n: int) -> list[int]:
        with torch.inference_mode():
            out = module.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False, **no_eos)
        return out[0, prompt_length:].tolist()

    def onnx_generate(n: int) -> list[int]:
        return [int(step.tokens[0]) for step in runtime.steps(ids, n, **arrays)]

    n = args.new_tokens
    torch_tokens, onnx_tokens = torch_generate(n), onnx_generate(n)  # warm-up, and the tokens to compare
    speeds: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
    prefill: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
    for _ in range(args.repeats):
        for name, generate in (("pytorch", torch_generate), ("onnxruntime", onnx_generate)):
            first = timed(lambda g=generate: g(1))
            speeds[name].append((n - 1) / (timed(lambda g=generate: g(n)) - first))
            prefill[name].append(first)

    median = {name: statistics.median(values) for name, values in speeds.items()}
    shared = next((i for i, (a, b) in enumerate(zip(torch_tokens, onnx_tokens)) if a != b), min(len(torch_tokens), len(onnx_tokens)))
    report = {
        "module": str(args.module),
        "onnx": str(args.onnx),
        "image": image_path.name,
        "threads": args.threads,
        "new_tokens": n,
        "prompt_tokens": prompt_length,
        "prompt_tokens_onnx": len(ids[0]),
        "decode_tokens_per_second": {name: round(value, 2) for name, value in median.items()},
        "prefill_seconds": {name: round(statistics.median(values), 2) for name, values in prefill.items()},
        "all_runs": {name: [round(v, 2) for v in values] for name, values in speeds.items()},
        "onnxruntime_over_pytorch": round(median["onnxruntime"] / median["pytorch"], 2),
        "greedy_tokens_equal_for": f"{shared} of {n}",
        "load_average": os.getloadavg(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
