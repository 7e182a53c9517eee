"""Decode speed in PyTorch of the module and folded exports against the base model, side by side.

    python benchmarks/decode.py                          # demo model, all cores, 64 tokens, 15 rounds
    python benchmarks/decode.py --threads 1 --new-tokens 32 --repeats 30

Both exports of the same model and glasses are written into a temporary folder, then the base
model, the module export (`trust_remote_code=True`) and the folded export are loaded with
`AutoModelForCausalLM` in float32 and each decodes greedily from the same prompt, batch 1.

How decode speed is measured: each single-token forward pass with the KV cache (the cache that
`generate` would build, a `DynamicCache` for the model's config) and its argmax is timed on its
own, and the three variants take their steps in lockstep: step i of one, step i of the next, step
i of the third, the order rotated at every step. Decode rate = (N - 1) tokens over the sum of the
N - 1 step times of one round; the prefill (the prompt's forward pass) is not counted. This is
more precise than an N-token `generate` minus a 1-token one: no difference of two noisy runs, and
the three variants are timed within a fraction of a second of each other, so load from other
processes hits them alike (and interleaving costs no cache warmth: each step reads all of a
model's weights, about 1 GB for the demo, far more than any CPU cache holds). It leaves out
`generate`'s bookkeeping per token, which is the same for every variant and would only pull the
ratios towards 1.

Each of `--repeats` rounds decodes N tokens from scratch with all three. Reported per variant:
the median rate over rounds and its spread; per export: the median over rounds of its rate
divided by the base's rate in the same round, with that ratio's interquartile range, against
Target 4 of the performance issue (module >= 0.98x, folded >= 0.99x). Token checks: each
variant's timed loop must produce the same tokens as its own `generate` (so the loop is real
greedy decoding), and module and folded, the same model up to float rounding, must agree; base's
tokens are shown for comparison (they differ where the glasses bite). Scale values do not change
the speed; glasses are chosen as in onnx_decode.py.
"""

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from onnx_decode import PROMPT, synthetic_glasses
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, PreTrainedModel

from sgm_export.export import export_checkpoint
from sgm_export.glasses import load_glasses
from sgm_export.models.resolve import resolve_model

TARGETS = {"module": 0.98, "folded": 0.99}


def generate_tokens(model: PreTrainedModel, batch: dict, n: int) -> list[int]:
    """Exactly n greedy tokens from transformers' `generate` (end-of-sequence does not stop it)."""
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=n, do_sample=False, eos_token_id=None)
    return out[0, batch["input_ids"].shape[1] :].tolist()


def decode_round(models: dict[str, PreTrainedModel], batch: dict, n: int) -> tuple[dict[str, list[int]], dict[str, float]]:
    """Greedy decoding of n tokens with every model in lockstep; their tokens and decode rates."""
    caches = {name: DynamicCache(config=model.config.get_text_config(decoder=True)) for name, model in models.items()}
    with torch.inference_mode():
        tokens = {name: [int(model(**batch, cache=caches[name]).logits[0, -1].argmax())] for name, model in models.items()}
        seconds = dict.fromkeys(models, 0.0)
        names = list(models)
        for step in range(n - 1):
            for name in names[step % len(names) :] + names[: step % len(names)]:
                start = time.perf_counter()
                logits = models[name](input_ids=torch.tensor([[tokens[name][-1]]]), cache=caches[name]).logits
                tokens[name].append(int(logits[0, -1].argmax()))
                seconds[name] += time.perf_counter() - start
    return tokens, {name: (n - 1) / total for name, total in seconds.items()}


def quartiles(values: list[float]) -> tuple[float, float]:
    """First and third quartiles (inclusive method, so it works from two values on)."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def agreement(a: list[int], b: list[int]) -> str:
    """How many leading greedy tokens two generations share."""
    shared = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"{shared} of {len(a)}" + (" (identical)" if a == b else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--glasses", type=Path, help="default: out/demo/glasses.safetensors if it exists, else synthetic")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15, help="rounds; each decodes N tokens with every variant")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if args.new_tokens < 2:
        parser.error("--new-tokens must be at least 2: decode speed needs one step after the prefill")

    default_glasses = Path("out/demo/glasses.safetensors")
    glasses_path = args.glasses or (default_glasses if args.model == "demo" and default_glasses.is_file() else None)
    glasses = load_glasses(glasses_path) if glasses_path else synthetic_glasses(args.model)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:  # kept until the end: the weights may be memory-mapped
        folders = {
            "base": resolve_model(args.model).path,
            "module": export_checkpoint(args.model, glasses, Path(scratch) / "module", format="module"),
            "folded": export_checkpoint(args.model, glasses, Path(scratch) / "folded", format="folded"),
        }
        models = {
            name: AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=name == "module", dtype=torch.float32).eval()
            for name, folder in folders.items()
        }
        batch = dict(AutoTokenizer.from_pretrained(folders["base"])([PROMPT], return_tensors="pt"))
        n = args.new_tokens
        expected = {name: generate_tokens(model, batch, n) for name, model in models.items()}  # also the warm-up
        load_before = os.getloadavg()
        rates: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.repeats):
            tokens, round_rates = decode_round(models, batch, n)
            for name, rate in round_rates.items():
                rates[name].append(rate)
        load_after = os.getloadavg()

    print(
        f"Decode tokens/s, PyTorch float32, batch 1, {args.threads} threads, {n} new tokens after a "
        f"{batch['input_ids'].shape[1]}-token prompt, {args.repeats} rounds (model: {args.model}; "
        f"glasses: {glasses_path or 'synthetic'}).\n"
    )
    print_table(rates)
    print(
        f"- greedy tokens, module vs folded: {agreement(tokens['module'], tokens['folded'])}"
        f" -> {'agree' if tokens['module'] == tokens['folded'] else 'DISAGREE'}"
    )
    print(f"- greedy tokens, module vs base: {agreement(tokens['module'], tokens['base'])}")
    for name in tokens:
        print(f"- {name}: timed loop vs its own `generate`: {agreement(tokens[name], expected[name])}")
    print(
        f"- load average (1, 5, 15 min) before timing: {' '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {' '.join(f'{x:.2f}' for x in load_after)}"
    )
    print(f"- command: `python {shlex.join(sys.argv)}`")


def print_table(rates: dict[str, list[float]]) -> None:
    """Markdown table: rate per variant with its spread, and each export's paired ratio to base."""
    print("| variant | tokens/s (median) | IQR | min - max | vs base (median of paired ratios) | ratio IQR | target | met |")
    print("|---|---|---|---|---|---|---|---|")
    for name, values in rates.items():
        q1, q3 = quartiles(values)
        row = f"| {name} | {statistics.median(values):.2f} | {q1:.2f} - {q3:.2f} | {min(values):.2f} - {max(values):.2f} |"
        if name == "base":
            print(row + " 1 | | | |")
            continue
        ratios = [value / base for value, base in zip(values, rates["base"])]
        r1, r3 = quartiles(ratios)
        ratio, target = statistics.median(ratios), TARGETS[name]
        print(row + f" {ratio:.3f}x | {r1:.3f} - {r3:.3f} | >= {target:.2f}x | {'yes' if ratio >= target else 'NO'} |")
    print()


if __name__ == "__main__":
    main()
