"""Scoring against a plain forward pass over the same batches, and the memory scoring takes.

    python benchmarks/scoring.py                                   # Gemma-3-270M (demo) on the CPU
    python benchmarks/scoring.py --examples 256 --repeats 5 --memory
    python benchmarks/scoring.py --config 1b --device cuda --dtype bfloat16   # on a GPU

Overhead: the same examples are cut into the same length-sorted batches; "plain" runs the model's
forward on them with no hooks (what any use of the model costs: `use_cache=False`,
`logits_to_keep=1`, as scoring calls it), "score" runs the whole scoring loop (`fill_store`:
tokenizing, hooks that pool every layer's neurons over the text tokens, the store, the NaN
checks). The two alternate, `--repeats` times each after a warm-up, and the medians are compared,
so that load from other processes hits both alike. AUROC is timed on its own
(benchmarks/auroc.py), as it runs once, after all forward passes.

Memory (`--memory`): two fresh processes, one that only loads the model and one that loads it and
scores; each reports its own peak (resident set on the CPU, `max_memory_allocated` on a GPU). The
model's footprint is the first; scoring should take little beyond it plus the pooled-activation
store (examples x neurons x 4 bytes).

`--config 1b` builds a Llama-shaped model of about one billion parameters from a config (random
weights, the demo's tokenizer or `--tokenizer`'s), for machines where the demo model is too
small to load a GPU; `--data` reads the examples from a file instead of the built-in data.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SGM_EXPORT_NO_PROGRESS", "1")

import torch  # noqa: E402

from sgm_export.arch import decoder_widths, family_for  # noqa: E402
from sgm_export.data.builtin import read_builtin  # noqa: E402
from sgm_export.data.sources import read_source  # noqa: E402
from sgm_export.models.load import LoadedModel, load_model, resolve_device, resolve_dtype  # noqa: E402
from sgm_export.models.resolve import resolve_model  # noqa: E402
from sgm_export.options import ScoreOptions  # noqa: E402
from sgm_export.score.batching import BatchPlan  # noqa: E402
from sgm_export.score.runner import batch_source, fill_store, model_inputs, starting_batch_size  # noqa: E402

CONFIGS = {
    # Llama-shaped: 0.97B parameters in the decoder layers, plus 4096 per token of the vocabulary.
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=4),
}


def load(args: argparse.Namespace) -> LoadedModel:
    """The demo model (or --model), or a model built from a config with the demo's tokenizer."""
    if args.config is None:
        return load_model(args.model, args.device, args.dtype)
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    demo = resolve_model("demo" if args.tokenizer is None else args.tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(demo.path)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **CONFIGS[args.config])
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    return LoadedModel(model, tokenizer, family_for("llama"), demo, device, dtype, False)


def examples(args: argparse.Namespace) -> list:
    """`--examples` rows: half toxic, half neutral, from the built-in data or `--data`."""
    if args.data is not None:
        rows = read_source(args.data)
        toxic, neutral = [row for row in rows if row.label == 1], [row for row in rows if row.label == 0]
    else:
        toxic, neutral = read_builtin("rtp-toxic", "score"), read_builtin("neutral", "score")
    half = args.examples // 2
    return toxic[:half] + neutral[: args.examples - half]


def synchronize(loaded: LoadedModel) -> None:
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)


def overhead(args: argparse.Namespace) -> dict:
    loaded = load(args)
    rows = examples(args)
    options = ScoreOptions(batch_size=args.batch_size, max_length=args.max_length)
    source = batch_source(loaded, rows, options)
    batches = [source.make_batch(positions) for positions in BatchPlan(source.groups, starting_batch_size(loaded, len(rows), options))]
    inputs = [model_inputs(loaded, batch) for batch in batches]

    def plain() -> None:
        with torch.inference_mode():
            for batch_inputs in inputs:
                loaded.model(**batch_inputs, use_cache=False, logits_to_keep=1)

    def score() -> None:
        fill_store(loaded, rows, options)

    times = {"plain": [], "score": []}
    plain(), score()  # warm-up
    for _ in range(args.repeats):
        for name, function in (("plain", plain), ("score", score)):
            synchronize(loaded)
            start = time.perf_counter()
            function()
            synchronize(loaded)
            times[name].append(time.perf_counter() - start)
    plain_s, score_s = statistics.median(times["plain"]), statistics.median(times["score"])
    return {
        "model": args.config or args.model,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "examples": len(rows),
        "batches": len(batches),
        "neurons": sum(decoder_widths(loaded.model, loaded.family)),
        "plain_s": times["plain"],
        "score_s": times["score"],
        "plain examples/s (median)": round(len(rows) / plain_s, 1),
        "score examples/s (median)": round(len(rows) / score_s, 1),
        "score / plain": round(score_s / plain_s, 3),
    }


def child(args: argparse.Namespace) -> None:
    """One measurement in a fresh process: load (and score), then print the peak as JSON."""
    loaded = load(args)
    rows = examples(args)
    if args.child == "score":
        fill_store(loaded, rows, ScoreOptions(batch_size=args.batch_size, max_length=args.max_length))
    cuda = loaded.device.type == "cuda"
    peak = torch.cuda.max_memory_allocated(loaded.device) if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    parameters = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    store = len(rows) * sum(decoder_widths(loaded.model, loaded.family)) * 4
    print(json.dumps({"peak_bytes": peak, "parameter_bytes": parameters, "store_bytes": store, "kind": "gpu" if cuda else "rss"}))


def memory(args: argparse.Namespace) -> dict:
    def measure(kind: str) -> dict:
        command = [sys.executable, __file__, "--child", kind, *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    loaded_only, scored = measure("load"), measure("score")
    mib = 1 << 20
    expected = loaded_only["peak_bytes"] + scored["store_bytes"]
    return {
        "measured as": "peak GPU memory allocated" if scored["kind"] == "gpu" else "peak resident set of the process",
        "parameters MiB": round(scored["parameter_bytes"] / mib),
        "load only: peak MiB": round(loaded_only["peak_bytes"] / mib),
        "store MiB": round(scored["store_bytes"] / mib, 1),
        "score: peak MiB": round(scored["peak_bytes"] / mib),
        "score peak / (load peak + store)": round(scored["peak_bytes"] / expected, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--config", choices=sorted(CONFIGS), help="build a model of this size from a config instead")
    parser.add_argument("--tokenizer", help="with --config: a model folder whose tokenizer to use (default: the demo's)")
    parser.add_argument("--data", help="a labelled .jsonl/.csv file instead of the built-in data")
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--batch-size", default=16, type=lambda value: value if value == "auto" else int(value))
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="also measure peak memory in fresh processes")
    parser.add_argument("--child", choices=["load", "score"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    report = {"command": "python " + " ".join(sys.argv), "overhead": overhead(args)}
    if args.memory:
        report["memory"] = memory(args)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
