"""Scoring speed with and without images, and the share of each row's tokens that is pooled.

Runs on the LLaVA whose language model is the real Gemma-3-270M (`demo-llava`, sgm_export/models/demo_llava.py: LLaVA-1.5
geometry, 576 image tokens per image, tiny random vision tower). The same rows are scored twice in
one run, once as image+text (builtin:rtp-toxic-images, builtin:neutral-images) and once with the
images dropped (prompt and text unchanged), so the ratio of the two rates is the cost of the
image tokens. The pooled share shows that image tokens, the prompt and the template are never
pooled: only the answer's tokens are.

    python benchmarks/multimodal_scoring.py --rows 16 --batch-size 4

prints a JSON report (add --out FILE to keep it).
"""

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SGM_EXPORT_NO_PROGRESS", "1")

import torch  # noqa: E402

from sgm_export.data.sources import read_sources  # noqa: E402
from sgm_export.models.demo_llava import IMAGE_TOKEN, demo_llava_dir  # noqa: E402
from sgm_export.models.load import load_model  # noqa: E402
from sgm_export.options import ScoreOptions  # noqa: E402
from sgm_export.score.batching import BatchPlan  # noqa: E402
from sgm_export.score.runner import batch_source, pooled_activations  # noqa: E402


def timed_rate(loaded, examples, options) -> float:
    """Examples per second of the scoring forward passes (best of two runs)."""
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        pooled_activations(loaded, examples, options)
        best = min(best, time.perf_counter() - start)
    return len(examples) / best


def pooled_shares(loaded, examples, options) -> dict:
    """Per row: tokens in the sequence, image tokens, pooled tokens; and that no image token is pooled."""
    image_id = loaded.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    rows = []
    source = batch_source(loaded, examples, options)
    for positions in BatchPlan(source.groups, options.batch_size):
        batch = source.make_batch(positions)
        real = batch.attention_mask.bool()
        for row in range(len(batch.indices)):
            ids = batch.input_ids[row][real[row]]
            pooled = batch.pool_mask[row][real[row]]
            rows.append((len(ids), int((ids == image_id).sum()), int(pooled.sum()), int((ids[pooled] == image_id).sum())))
    shares = [pooled / total for total, _, pooled, _ in rows]
    return {
        "rows": len(rows),
        "mean_tokens": statistics.mean(total for total, _, _, _ in rows),
        "mean_image_tokens": statistics.mean(images for _, images, _, _ in rows),
        "mean_pooled_tokens": statistics.mean(pooled for _, _, pooled, _ in rows),
        "pooled_share_mean": statistics.mean(shares),
        "pooled_share_min": min(shares),
        "pooled_share_max": max(shares),
        "image_tokens_pooled": sum(leaked for _, _, _, leaked in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16, help="rows per class (default: 16)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    loaded = load_model(str(demo_llava_dir()), device="cpu", dtype="float32")
    options = ScoreOptions(batch_size=args.batch_size, max_length=args.max_length)
    with_images = read_sources(["builtin:rtp-toxic-images", "builtin:neutral-images"], args.rows)
    without_images = [dataclasses.replace(example, image=None) for example in with_images]
    pooled_activations(loaded, with_images[: args.batch_size], options)  # warm-up

    rate_images = timed_rate(loaded, with_images, options)
    rate_text = timed_rate(loaded, without_images, options)
    report = {
        "model": "LLaVA-1.5 geometry (576 image tokens) + real Gemma-3-270M decoder, float32, CPU",
        "threads": torch.get_num_threads(),
        "rows": len(with_images),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "examples_per_second": {"image_and_text": round(rate_images, 2), "text_only": round(rate_text, 2)},
        "slowdown_from_images": round(rate_text / rate_images, 2),
        "pooled_tokens": {
            "image_and_text": pooled_shares(loaded, with_images, options),
            "text_only": pooled_shares(loaded, without_images, options),
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
