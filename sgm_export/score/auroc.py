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

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

SIGN_CLEARED = 0x7FFFFFFF
SUB_ROWS = 512  # neurons sorted at a time by one thread: their work arrays stay in the caches
FINITE_KEYS = (-0x7F800000, 0x7F7FFFFF)  # the sort keys of -FLT_MAX and +FLT_MAX: infinities and NaN lie outside
NON_FINITE = "activations contain NaN or infinity; score in float32 (--dtype float32)"


def auroc(values: torch.Tensor, labels: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """AUROC per column of `values` ([examples, neurons]) for binary `labels` ([examples]),
    `chunk_size` neurons at a time (default: `block_neurons` of the device)."""
    if values.ndim != 2 or labels.shape != (values.shape[0],):
        raise ValueError(f"expected values [examples, neurons] and labels [examples], got {tuple(values.shape)} and {tuple(labels.shape)}")
    rows = values.T  # [neurons, examples]
    chunk_size = chunk_size or block_neurons(rows.device)
    return torch.cat([auroc_of_rows(rows[start : start + chunk_size], labels) for start in range(0, rows.shape[0], chunk_size)])


def block_neurons(device: torch.device) -> int:
    """How many neurons to hand `auroc_of_rows` at once. On a GPU a block is sorted in one go,
    so it is kept to a few thousand neurons; on the CPU the rows are a view of the store and the
    work is done in small pieces anyway, so one block of every neuron costs no memory and saves
    setting up the threads and their buffers again for each block."""
    return 1 << 30 if device.type == "cpu" else 4096


def auroc_of_rows(rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AUROC of each row of `rows` ([neurons, examples], on any device), as float32 on the CPU.

    On a GPU one call sorts the whole block at once: pass `block_neurons` at a time (`auroc` and
    the scoring loop do), so that the sort keys fit in memory beside the activations.
    """
    positive = labels.bool().cpu()
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs at least one positive and one negative example")
    if rows.device.type == "cpu":  # non-finite values show in the sort keys (see `_SortBuffers`)
        rank_sums = torch.from_numpy(_rank_sums_numpy(rows.to(torch.float32).numpy(), positive.numpy()))
    else:
        if not torch.isfinite(rows).all():
            raise ValueError(NON_FINITE)
        rank_sums = _rank_sums_torch(rows, positive).cpu()
    return ((rank_sums - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).to(torch.float32)


def _rank_sums_numpy(block: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Positives' rank sums per row of `block` ([neurons, examples]), on the CPU: the rows are
    shared among `torch.get_num_threads()` threads (numpy's sort and element-wise kernels let go
    of the GIL), each working through its rows a few hundred at a time in buffers of its own."""
    n = block.shape[1]
    ranks = np.arange(1, n + 1, dtype=np.int32 if n * (n + 1) // 2 < 2**31 else np.int64)
    labels = positive.astype(np.int32)
    sums = np.empty(len(block), dtype=np.float64)
    parts = np.array_split(np.arange(len(block)), max(1, min(torch.get_num_threads(), len(block) // SUB_ROWS)))

    def work(rows: np.ndarray) -> None:
        buffers = _SortBuffers(min(SUB_ROWS, len(rows)), n)
        for start in range(rows[0], rows[-1] + 1, SUB_ROWS) if len(rows) else ():
            stop = min(start + SUB_ROWS, rows[-1] + 1)
            sums[start:stop] = buffers.rank_sums(block[start:stop], labels, ranks)

    if len(parts) == 1:
        work(parts[0])
    else:
        with ThreadPoolExecutor(len(parts)) as pool:
            list(pool.map(work, parts))
    unsure = np.flatnonzero(np.isnan(sums))
    if unsure.size:
        sums[unsure] = _exact_rank_sums(block[unsure], positive)
    return sums


class _SortBuffers:
    """Work arrays for the fast path, allocated once and reused: fresh arrays of this size would
    cost more in page faults than the arithmetic done in them."""

    def __init__(self, rows: int, n: int) -> None:
        self.keys = np.empty((rows, n), dtype=np.int32)
        self.scratch = np.empty((rows, n), dtype=np.int32)
        self.near_tie = np.empty((rows, max(0, n - 1)), dtype=bool)

    def rank_sums(self, values: np.ndarray, labels: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """The positives' rank sums of these rows, NaN where a near-tie needs the exact path."""
        rows = len(values)
        keys, scratch, near_tie = self.keys[:rows], self.scratch[:rows], self.near_tie[:rows]
        np.add(values, np.float32(0.0), out=keys.view(np.float32))  # -0.0 becomes +0.0: they compare equal
        np.right_shift(keys, 31, out=scratch)
        np.bitwise_and(scratch, np.int32(SIGN_CLEARED), out=scratch)
        np.bitwise_xor(keys, scratch, out=keys)  # negative floats: magnitude bits flipped
        np.bitwise_and(keys, np.int32(~1), out=keys)
        np.bitwise_or(keys, labels, out=keys)
        keys.sort(axis=1)
        if keys[:, 0].min() < FINITE_KEYS[0] or keys[:, -1].max() > FINITE_KEYS[1]:
            raise ValueError(NON_FINITE)  # checked on the sorted keys: no pass over the values of its own
        np.bitwise_and(keys, 1, out=scratch)
        # Integer sums, exact; einsum's own loop rather than a BLAS call, whose worker threads
        # would spin against the threads sorting beside it.
        sums = np.einsum("ij,j->i", scratch, ranks).astype(np.float64)
        np.subtract(keys[:, 1:], keys[:, :-1], out=scratch[:, 1:])
        np.equal(scratch[:, 1:], 1, out=near_tie)
        sums[near_tie.any(axis=1)] = np.nan
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
