"""Exact AUROC of every neuron as a toxic-vs-non-toxic classifier, all neurons at once.

AUROC is the Mann-Whitney statistic: with average ranks over ties (as scikit-learn's
`roc_auc_score` uses), AUROC = (sum of the positives' ranks - P(P+1)/2) / (P * N).

The fast path needs one sort per neuron and no index bookkeeping. Each float is mapped to an
int32 with the same order, its lowest bit is replaced by the example's label, and the keys are
sorted: the labels then read off in rank order, and the positives' rank sum is one matrix-vector
product. Replacing the lowest bit can only misorder (or hide a tie between) a positive and a
negative whose values differ in that bit alone, and such a pair shows up as two adjacent keys
that differ by exactly one; those few neurons are recomputed exactly with average ranks.

The same steps run in numpy on the CPU (its SIMD sort and integer kernels are several times
faster than torch's there) and in torch on a GPU. Neurons are processed in blocks of a few
thousand, so the memory of the sort stays small; when the pooled activations are stored
neuron-major (`values` is the transpose of a contiguous tensor) a block is read where it lies.
"""

import numpy as np
import torch

SIGN_CLEARED = 0x7FFFFFFF


def auroc(values: torch.Tensor, labels: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """AUROC per column of `values` ([examples, neurons]) for binary `labels` ([examples])."""
    if values.ndim != 2 or labels.shape != (values.shape[0],):
        raise ValueError(f"expected values [examples, neurons] and labels [examples], got {tuple(values.shape)} and {tuple(labels.shape)}")
    rows = values.T  # [neurons, examples]
    return torch.cat([auroc_of_rows(rows[start : start + chunk_size], labels) for start in range(0, rows.shape[0], chunk_size)])


def auroc_of_rows(rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AUROC of each row of `rows` ([neurons, examples], on any device), as float32 on the CPU.

    One call sorts the whole block at once: pass a few thousand neurons at a time (`auroc` and
    the scoring loop do), so that the sort keys fit in memory beside the activations.
    """
    positive = labels.bool().cpu()
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs at least one positive and one negative example")
    if not torch.isfinite(rows).all():
        raise ValueError("activations contain NaN or infinity; score in float32 (--dtype float32)")
    if rows.device.type == "cpu":
        rank_sums = torch.from_numpy(_rank_sums_numpy(rows.to(torch.float32).numpy(), positive.numpy()))
    else:
        rank_sums = _rank_sums_torch(rows, positive).cpu()
    return ((rank_sums - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).to(torch.float32)


def _rank_sums_numpy(block: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Positives' rank sums per row of `block` ([neurons, examples]), on the CPU."""
    ranks = np.arange(1, block.shape[1] + 1, dtype=np.float64)
    bits = np.add(block, np.float32(0.0), order="C").view(np.int32)  # -0.0 becomes +0.0 (they compare equal), in a new array
    keys = bits ^ ((bits >> 31) & np.int32(SIGN_CLEARED))  # negative floats: magnitude bits flipped
    keys &= np.int32(~1)
    keys |= positive.astype(np.int32)
    keys.sort(axis=1)
    sums = (keys & 1).astype(np.float64) @ ranks
    unsure = np.flatnonzero((np.diff(keys, axis=1) == 1).any(axis=1))
    if unsure.size:
        sums[unsure] = _exact_rank_sums(block[unsure], positive)
    return sums


def _rank_sums_torch(block: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """The same steps as `_rank_sums_numpy`, in torch, for rows that live on a GPU."""
    ranks = torch.arange(1, block.shape[1] + 1, dtype=torch.float64, device=block.device)
    labels = positive.to(block.device, torch.int32)
    bits = (block.to(torch.float32) + 0.0).contiguous().view(torch.int32)
    keys = bits ^ ((bits >> 31) & SIGN_CLEARED)
    keys = torch.sort((keys & ~1) | labels, dim=1).values
    sums = (keys & 1).to(torch.float64) @ ranks
    unsure = torch.nonzero((keys[:, 1:] - keys[:, :-1] == 1).any(dim=1)).flatten()
    if unsure.numel():
        exact = _exact_rank_sums(block[unsure].to(torch.float32).cpu().numpy(), positive.numpy())
        sums[unsure] = torch.from_numpy(exact).to(block.device)
    return sums


def _exact_rank_sums(block: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Positives' average-rank sums for rows with near-ties: sort (value, label) as int64 keys,
    then give every run of equal values the mean of its positions."""
    bits = (block + np.float32(0.0)).view(np.int32)
    values = (bits ^ ((bits >> 31) & np.int32(SIGN_CLEARED))).astype(np.int64)
    keys = values * 2 + positive.astype(np.int64)
    keys.sort(axis=1)
    sorted_values, sorted_labels = keys >> 1, keys & 1
    n = keys.shape[1]
    position = np.arange(n)
    starts_run = np.ones(keys.shape, dtype=bool)
    starts_run[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    ends_run = np.ones_like(starts_run)
    ends_run[:, :-1] = starts_run[:, 1:]
    run_start = np.maximum.accumulate(np.where(starts_run, position, 0), axis=1)
    run_end = np.minimum.accumulate(np.where(ends_run, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
    return (((run_start + run_end) / 2 + 1) * sorted_labels).sum(axis=1)
