"""Exact AUROC of every neuron as a toxic-vs-non-toxic classifier, all neurons at once.

AUROC is the Mann-Whitney statistic: with average ranks over ties (as scikit-learn's
`roc_auc_score` uses), AUROC = (sum of the positives' ranks - P(P+1)/2) / (P * N).

The fast path needs one sort per neuron and no index bookkeeping. Each float is mapped to an
int32 with the same order, its lowest bit is replaced by the example's label, and the keys are
sorted: the labels then read off in rank order, and the positives' rank sum is one matrix-vector
product. Replacing the lowest bit can only misorder (or hide a tie between) a positive and a
negative whose values differ in that bit alone, and such a pair shows up as two adjacent keys
that differ by exactly one; those few neurons are recomputed exactly with average ranks.

On the CPU the sort runs in numpy, whose SIMD sort is several times faster than torch's; on a
GPU everything stays on the device. Neurons are processed in chunks to bound memory.
"""

import torch

SIGN_CLEARED = 0x7FFFFFFF


def auroc(values: torch.Tensor, labels: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """AUROC per column of `values` ([examples, neurons]) for binary `labels` ([examples])."""
    if values.ndim != 2 or labels.shape != (values.shape[0],):
        raise ValueError(f"expected values [examples, neurons] and labels [examples], got {tuple(values.shape)} and {tuple(labels.shape)}")
    positive = labels.to(values.device).bool()
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs at least one positive and one negative example")
    if not torch.isfinite(values).all():
        raise ValueError("activations contain NaN or infinity; score in float32 (--dtype float32)")
    ranks = torch.arange(1, values.shape[0] + 1, dtype=torch.float64, device=values.device)
    rank_sums = torch.empty(values.shape[1], dtype=torch.float64, device=values.device)
    for start in range(0, values.shape[1], chunk_size):
        block = values[:, start : start + chunk_size].to(torch.float32).T.contiguous()
        rank_sums[start : start + block.shape[0]] = _positive_rank_sums(block, positive, ranks)
    return ((rank_sums - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).to(torch.float32)


def _positive_rank_sums(block: torch.Tensor, positive: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """Sum of the positives' average ranks (1-based) per row of `block` ([neurons, examples])."""
    keys = _order_preserving_int32(block)
    keys = (keys & ~1) | positive.to(torch.int32)
    keys = _sort_rows(keys)
    sums = (keys & 1).to(torch.float64) @ ranks
    unsure = ((keys[:, 1:] - keys[:, :-1]) == 1).any(dim=1)
    if bool(unsure.any()):
        sums[unsure] = _exact_rank_sums(block[unsure], positive)
    return sums


def _order_preserving_int32(block: torch.Tensor) -> torch.Tensor:
    """int32 keys that sort like the floats (negative floats have their magnitude bits flipped)."""
    bits = (block + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0, which compare equal
    return bits ^ ((bits >> 31) & SIGN_CLEARED)


def _sort_rows(keys: torch.Tensor) -> torch.Tensor:
    if keys.device.type == "cpu":
        keys.numpy().sort(axis=1)  # in place, on the tensor's own memory
        return keys
    return torch.sort(keys, dim=1).values


def _exact_rank_sums(block: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Average ranks with ties, the slow and plain way: sort, find runs of equal values."""
    sorted_values, order = torch.sort(block, dim=1)
    n = block.shape[1]
    position = torch.arange(n, device=block.device).expand_as(sorted_values)
    starts_run = torch.ones_like(sorted_values, dtype=torch.bool)
    starts_run[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    ends_run = torch.ones_like(starts_run)
    ends_run[:, :-1] = starts_run[:, 1:]
    run_start = torch.where(starts_run, position, 0).cummax(dim=1).values
    run_end = torch.where(ends_run, position, n - 1).flip(1).cummin(dim=1).values.flip(1)
    average_rank = (run_start + run_end).to(torch.float64) / 2 + 1
    return (average_rank * positive[order]).sum(dim=1)
