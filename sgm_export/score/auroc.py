"""Exact AUROC of every neuron as a toxic-vs-non-toxic classifier, all neurons at once.

AUROC is the Mann-Whitney statistic: with average ranks over ties (as scikit-learn's
`roc_auc_score` uses), AUROC = (sum of the positives' ranks - P(P+1)/2) / (P * N). One sort per
neuron column gives the ranks; runs of equal values get their average rank from a cumulative max
(run starts) and a reversed cumulative min (run ends). Columns are processed in chunks so that
memory stays bounded, on whatever device the values live on.
"""

import torch


def auroc(values: torch.Tensor, labels: torch.Tensor, chunk_size: int = 8192) -> torch.Tensor:
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
    out = torch.empty(values.shape[1], dtype=torch.float64, device=values.device)
    for start in range(0, values.shape[1], chunk_size):
        block = values[:, start : start + chunk_size]
        out[start : start + block.shape[1]] = _positive_rank_sums(block, positive)
    return ((out - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).to(torch.float32)


def _positive_rank_sums(block: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Sum of the positives' average ranks (1-based), per column."""
    sorted_values, order = torch.sort(block, dim=0)
    n = block.shape[0]
    position = torch.arange(n, device=block.device).unsqueeze(1).expand_as(sorted_values)
    starts_run = torch.ones_like(sorted_values, dtype=torch.bool)
    starts_run[1:] = sorted_values[1:] != sorted_values[:-1]
    ends_run = torch.ones_like(starts_run)
    ends_run[:-1] = starts_run[1:]
    run_start = torch.where(starts_run, position, 0).cummax(dim=0).values
    run_end = torch.where(ends_run, position, n - 1).flip(0).cummin(dim=0).values.flip(0)
    average_rank = (run_start + run_end).to(torch.float64) / 2 + 1
    return (average_rank * positive[order]).sum(dim=0)
