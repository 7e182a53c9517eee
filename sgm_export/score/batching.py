"""Which examples go into each forward pass of `score`.

Examples arrive in groups already sorted by length (longest first, so that a batch that does not
fit shows up at once, and little compute goes to padding). A `BatchPlan` cuts them into batches of
`size` once, up front: the cut is the same whatever happens later, which is what makes a resumed
run and a data-parallel run (each rank takes every `world`-th batch) compute exactly the rows a
single uninterrupted run would. When a batch runs out of memory, it is retried in halves, and
later batches are split to the smaller size too.

`auto_batch_size` picks the starting size: on a GPU the largest power of two up to 256 (the plan
then halves it until a batch fits); on the CPU, where an allocation that does not fit kills the
process instead of raising, the largest one that an estimate of the activations says fits in a
quarter of the memory available, capped at 64 so that one batch never holds much of it.
"""

from collections import deque
from collections.abc import Iterator

import torch

GPU_START = 256
CPU_LIMIT = 64
CPU_MEMORY_SHARE = 0.25


class BatchPlan:
    """Length-sorted groups of example indices, cut into batches; iterate to get them in order."""

    def __init__(self, groups: list[list[int]], size: int, rank: int = 0, world: int = 1) -> None:
        cut = [group[start : start + size] for group in groups for start in range(0, len(group), size)]
        self.size = size
        self._pending = deque(cut[rank::world])
        self.n_examples = sum(len(batch) for batch in self._pending)

    def __iter__(self) -> Iterator[list[int]]:
        while self._pending:
            batch = self._pending.popleft()
            if len(batch) > self.size:
                self._pending.appendleft(batch[self.size :])
                batch = batch[: self.size]
            yield batch

    def retry_smaller(self, batch: list[int]) -> bool:
        """Queue `batch` again at half the size; False when it was a single example already."""
        if len(batch) == 1:
            return False
        self.size = len(batch) // 2
        self._pending.appendleft(batch)
        return True


def auto_batch_size(device: torch.device, n_examples: int, tokens: int, bytes_per_token: int) -> int:
    """The starting batch size for `--batch-size auto` (see the module docstring).

    `tokens` is the longest example's length; `bytes_per_token` estimates the activations one
    token needs during a forward pass (`activation_bytes_per_token`).
    """
    if device.type == "cuda":
        limit = GPU_START
    else:
        fits = int(available_host_memory() * CPU_MEMORY_SHARE) // max(1, tokens * bytes_per_token)
        limit = max(1, min(CPU_LIMIT, fits))
    return _power_of_two_at_most(min(limit, max(1, n_examples)))


def activation_bytes_per_token(config, dtype: torch.dtype) -> int:
    """A generous estimate of the activations of one token in one decoder layer: the residual
    stream and attention projections (about eight hidden-sized vectors), the MLP's gate, up and
    neuron vectors, and a float32 copy of the neuron vector for pooling."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(getattr(text, "hidden_size", 0) or getattr(text, "n_embd", 0))
    ffn = int(getattr(text, "intermediate_size", 0) or getattr(text, "ffn_dim", 0) or getattr(text, "n_inner", 0) or 4 * hidden)
    item = torch.finfo(dtype).bits // 8
    return 8 * hidden * item + 3 * ffn * item + 4 * ffn


def available_host_memory() -> int:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), or 4 GiB when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def is_out_of_memory(error: BaseException) -> bool:
    """A failed allocation that a smaller batch can avoid (CUDA, or a CPU allocation that raised)."""
    return isinstance(error, torch.OutOfMemoryError) or (isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


def _power_of_two_at_most(value: int) -> int:
    return 1 << (max(1, value).bit_length() - 1)
