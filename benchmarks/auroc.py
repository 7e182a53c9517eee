"""AUROC for all neurons at once vs scikit-learn per neuron (the way AurA computes it), and vs
the floor of one `np.sort` over the whole (neurons x examples) matrix.

    python benchmarks/auroc.py                      # 36,864 neurons (Gemma-3-270M) and 350,000 (7B)
    python benchmarks/auroc.py --neurons 36864 --examples 2000 --sample 300

scikit-learn is timed on a sample of neurons and scaled to all of them; our results are checked
against it on that sample (max |difference| must stay under 1e-6). Everything is measured in this
one run, so the ratios compare like with like. The activations are laid out as scoring stores
them (each neuron's values side by side), and `auroc` uses `torch.get_num_threads()` threads
(`--threads`); the floor is one `np.sort` call, which uses one.
"""

import argparse
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from sgm_export.score.auroc import auroc


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(neurons: int, examples: int, sample: int, device: str) -> dict:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((examples, neurons), dtype=np.float32)
    values[:, : neurons // 100] = np.round(values[:, : neurons // 100])  # 1% of neurons with many ties
    labels = rng.random(examples) < 0.5
    labels_t = torch.from_numpy(labels)

    sample_idx = rng.choice(neurons, size=min(sample, neurons), replace=False)
    sklearn_sample = seconds(lambda: [roc_auc_score(labels, values[:, j]) for j in sample_idx])
    reference = np.array([roc_auc_score(labels, values[:, j]) for j in sample_idx])
    sklearn_total = sklearn_sample / len(sample_idx) * neurons

    rows = np.ascontiguousarray(values.T)
    sort_floor = min(seconds(lambda: np.sort(rows, axis=1)) for _ in range(2))

    # The layout scoring stores pooled activations in (sgm_export/score/store.py): [examples,
    # neurons] in shape, neuron-major in memory, so that each neuron's values lie side by side.
    on_device = torch.from_numpy(rows).to(device).T
    auroc(on_device[:, :1000], labels_t)  # warm-up (CUDA context, allocator)
    ours, result = float("inf"), None
    for _ in range(2):
        start = time.perf_counter()
        result = auroc(on_device, labels_t)
        if device == "cuda":
            torch.cuda.synchronize()
        ours = min(ours, time.perf_counter() - start)
    max_diff = float(np.abs(result.cpu().numpy()[sample_idx] - reference).max())
    return {
        "neurons": neurons,
        "examples": examples,
        "device": device,
        "sklearn_s (scaled)": round(sklearn_total, 2),
        "np.sort floor_s": round(sort_floor, 3),
        "ours_s": round(ours, 3),
        "speedup vs sklearn": round(sklearn_total / ours, 1),
        "ours / sort floor": round(ours / sort_floor, 2),
        "max |diff| vs sklearn": f"{max_diff:.1e}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neurons", type=int, nargs="+", default=[36864, 350000])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--sample", type=int, default=300, help="neurons timed with scikit-learn")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for our AUROC")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench(n, args.examples, args.sample, args.device) for n in args.neurons]
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
