"""Every client of an export side by side: does it run, does it give the module export's greedy
tokens, and how fast does it decode.

    python benchmarks/clients.py --module out/demo/model --onnx out/demo/model-onnx \\
        --gguf gemma-3-270m-sgm-f32.gguf --node-dir .node --markdown

The reference is the module export in transformers (`generate`, greedy, float32). The clients:
the transformers `pipeline("text-generation")` on the module export (trust_remote_code); the ONNX
folder (`sgm-export onnx`) in sgm_export.runtime, in ONNX Runtime GenAI (its genai_config.json)
and in transformers.js under Node (default options; benchmarks/clients_transformers_js.mjs); and
the GGUF of the folded export in llama.cpp (llama-cpp-python), fed the same prompt token ids. Use
an f32 (or f16) GGUF: a quantized one cannot be expected to agree token for token; its type is
read from the file and reported.

Agreement: per prompt, how many of the reference's new tokens a client repeats before its first
different token. Decode speed: the new tokens after the first over the time of an N-token
generation minus that of a 1-token one (which is the prefill), summed over the prompts, after one
warm-up generation. Clients run one after the other, each with `--threads` threads (torch,
ONNX Runtime's intra-op pool in the runtime, GenAI and transformers.js, llama.cpp); the load
average before and after is printed, since other processes slow every row, and multi-threaded
runs most where the cores are oversubscribed (llama.cpp's threads wait for each other at every
layer). A client that cannot run is reported with
its error and the others still run; one that is not installed (or not given) is skipped.
"""

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROMPTS = [
    "The weather today is",
    "Here is a short story about a lighthouse keeper who finds a message in a bottle. One morning,",
    "The three most important things to know about learning a new language are",
]
JS_SCRIPT = Path(__file__).with_name("clients_transformers_js.mjs")


@dataclass
class Run:
    """One prompt in one client: its new token ids, and the seconds of an N-token and a 1-token generation."""

    new_ids: list[int]
    seconds: float
    one_token_seconds: float


@dataclass
class Row:
    """One client's line of the table."""

    client: str
    export: str
    runs: list[Run] = field(default_factory=list)
    error: str | None = None
    note: str = ""

    def agreement(self, reference: list[list[int]]) -> list[str]:
        return [f"{shared_prefix(run.new_ids, ref)}/{len(ref)}" for run, ref in zip(self.runs, reference, strict=True)]

    def decode_tokens_per_second(self) -> float | None:
        tokens = sum(len(run.new_ids) - 1 for run in self.runs)
        seconds = sum(run.seconds - run.one_token_seconds for run in self.runs)
        return tokens / seconds if self.runs and seconds > 0 else None


def shared_prefix(tokens: list[int], reference: list[int]) -> int:
    """How many leading tokens equal the reference's, up to the first difference."""
    count = 0
    for token, expected in zip(tokens, reference):
        if token != expected:
            break
        count += 1
    return count


def timed_runs(prompt_ids: list[list[int]], generate: Callable[[list[int], int], list[int]], new_tokens: int) -> list[Run]:
    """Warm up once, then time an N-token and a 1-token generation per prompt."""
    generate(prompt_ids[0], 1)
    runs = []
    for ids in prompt_ids:
        start = time.perf_counter()
        new_ids = generate(ids, new_tokens)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        generate(ids, 1)
        runs.append(Run(new_ids, seconds, time.perf_counter() - start))
    return runs


def transformers_rows(module: Path, prompt_ids: list[list[int]], new_tokens: int) -> tuple[Row, Row]:
    """The reference (`generate` on the module export) and the text-generation pipeline."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(module, trust_remote_code=True, dtype=torch.float32).eval()
    pad = model.generation_config.pad_token_id

    def generate(ids: list[int], n: int) -> list[int]:
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=n,
                do_sample=False,
                pad_token_id=pad,
            )
        return out[0, len(ids) :].tolist()

    reference = Row("transformers `generate` (reference)", "module", timed_runs(prompt_ids, generate, new_tokens))

    row = Row("transformers `pipeline`", "module")
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("transformers").addHandler(handler)
    try:
        generator = transformers.pipeline("text-generation", model=str(module), trust_remote_code=True, dtype=torch.float32)
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    unsupported = [message for message in warnings if "not supported" in message]
    row.note = "logged: " + unsupported[0][:80] if unsupported else "no 'not supported' warning"
    tokenizer = generator.tokenizer

    def pipe(ids: list[int], n: int) -> list[int]:
        text = tokenizer.decode(ids, skip_special_tokens=True)
        out = generator(text, max_new_tokens=n, do_sample=False, return_tensors=True)[0]["generated_token_ids"]
        return list(out[len(ids) :]) if list(out[: len(ids)]) == ids else list(out)

    row.runs = timed_runs(prompt_ids, pipe, new_tokens)
    return reference, row


def runtime_row(onnx: Path, prompt_ids: list[list[int]], new_tokens: int, threads: int) -> Row:
    from sgm_export.runtime import OnnxCausalLM

    model = OnnxCausalLM(onnx, device="cpu", threads=threads)
    return Row(
        "sgm_export.runtime (ONNX Runtime)", "onnx", timed_runs(prompt_ids, lambda ids, n: model.generate_ids([ids], n)[0], new_tokens)
    )


def genai_row(onnx: Path, prompt_ids: list[list[int]], new_tokens: int, threads: int) -> Row:
    import onnxruntime_genai as og

    config = og.Config(str(onnx))
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
    model = og.Model(config)

    def generate(ids: list[int], n: int) -> list[int]:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + n, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(np.array([ids], dtype=np.int32))
        tokens = []
        while not generator.is_done():
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
        return tokens

    return Row(f"ONNX Runtime GenAI {og.__version__}", "onnx", timed_runs(prompt_ids, generate, new_tokens))


def transformers_js_row(onnx: Path, node_dir: Path, prompts: list[str], prompt_ids: list[list[int]], new_tokens: int, threads: int) -> Row:
    package = json.loads((node_dir / "node_modules" / "@huggingface" / "transformers" / "package.json").read_text())
    row = Row(f"transformers.js {package['version']} (Node {node_version()})", "onnx")
    result = subprocess.run(
        ["node", str(JS_SCRIPT), str(node_dir), str(onnx), str(new_tokens), str(threads), *prompts],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"node exited {result.returncode}")
    output = json.loads(result.stdout.strip().splitlines()[-1])
    same_input = all(part["input_ids"] == ids for part, ids in zip(output["prompts"], prompt_ids, strict=True))
    row.runs = [Run(part["new_ids"], part["seconds"], part["one_token_seconds"]) for part in output["prompts"]]
    row.note = "its tokenizer gives the same prompt ids" if same_input else "its tokenizer gives other prompt ids"
    return row


def llama_cpp_row(gguf: Path, prompt_ids: list[list[int]], new_tokens: int, threads: int) -> Row:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)

    def generate(ids: list[int], n: int) -> list[int]:
        tokens = []
        for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if llama_cpp.llama_token_is_eog(llm._model.vocab, token):
                break
            tokens.append(int(token))
            if len(tokens) == n:
                break
        return tokens

    own = [llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True) for prompt in PROMPTS]
    row = Row(
        f"llama.cpp (llama-cpp-python {llama_cpp.__version__}), GGUF {gguf_type(gguf)}",
        "folded",
        timed_runs(prompt_ids, generate, new_tokens),
    )
    row.note = "fed the reference's prompt ids; its own tokenizer gives " + ("the same ids" if own == prompt_ids else "other ids")
    return row


def gguf_type(path: Path) -> str:
    """The GGUF's file type (ALL_F32, MOSTLY_F16, MOSTLY_Q4_K_M, ...), from its metadata."""
    from gguf import GGUFReader, LlamaFileType

    field_ = GGUFReader(str(path)).fields.get("general.file_type")
    if field_ is None:
        return "of unrecorded type"
    return LlamaFileType(int(field_.parts[field_.data[0]][0])).name.removeprefix("MOSTLY_").removeprefix("ALL_")


def node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def markdown(rows: list[Row], reference: list[list[int]], new_tokens: int) -> str:
    lines = [
        f"| client | export | works | greedy tokens equal to the reference, of {new_tokens}, per prompt | decode tokens/s | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if row.error:
            lines.append(f"| {row.client} | {row.export} | no | | | {row.error} |")
            continue
        speed = row.decode_tokens_per_second()
        agreement = ", ".join(row.agreement(reference))
        lines.append(f"| {row.client} | {row.export} | yes | {agreement} | {speed:.1f} | {row.note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", type=Path, required=True, help="a module export (the reference and the pipeline)")
    parser.add_argument("--onnx", type=Path, help="the ONNX folder of the same glasses (runtime, GenAI, transformers.js)")
    parser.add_argument("--gguf", type=Path, help="the GGUF of the folded export (llama.cpp); f32 or f16 for a fair agreement")
    parser.add_argument(
        "--node-dir", type=Path, default=Path(".node"), help="where npm installed @huggingface/transformers (default: .node)"
    )
    parser.add_argument("--new-tokens", type=int, default=32, help="greedy tokens per prompt (default: 32)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="threads for torch, ONNX Runtime and llama.cpp (default: all cores)"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown after the JSON")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.module, trust_remote_code=True)
    prompt_ids = [tokenizer(prompt)["input_ids"] for prompt in PROMPTS]
    reference_row, pipeline_row = transformers_rows(args.module, prompt_ids, args.new_tokens)
    reference = [run.new_ids for run in reference_row.runs]
    rows = [reference_row, pipeline_row]
    clients: list[tuple[str, str, bool, Callable[[], Row]]] = [
        (
            "sgm_export.runtime (ONNX Runtime)",
            "onnx",
            args.onnx is not None,
            lambda: runtime_row(args.onnx, prompt_ids, args.new_tokens, args.threads),
        ),
        (
            "ONNX Runtime GenAI",
            "onnx",
            args.onnx is not None and installed("onnxruntime_genai"),
            lambda: genai_row(args.onnx, prompt_ids, args.new_tokens, args.threads),
        ),
        (
            "transformers.js",
            "onnx",
            args.onnx is not None
            and shutil.which("node") is not None
            and (args.node_dir / "node_modules" / "@huggingface" / "transformers").is_dir(),
            lambda: transformers_js_row(args.onnx, args.node_dir, PROMPTS, prompt_ids, args.new_tokens, args.threads),
        ),
        (
            "llama.cpp",
            "folded",
            args.gguf is not None and installed("llama_cpp"),
            lambda: llama_cpp_row(args.gguf, prompt_ids, args.new_tokens, args.threads),
        ),
    ]
    for name, export, available, measure in clients:
        if not available:
            print(f"skipped {name}: not installed or its export not given", file=sys.stderr)
            continue
        try:
            rows.append(measure())
        except Exception as error:  # a client that fails is a finding, not the end of the run
            rows.append(Row(name, export, error=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"))
        print(f"measured {rows[-1].client}", file=sys.stderr)
    report = {
        "machine": machine(),
        "threads": args.threads,
        "new_tokens": args.new_tokens,
        "prompts": PROMPTS,
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "seconds": round(time.perf_counter() - started, 1),
        "reference_tokens": reference,
        "reference_texts": [tokenizer.decode(ids) for ids in reference],
        "clients": [
            {
                "client": row.client,
                "export": row.export,
                "works": row.error is None,
                "error": row.error,
                "agreement": row.agreement(reference) if row.error is None else None,
                "decode_tokens_per_second": round(row.decode_tokens_per_second() or 0.0, 2) if row.error is None else None,
                "note": row.note,
                "new_ids": [run.new_ids for run in row.runs],
            }
            for row in rows
        ],
    }
    print(json.dumps(report, indent=2))
    if args.markdown:
        print(markdown(rows, reference, args.new_tokens))


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
