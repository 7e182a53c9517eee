"""Pooled activations kept as scoring goes, so that an interrupted `score` can resume.

Scoring produces one row per example: every neuron's pooled activation. `PooledStore` collects
the rows in whatever order the batches finish. Without a folder it only holds them in memory
(what `run` uses). With one, it also saves them in chunks as it goes, so that `score --resume`
after a crash or a kill computes only the rows that are missing:

    .sgm-resume-{OUT name}-{fingerprint}/      beside OUT
        store.json                 format, fingerprint, number of examples
        chunk-000000.safetensors   indices (int64 [rows]), pooled (float32 [rows, neurons])
        ...

The fingerprint covers everything a row depends on: the model's files, the examples (text,
prompt, image), the pooling, the maximum length, the dtype and device, and this tool's version.
Chunks are written under a temporary name and renamed, so a chunk is whole or absent. The batch
size is not in the fingerprint: a row depends on it only through float rounding (padding changes
the shapes of the matrix products), so a run may resume with another --batch-size; with the same
one, the resumed scores equal those of an uninterrupted run exactly (batches are cut in the same
places, see `score.runner.fill_store`).

A chunk is written once `$SGM_EXPORT_CHUNK_MB` (16 by default) MiB of rows are unsaved, always at
the end of a batch. On a GPU, rows stay in GPU memory up to a budget (`--store-budget-mb`) and
spill to host memory beyond it; saving a chunk copies its rows to the host.
"""

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sgm_export import __version__
from sgm_export.data.examples import Example
from sgm_export.errors import CheckpointError, SgmError
from sgm_export.models.load import LoadedModel
from sgm_export.options import ScoreOptions
from sgm_export.outputs import exclusively, remove_abandoned, siblings_matching

STORE_FORMAT = 1
RESUME_PREFIX = ".sgm-resume-"
STATE_FILE = "store.json"
CHUNK_MB_VARIABLE = "SGM_EXPORT_CHUNK_MB"
DEFAULT_CHUNK_MB = 16  # rows are saved once this many MiB are unsaved: about a batch for a 7B model
CHUNK_NAME = "chunk-{:06d}.safetensors"
_CHUNK = re.compile(r"chunk-(\d+)\.safetensors")
_FINGERPRINT_CHARS = 16


class PooledStore:
    """One row of pooled activations per example, added batch by batch, optionally saved.

    Rows stay on `device` (where the forward passes run) up to `device_budget_bytes`, in the
    order they arrive: scoring on a GPU then never waits for a copy to the host, and AUROC finds
    them where it runs. Rows beyond the budget spill to host memory, neuron-major at their
    example's column. Without a budget (the CPU) every row is in host memory, in the layout AUROC
    sorts without a copy. Either way `neuron_blocks` hands AUROC every example's values of a block
    of neurons at a time, so the scores are exact whatever the budget.
    """

    def __init__(
        self,
        n_examples: int,
        directory: Path | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_MB << 20,
        device: torch.device | None = None,
        device_budget_bytes: int = 0,
    ) -> None:
        self.n_examples = n_examples
        self.directory = directory
        self.chunk_bytes = chunk_bytes
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.device_budget_bytes = device_budget_bytes
        self.width: int | None = None
        self._host: torch.Tensor | None = None  # [examples, neurons], neuron-major: the spilled rows
        self._device: torch.Tensor | None = None  # [neurons, capacity]: the first rows to arrive
        self._slot = torch.full((n_examples,), -1, dtype=torch.int64)  # column in _device, -1: on the host
        self._n_on_device = 0
        self._all_finite: torch.Tensor | None = None  # on the device: checked without waiting for it
        self._done = torch.zeros(n_examples, dtype=torch.bool)
        self._unsaved: list[int] = []
        self._next_chunk = 0

    @property
    def n_done(self) -> int:
        return int(self._done.sum())

    @property
    def n_on_device(self) -> int:
        """How many rows are held on the device (the rest are in host memory)."""
        return self._n_on_device

    def done_indices(self) -> list[int]:
        """Indices of the examples that have a row, in increasing order."""
        return self._done.nonzero().flatten().tolist()

    def missing(self) -> list[int]:
        """Indices of the examples that have no row yet, in increasing order."""
        return (~self._done).nonzero().flatten().tolist()

    def add(self, indices: list[int], pooled: torch.Tensor) -> None:
        """Store the rows of these examples ([len(indices), neurons], on any device)."""
        self._put(indices, pooled)
        if self.directory is not None:
            self._unsaved.extend(indices)
            if len(self._unsaved) * self.width * 4 >= self.chunk_bytes:
                self.save()

    def _put(self, indices: list[int], pooled: torch.Tensor) -> None:
        if self.width is None:
            self._allocate(pooled.shape[1])
        rows = pooled.to(torch.float32)
        self._all_finite &= torch.isfinite(rows).all().to(self.device, non_blocking=True)
        kept = min(len(indices), self._device.shape[1] - self._n_on_device) if self._device is not None else 0
        if kept:
            slots = torch.arange(self._n_on_device, self._n_on_device + kept)
            self._device[:, self._n_on_device : self._n_on_device + kept] = rows[:kept].T.to(self.device)
            self._slot[indices[:kept]] = slots
            self._n_on_device += kept
        if kept < len(indices):
            self._host_rows()[indices[kept:]] = rows[kept:].to("cpu")
        self._done[indices] = True

    def save(self) -> None:
        """Write the rows added since the last save as one chunk (nothing without a folder)."""
        if self.directory is None or not self._unsaved:
            return
        chunk = self.directory / CHUNK_NAME.format(self._next_chunk)
        partial = chunk.with_name(chunk.name + ".partial")
        save_file({"indices": torch.tensor(self._unsaved, dtype=torch.int64), "pooled": self.rows(self._unsaved)}, partial)
        os.replace(partial, chunk)
        self._next_chunk += 1
        self._unsaved = []

    def rows(self, indices: list[int]) -> torch.Tensor:
        """The rows of these examples, [len(indices), neurons], float32, on the host."""
        wanted = torch.tensor(indices, dtype=torch.int64)
        slots = self._slot[wanted]
        on_device = slots >= 0
        out = torch.empty((len(indices), self.width), dtype=torch.float32)
        if bool(on_device.any()):
            out[on_device] = self._device[:, slots[on_device].to(self.device)].T.to("cpu")
        if not bool(on_device.all()):
            out[~on_device] = self._host[wanted[~on_device]]
        return out

    def pooled(self) -> torch.Tensor:
        """All rows: [examples, neurons], float32, on the host."""
        self._require_complete()
        if self._device is None:
            return self._host
        return self.rows(list(range(self.n_examples)))

    def neuron_blocks(self, block_size: int, device: torch.device) -> Iterator[torch.Tensor]:
        """Every example's values of `block_size` neurons at a time: [neurons, examples] on
        `device`, examples in order. A block of host rows is a view when `device` is the CPU."""
        self._require_complete()
        host_columns = (self._slot < 0).nonzero().flatten()
        device_columns = self._slot.argsort()[len(host_columns) :]  # example of each device slot, in slot order
        for start in range(0, self.width, block_size):
            stop = min(start + block_size, self.width)
            if self._device is None:
                yield self._host.T[start:stop].to(device)
                continue
            block = torch.empty((stop - start, self.n_examples), dtype=torch.float32, device=device)
            block[:, device_columns.to(device)] = self._device[start:stop, : self._n_on_device].to(device)
            if len(host_columns):
                block[:, host_columns.to(device)] = self._host.T[start:stop, host_columns].to(device)
            yield block

    def first_nonfinite(self) -> tuple[int, int] | None:
        """(example, neuron) of a NaN or infinite value among the rows added so far, or None.

        This is the one place that waits for the device: call it every few batches, not after each.
        """
        if self._all_finite is None or bool(self._all_finite):
            return None
        done = self.done_indices()
        row, column = (int(i) for i in (~torch.isfinite(self.rows(done))).nonzero()[0])
        return done[row], column

    def load_saved(self) -> None:
        """Take in the chunks an earlier run of the same fingerprint saved."""
        for chunk in sorted(path for path in self.directory.iterdir() if _CHUNK.fullmatch(path.name)):
            try:
                tensors = load_file(chunk)
                indices, rows = tensors["indices"], tensors["pooled"]
            except (SafetensorError, OSError, KeyError):
                raise _damaged(self.directory, f"{chunk.name} is unreadable") from None
            width = rows.shape[-1] if self.width is None else self.width
            if (
                indices.ndim != 1
                or rows.shape != (len(indices), width)
                or (len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= self.n_examples))
            ):
                raise _damaged(self.directory, f"{chunk.name} does not fit this data")
            self._put(indices.tolist(), rows)
            self._next_chunk = max(self._next_chunk, int(_CHUNK.fullmatch(chunk.name)[1]) + 1)

    def _allocate(self, width: int) -> None:
        self.width = width
        self._all_finite = torch.ones((), dtype=torch.bool, device=self.device)
        capacity = min(self.n_examples, self.device_budget_bytes // (4 * width))
        if capacity:
            self._device = torch.empty((width, capacity), dtype=torch.float32, device=self.device)

    def _host_rows(self) -> torch.Tensor:
        if self._host is None:
            self._host = _neuron_major(self.n_examples, self.width)
        return self._host

    def _require_complete(self) -> None:
        if self.width is None or not bool(self._done.all()):
            raise RuntimeError(f"{self.n_examples - self.n_done} examples were never scored")


def _neuron_major(n_examples: int, n_neurons: int) -> torch.Tensor:
    """An [examples, neurons] tensor whose memory runs along examples: AUROC sorts each neuron's
    values in place in this layout, with no transposed copy."""
    return torch.empty((n_neurons, n_examples), dtype=torch.float32).T


def device_budget_bytes(device: torch.device, budget_mb: float | None) -> int:
    """How many bytes of rows a store keeps on `device`: none on the CPU (rows are in host memory
    anyway), else `budget_mb` MiB, or half the GPU memory that is free once the model is loaded."""
    if device.type != "cuda":
        return 0
    if budget_mb is None:
        return torch.cuda.mem_get_info(device)[0] // 2
    return int(budget_mb * (1 << 20))


def default_chunk_bytes() -> int:
    """How many bytes of rows are saved at a time: `$SGM_EXPORT_CHUNK_MB` MiB, else 16 MiB.

    Smaller chunks lose less work to a kill, and write more files.
    """
    raw = os.environ.get(CHUNK_MB_VARIABLE, "")
    try:
        megabytes = float(raw) if raw else DEFAULT_CHUNK_MB
    except ValueError:
        raise SgmError(f"{CHUNK_MB_VARIABLE}={raw!r} is not a number", f"set it to a size in MiB, like {DEFAULT_CHUNK_MB:g}") from None
    if not 0 < megabytes < math.inf:
        raise SgmError(f"{CHUNK_MB_VARIABLE}={raw!r} is not a positive size", f"set it to a size in MiB, like {DEFAULT_CHUNK_MB:g}")
    return max(1, int(megabytes * 1024 * 1024))


@contextlib.contextmanager
def resumable_store(
    out: Path, fingerprint: str, n_examples: int, resume: bool, chunk_bytes: int, device: torch.device | None = None, budget_bytes: int = 0
) -> Iterator[PooledStore]:
    """The store for scoring into OUT, in a folder beside it that only this run holds (and that
    keeps up to `budget_bytes` of rows on `device`, see `PooledStore`).

    With `resume`, the rows an interrupted run with the same fingerprint saved are taken in;
    without it, such rows are discarded. Stores an interrupted run left for other settings of the
    same OUT are removed (only the last interrupted run of an output can be resumed). When the
    block is interrupted or fails unexpectedly (Ctrl-C, out of memory), unsaved rows are saved
    first and the folder stays, for `--resume`. When it succeeds, or stops on a problem with the
    input (an SgmError: fixing it changes the fingerprint, so the rows could never be resumed),
    the folder goes.
    """
    out = Path(out)
    directory = out.parent / f"{RESUME_PREFIX}{out.name}-{fingerprint[:_FINGERPRINT_CHARS]}"
    stale = siblings_matching(out, rf"{re.escape(RESUME_PREFIX + out.name)}-[0-9a-f]{{{_FINGERPRINT_CHARS}}}")
    remove_abandoned([path for path in stale if path != directory])
    directory.mkdir(parents=True, exist_ok=True)
    with exclusively(directory):
        state = {"format": STORE_FORMAT, "fingerprint": fingerprint, "n_examples": n_examples}
        state_file = directory / STATE_FILE
        if resume and state_file.is_file() and _read_state(state_file) == state:
            store = PooledStore(n_examples, directory, chunk_bytes, device, budget_bytes)
            store.load_saved()
        else:
            _empty(directory)
            state_file.write_text(json.dumps(state) + "\n", encoding="utf-8")
            store = PooledStore(n_examples, directory, chunk_bytes, device, budget_bytes)
        try:
            yield store
        except SgmError:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        except BaseException:
            store.save()
            raise
        shutil.rmtree(directory, ignore_errors=True)


def fingerprint(loaded: LoadedModel, examples: list[Example], options: ScoreOptions) -> str:
    """A digest of everything a pooled row depends on (see the module docstring)."""
    digest = hashlib.sha256()

    def feed(value: object) -> None:
        digest.update(json.dumps(value, sort_keys=True).encode("utf-8") + b"\0")

    feed(
        {
            "store_format": STORE_FORMAT,
            "sgm_export_version": __version__,
            "model": str(loaded.source.path),
            "model_files": [_file_stat(path) for path in sorted(loaded.source.path.iterdir()) if path.is_file()],
            "dtype": str(loaded.dtype),
            "device": loaded.device.type,
            "pool": options.pool,
            "max_length": options.max_length,
        }
    )
    for example in examples:
        feed([example.prompt, example.text, _file_stat(example.image) if example.image else None])
    return digest.hexdigest()


def _file_stat(path: Path) -> list:
    """Name, size and modification time: a change to a file changes these, cheaply."""
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def _read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None


def _empty(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _damaged(directory: Path, why: str) -> CheckpointError:
    return CheckpointError(f"the saved rows in {directory} are damaged: {why}", "score again without --resume")
