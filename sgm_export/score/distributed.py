"""Data-parallel scoring on several processes, GPUs or nodes, started by `torchrun`.

    torchrun --nproc-per-node 8 -m sgm_export score MODEL --data ... --out DIR

Every process (rank) loads the model and reads the same examples. The batches are cut once, in
length order, exactly as a single process would cut them, and rank r runs every world-th batch:
each row of pooled activations is computed in the same batch as in a single-process run, so the
scores are the same. Then the rows are exchanged so that each rank holds every example's values
for its own slice of the neurons (one `gather` per rank, the data's only trip over the network),
each rank computes AUROC and the class means of its slice, and the slices are gathered to every
rank. Rank 0 writes the output; the others write nothing.

The backend is NCCL when the ranks score on GPUs and gloo on CPUs. With `--device-map`, each rank
spreads its model over its own GPUs (`rank_gpus`): 8 GPUs and 4 ranks per node give 2 per rank.
"""

import os
from dataclasses import dataclass

import torch

from sgm_export.errors import SgmError


@dataclass(frozen=True)
class Share:
    """Which part of the work this process does: rank `rank` of `world`."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def is_main(self) -> bool:
        """The rank that writes the output and prints."""
        return self.rank == 0


WHOLE = Share()  # a single process does all the work


def launched_share() -> Share:
    """The share torchrun gave this process (its environment variables), or the whole work."""
    try:
        return Share(*(int(os.environ.get(name, default)) for name, default in _ENVIRONMENT))
    except ValueError:
        raise SgmError(
            "RANK, WORLD_SIZE, LOCAL_RANK or LOCAL_WORLD_SIZE is not a number", "start several processes with torchrun"
        ) from None


_ENVIRONMENT = (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1"))


def start(share: Share, device: torch.device) -> None:
    """Join the process group of a torchrun launch (nothing for a single process)."""
    if share.world == 1 or torch.distributed.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend)


def finish(share: Share) -> None:
    """Leave the process group, once every rank is done."""
    if share.world > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def rank_placement(device: str, device_map: str | None, share: Share) -> tuple[str, list[int] | None]:
    """The device this rank scores on, and the GPUs its model may spread over with a device map.

    A single process keeps the `--device` it was given. On a node with GPUs, each of several
    ranks takes its own: GPU `local_rank`, or its block of GPUs with `--device-map`.
    """
    if share.world == 1 or device == "cpu" or not torch.cuda.is_available():
        return device, None
    gpus = rank_gpus(share, torch.cuda.device_count()) if device_map is not None else [share.local_rank]
    return f"cuda:{gpus[0]}", gpus if device_map is not None else None


def rank_gpus(share: Share, n_gpus: int) -> list[int]:
    """The GPUs of this node that this rank uses: its consecutive block of the node's GPUs."""
    if n_gpus < share.local_world:
        raise SgmError(
            f"{share.local_world} processes per node but only {n_gpus} GPUs",
            "start at most one process per GPU (torchrun --nproc-per-node)",
        )
    per_rank = n_gpus // share.local_world
    return list(range(share.local_rank * per_rank, (share.local_rank + 1) * per_rank))


def neuron_bounds(n_neurons: int, world: int) -> list[tuple[int, int]]:
    """[start, stop) of each rank's slice of the neurons, as equal as can be."""
    edges = [n_neurons * rank // world for rank in range(world + 1)]
    return list(zip(edges[:-1], edges[1:]))


def exchange_rows(indices: list[int], rows: torch.Tensor, n_examples: int, share: Share, device: torch.device) -> torch.Tensor:
    """Every example's values of this rank's neuron slice: [n_examples, slice width], on the CPU.

    `rows` ([len(indices), neurons]) are the pooled activations this rank computed, of the
    examples `indices`. Ranks hold different numbers of rows, so each sends its rows padded to the
    most any rank holds, with -1 as the index of a padding row.
    """
    counts = _all_gather(torch.tensor([len(indices)]), device)
    most = int(max(counts))
    padded_indices = torch.full((most,), -1, dtype=torch.int64)
    padded_indices[: len(indices)] = torch.tensor(indices, dtype=torch.int64)
    all_indices = _all_gather(padded_indices, device)
    mine = None
    for destination, (start, stop) in enumerate(neuron_bounds(rows.shape[1], share.world)):
        piece = torch.zeros((most, stop - start), dtype=torch.float32)
        piece[: len(indices)] = rows[:, start:stop]
        received = _gather(piece, destination, share, device)
        if destination == share.rank:
            mine = torch.empty((n_examples, stop - start), dtype=torch.float32)
            for source_indices, source_rows in zip(all_indices, received):
                valid = source_indices >= 0
                mine[source_indices[valid]] = source_rows[valid]
    return mine


def gather_slices(values: torch.Tensor, share: Share, device: torch.device) -> torch.Tensor:
    """The per-neuron `values` of every rank's slice, joined in neuron order, on every rank."""
    widths = [int(width) for width in _all_gather(torch.tensor([len(values)]), device)]
    padded = torch.zeros(max(widths), dtype=values.dtype)
    padded[: len(values)] = values
    return torch.cat([piece[:width] for piece, width in zip(_all_gather(padded, device), widths)])


def _all_gather(tensor: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    """Each rank's `tensor` (the same shape on every rank), on the CPU."""
    local = tensor.to(device)
    pieces = [torch.empty_like(local) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(pieces, local)
    return [piece.cpu() for piece in pieces]


def _gather(tensor: torch.Tensor, destination: int, share: Share, device: torch.device) -> list[torch.Tensor] | None:
    """Each rank's `tensor` at rank `destination` (None elsewhere), on the CPU."""
    local = tensor.to(device)
    pieces = [torch.empty_like(local) for _ in range(share.world)] if share.rank == destination else None
    torch.distributed.gather(local, pieces, dst=destination)
    return None if pieces is None else [piece.cpu() for piece in pieces]
