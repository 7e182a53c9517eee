"""`sgm-export export` of a sharded checkpoint against copying its files, and the peak memory of
the folded export against its largest shard.

    python benchmarks/export.py                           # 1.2B-parameter Llama, bfloat16, 6 shards (2.4 GB)
    python benchmarks/export.py --repeats 5 --work /data/bench --layers 32 --shard-size 1GB

The model is built once from a config (random weights) and cached under `--work`, with random
glasses (scales in [0, 1]). Every command runs as its own process, timed from start to exit, as a
user sees it: `cp -r BASE DEST`, and `sgm-export export BASE --glasses G --out DEST` with
`--format module` (the first time, when the shards' SHA-256 must be computed for the manifest,
and again, when digests remembered from an earlier export are used), `--format folded`, and
`--format module --link`. Each is run once to warm the page cache, then all run in alternation
`--repeats` times and the medians are reported, so that load from other processes hits them
alike. The --link runs come last, alternating with cp -r again: a hard link changes the base
files' change time, after which remembered digests are (rightly) not trusted. Before each run
the previous output is deleted and the page cache is synced (outside the timing), so every run
starts without pending writeback; no command syncs its own output. The start-up that an export
pays whatever the model's size (Python and the imports of the module export path, which has no
torch) is timed too, so the rest can be compared with `cp -r`. Peak memory is the maximum
resident set size of each process (`wait4`). A child's count starts from what its parent held
when it forked, so this script never imports torch itself: the model and glasses are built in a
child process of their own.
"""

import argparse
import multiprocessing
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

MB = 1e6
HASH_SHARDS = "import hashlib, sys; [hashlib.file_digest(open(p, 'rb'), 'sha256') for p in sys.argv[1:]]"
SCRIPT = Path(sys.executable).with_name("sgm-export")  # the console script, as users run it
SGM_EXPORT = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "sgm_export"]


def build_base(work: Path, layers: int, hidden: int, intermediate: int, dtype: str, shard_size: str) -> Path:
    """A random Llama saved in shards, built once per configuration (atomically, by a rename).

    The tensors are made and written one shard at a time (their names and shapes come from the
    model built on the meta device), so a model larger than this machine's memory can be built.
    """
    import json

    import torch
    import transformers
    from safetensors.torch import save_file

    folder = work / f"llama-l{layers}-h{hidden}-i{intermediate}-{dtype}-{shard_size}"
    if folder.is_dir():
        return folder
    config = transformers.LlamaConfig(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 128,
        num_key_value_heads=hidden // 128,
        vocab_size=32000,
        tie_word_embeddings=False,
        architectures=["LlamaForCausalLM"],
    )
    with torch.device("meta"):
        shapes = {name: tuple(tensor.shape) for name, tensor in transformers.LlamaForCausalLM(config).state_dict().items()}
    staging = work / (folder.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    limit = int(shard_size.removesuffix("MB")) * 10**6 if shard_size.endswith("MB") else int(shard_size.removesuffix("GB")) * 10**9
    groups: list[list[str]] = [[]]
    size = 0
    itemsize = torch.empty((), dtype=getattr(torch, dtype)).element_size()
    for name, shape in shapes.items():
        nbytes = itemsize * int(torch.Size(shape).numel())
        if groups[-1] and size + nbytes > limit:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    generator = torch.Generator().manual_seed(0)
    weight_map = {}
    for number, names in enumerate(groups, 1):
        shard = f"model-{number:05d}-of-{len(groups):05d}.safetensors"
        tensors = {name: (torch.randn(shapes[name], generator=generator) * 0.02).to(getattr(torch, dtype)) for name in names}
        save_file(tensors, staging / shard, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(names, shard)
    index = {"metadata": {"total_size": sum(f.stat().st_size for f in staging.glob("*.safetensors"))}, "weight_map": weight_map}
    (staging / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.save_pretrained(staging)
    staging.rename(folder)
    return folder


def build_glasses(work: Path, layers: int, intermediate: int) -> Path:
    """Random scales in [0, 1] for every neuron, a third of them left at 1."""
    import torch

    from sgm_export.glasses import Glasses, save_glasses

    path = work / f"glasses-l{layers}-i{intermediate}.safetensors"
    if not path.is_file():
        generator = torch.Generator().manual_seed(0)
        scales = []
        for _ in range(layers):
            scale = torch.rand(intermediate, generator=generator)
            scale[torch.rand(intermediate, generator=generator) < 1 / 3] = 1.0
            scales.append(scale)
        save_glasses(Glasses(scales, {"mode": "benchmark"}), path)
    return path


@dataclass
class Case:
    """One command of the benchmark, with the environment it runs in and what to do before it."""

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    before: Callable[[], None] = lambda: None


def run(case: Case) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of one process."""
    case.before()
    start = time.perf_counter()
    process = subprocess.Popen(case.command, stdout=subprocess.DEVNULL, env={**os.environ, **case.env})
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {shlex.join(case.command)}")
    return seconds, usage.ru_maxrss * 1024 / MB


def measure(cases: dict[str, Case], repeats: int, dest: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run the cases in alternation, `repeats` times after a dropped warm-up round."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    peaks: dict[str, list[float]] = {name: [] for name in cases}
    for repeat in range(repeats + 1):
        for name, case in cases.items():
            shutil.rmtree(dest, ignore_errors=True)
            os.sync()
            seconds, peak = run(case)
            if repeat:
                times[name].append(seconds)
                peaks[name].append(peak)
    shutil.rmtree(dest, ignore_errors=True)
    return times, peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/sgm-export-bench"), help="where the model is cached and outputs go")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=8192)
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    parser.add_argument("--shard-size", default="500MB", help="max_shard_size of save_pretrained")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as builder:
        base = builder.submit(build_base, args.work, args.layers, args.hidden, args.intermediate, args.dtype, args.shard_size).result()
        glasses = builder.submit(build_glasses, args.work, args.layers, args.intermediate).result()
    shards = sorted(base.glob("*.safetensors"))
    total, largest = sum(s.stat().st_size for s in shards) / MB, max(s.stat().st_size for s in shards) / MB
    dest = args.work / "out"
    export = [*SGM_EXPORT, "export", str(base), "--glasses", str(glasses), "--out", str(dest)]
    cold_cache, warm_cache = args.work / "digests-cold", args.work / "digests-warm"
    first, again = {"SGM_EXPORT_CACHE": str(cold_cache)}, {"SGM_EXPORT_CACHE": str(warm_cache)}
    forget = lambda: shutil.rmtree(cold_cache, ignore_errors=True)  # noqa: E731
    cases = {
        "cp -r": Case(["cp", "-r", str(base), str(dest)]),
        "reference: SHA-256 of the shards": Case([sys.executable, "-c", HASH_SHARDS, *map(str, shards)]),
        "export --format module, first time (hashes the shards)": Case([*export, "--format", "module"], first, forget),
        "export --format module, again (digests remembered)": Case([*export, "--format", "module"], again),
        "export --format folded": Case([*export, "--format", "folded"], again),
        "start-up: sgm-export --help": Case([*SGM_EXPORT, "--help"]),
        "start-up: import the module export path": Case(
            [sys.executable, "-c", "import sgm_export.cli, sgm_export.export, sgm_export.glasses"]
        ),
    }
    load_before = os.getloadavg()
    times, peaks = measure(cases, args.repeats, dest)
    # Hard links change the base files' change time, after which remembered digests are not
    # trusted: so --link runs after the others, against cp -r again.
    linked = {"cp -r (again)": cases["cp -r"], "export --format module --link": Case([*export, "--format", "module", "--link"], again)}
    link_times, link_peaks = measure(linked, args.repeats, dest)
    times |= link_times
    peaks |= link_peaks

    median = {name: statistics.median(values) for name, values in times.items()}
    startup = median["start-up: import the module export path"]
    print(f"\n`{shlex.join([sys.executable, *sys.argv])}`\n")
    print(
        f"Model: Llama, {args.layers} layers, hidden {args.hidden}, d_ff {args.intermediate}, {args.dtype}: "
        f"{len(shards)} shards, {total:,.0f} MB, largest {largest:,.0f} MB. "
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} before and {os.getloadavg()[0]:.2f} after; "
        f"medians of {args.repeats} alternating runs after one warm-up run each.\n"
    )
    print("| command | median s | runs s | vs cp -r | minus start-up s | minus start-up vs cp -r | peak RSS MB |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name in times:
        copy = median["cp -r (again)" if name in linked else "cp -r"]
        runs = ", ".join(f"{value:.2f}" for value in times[name])
        if name.startswith("export"):  # what the export costs beyond its fixed start-up
            rest = median[name] - startup
            extra = f"{rest:.2f} | {rest / copy:.2f}x"
        else:
            extra = "| "
        print(f"| {name} | {median[name]:.2f} | {runs} | {median[name] / copy:.2f}x | {extra} | {max(peaks[name]):,.0f} |")
    folded_peak = max(peaks["export --format folded"])
    limit = largest + 500
    verdict = "within" if folded_peak <= limit else "OVER"
    print(f"\nFolded export: peak RSS {folded_peak:,.0f} MB, {verdict} the target of largest shard + 500 MB = {limit:,.0f} MB.")
    for name in ("export --format module, first time (hashes the shards)", "export --format module, again (digests remembered)"):
        print(f"{name}: {median[name] / median['cp -r']:.2f}x the time of cp -r (target: at most 1.2x).")


if __name__ == "__main__":
    main()
