"""Eval's generation against a plain cached decode loop and transformers' `generate`, side by side.

    python benchmarks/eval_generate.py                                   # demo, bf16, batch 64, 20 tokens
    python benchmarks/eval_generate.py --batch-size 32 --new-tokens 32 --dtype float32 --repeats 5

All three continue the same prompts (the first `--batch-size` of `builtin:rtp-toxic:heldout`,
one continuation each, so every run is one left-padded batch of the same rows) with top-k 50
sampling at temperature 1 for `--new-tokens` tokens:

- `eval`: `sample_continuations`, everything eval does to generate: encoding the prompts, the
  per-continuation random streams, the cached loop with the inverse-CDF draw, decoding the text.
- `plain`: the reference of issue 16, the least a cached sampler can do: prefill with
  `logits_to_keep=1`, then one cached forward pass per token, `torch.topk` over the last
  position and `torch.multinomial` within the k; no EOS checks, no text.
- `generate`: transformers' `generate(do_sample=True, top_k=50)`, eval's generation before
  issue 16.

The three take turns within each round (the order rotates from round to round) so that load
from other processes on a shared machine hits them alike; reported are the median seconds per
method and the median over rounds of each method's time divided by `plain`'s in the same round,
against the goal of eval within 1.2x of the plain loop. The number of forward passes eval made is
checked: an EOS in every row would end its loop early and flatter it.
"""

import argparse
import os
import shlex
import statistics
import sys
import time
from dataclasses import replace

import torch
from transformers import DynamicCache

from sgm_export.data.encode import Encoded, collate
from sgm_export.evaluate.generate import SamplingSettings, encode_prompt, pad_id, sample_continuations
from sgm_export.evaluate.prompts import toxic_prompts
from sgm_export.models.load import LoadedModel, load_model

TOP_K = 50
GOAL = 1.2
WARM_UP_TOKENS = 2


def plain_loop(loaded: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int) -> torch.Tensor:
    """The reference: a cached decode loop sampling top-k on the last position, nothing else."""
    model = loaded.model
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache, logits_to_keep=1).logits
    tokens = []
    for step in range(n):
        values, candidates = logits[:, -1].topk(TOP_K, dim=-1)
        token = candidates.gather(1, torch.multinomial(values.float().softmax(dim=-1), 1))
        tokens.append(token)
        if step + 1 < n:
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(attention_mask.shape[0], 1)], dim=1)
            position_ids = position_ids[:, -1:] + 1
            logits = model(input_ids=token, attention_mask=attention_mask, position_ids=position_ids, cache=cache, logits_to_keep=1).logits
    return torch.cat(tokens, dim=1)


def hf_generate(loaded: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int) -> torch.Tensor:
    """transformers' sampling `generate`, as eval called it before (EOS does not stop it here)."""
    padding = pad_id(loaded.tokenizer)
    return loaded.model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        do_sample=True,
        top_k=TOP_K,
        top_p=1.0,
        temperature=1.0,
        max_new_tokens=n,
        min_new_tokens=n,
        pad_token_id=padding,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--batch-size", type=int, default=64, help="prompts, one continuation each, in one batch")
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each runs all three methods once")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model(args.model, args.device, args.dtype)
    prompts = toxic_prompts("builtin:rtp-toxic:heldout", args.batch_size)
    n = args.new_tokens
    settings = SamplingSettings(samples=1, max_new_tokens=n, top_k=TOP_K, temperature=1.0, seed=0, batch_size=len(prompts), max_length=64)
    encoded = [encode_prompt(loaded.tokenizer, prompt.text, "", 64) for prompt in prompts]
    batch = collate([Encoded(ids, [True] * len(ids)) for ids in encoded], [], pad_id(loaded.tokenizer), padding_side="left")
    input_ids, attention_mask = batch.input_ids.to(loaded.device), batch.attention_mask.to(loaded.device)
    passes = []
    counter = loaded.model.get_output_embeddings().register_forward_hook(lambda *_: passes.append(1))
    eval_passes: list[int] = []

    def run_eval(tokens: int) -> None:
        passes.clear()
        sample_continuations(loaded, prompts, "", replace(settings, max_new_tokens=tokens))
        eval_passes.append(len(passes))

    methods = {
        "eval": run_eval,
        "plain": lambda tokens: plain_loop(loaded, input_ids, attention_mask, tokens),
        "generate": lambda tokens: hf_generate(loaded, input_ids, attention_mask, tokens),
    }
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    with torch.inference_mode():
        for method in methods.values():  # warm-up, short: on a shared CPU every second counts
            method(WARM_UP_TOKENS)
        eval_passes.clear()
        load_before = os.getloadavg()
        for round_number in range(args.repeats):
            for name in names[round_number % 3 :] + names[: round_number % 3]:
                if args.device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                methods[name](n)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                seconds[name].append(time.perf_counter() - start)
        load_after = os.getloadavg()
    counter.remove()

    print(
        f"Generation of {len(prompts)} continuations x {n} tokens (top-k {TOP_K}, temperature 1), one left-padded batch of "
        f"{batch.input_ids.shape[1]} columns, {args.model} in {args.dtype} on {args.device}, {args.threads} threads, "
        f"{args.repeats} rounds.\n"
    )
    print("| method | seconds (median) | min - max | tokens/s | vs plain (median of paired ratios) |")
    print("| --- | --- | --- | --- | --- |")
    for name, values in seconds.items():
        ratio = statistics.median(value / plain for value, plain in zip(values, seconds["plain"], strict=True))
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {min(values):.2f} - {max(values):.2f} | {len(prompts) * n / median:.0f} | {ratio:.2f}x |")
    eval_ratio = statistics.median(value / plain for value, plain in zip(seconds["eval"], seconds["plain"], strict=True))
    print(f"\n- goal: eval within {GOAL}x of the plain loop: {'met' if eval_ratio <= GOAL else 'NOT met'} ({eval_ratio:.2f}x)")
    print(f"- forward passes of eval per run: {sorted(set(eval_passes))} (a full run makes {n})")
    before, after = (" ".join(f"{x:.2f}" for x in load) for load in (load_before, load_after))
    print(f"- load average (1, 5, 15 min) before: {before}; after: {after}")
    print(f"- command: `python {shlex.join(sys.argv)}`")


if __name__ == "__main__":
    main()
