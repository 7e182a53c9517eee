"""`--format folded`: a plain checkpoint of the base architecture with the glasses multiplied into
the output projections, `W[:, j] *= scale[j]` (computed in float32, cast back to the stored
dtype). It loads anywhere, without custom code.

Folding changes neither a weight's dtype nor its shape, so a folded shard is its source shard
with the byte ranges of the projection weights replaced. The kernel copies the shard, then each
projection is read from the source a block of rows at a time, folded and written over its range
in the copy: peak memory is a few times one block (`FOLD_BLOCK_BYTES`), however large the shards
or the model. A shard without output projections is copied (or hard-linked) unchanged.
`glasses.safetensors` goes beside the weights, documenting the edit (and allowing it to be undone
where no scale is 0). The card and manifest are added by `export_checkpoint`.
"""

import shutil
from pathlib import Path
from typing import BinaryIO

import torch

from sgm_export.errors import CheckpointError, SgmError
from sgm_export.export.files import copy_file
from sgm_export.export.source import BaseCheckpoint
from sgm_export.glasses import Glasses, save_glasses
from sgm_export.hashing import sha256_file
from sgm_export.layout import GLASSES_FILE
from sgm_export.models.checkpoint import SAFE_INDEX, safetensors_data_start, safetensors_header

# The most of a weight read at once. Folding a block in float32 briefly needs up to 6x as much
# (bfloat16: the block, two float32 temporaries, the result). Small blocks also keep the
# allocator's heap small: peak RSS of a 2.4 GB folded export measured 319 MB with 4 MiB blocks and
# 423 MB with 16 MiB, where importing torch alone takes 252 MB.
FOLD_BLOCK_BYTES = 4 << 20
FOLDABLE_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


class UnfoldableWeightError(SgmError):
    """An output projection is stored in a way that the scales cannot be multiplied into."""


def write_folded_checkpoint(base: BaseCheckpoint, glasses: Glasses, staging: Path, link: bool = False) -> dict[str, str]:
    """Fill the empty folder `staging` with the folded checkpoint; return the SHA-256 of the
    files it wrote (name -> digest), for the manifest."""
    digests = {file.name: copy_file(file, staging / file.name, link) for file in base.companion_files()}
    digests["config.json"] = copy_file(base.path / "config.json", staging / "config.json")
    if (base.path / SAFE_INDEX).is_file():
        digests[SAFE_INDEX] = copy_file(base.path / SAFE_INDEX, staging / SAFE_INDEX)
    scale_of_key = {key: torch.from_numpy(glasses.scales[layer]) for layer, key in base.projection_keys.items()}
    axis = base.family.input_axis()
    for shard in base.weights:
        header = safetensors_header(shard)
        scales_here = {key: scale for key, scale in scale_of_key.items() if key in header}
        if scales_here:
            digests[shard.name] = _write_folded_shard(shard, staging / shard.name, header, scales_here, axis)
        else:
            digests[shard.name] = copy_file(shard, staging / shard.name, link)
    save_glasses(glasses, staging / GLASSES_FILE)
    return digests


def fold_scale(weight: torch.Tensor, scale: torch.Tensor, axis: int) -> torch.Tensor:
    """The weight with each input neuron's column (axis 1, or row for Conv1D) multiplied by its scale."""
    shape = [1, 1]
    shape[axis] = -1
    return (weight.to(torch.float32) * scale.to(torch.float32).reshape(shape)).to(weight.dtype)


def unfold_scale(weight: torch.Tensor, scale: torch.Tensor, axis: int) -> torch.Tensor:
    """The inverse of `fold_scale` wherever the scale is not 0, in float32.

    A neuron scaled by 0 left an all-zero column in the folded weight: the original column is
    lost, and it stays zero here, which changes nothing where the scale is applied again.
    """
    shape = [1, 1]
    shape[axis] = -1
    divisor = torch.where(scale > 0, scale, torch.ones_like(scale)).to(torch.float32).reshape(shape)
    return (weight.to(torch.float32) / divisor).to(weight.dtype)


def _write_folded_shard(source: Path, target: Path, header: dict, scale_of_key: dict[str, torch.Tensor], axis: int) -> str:
    """Copy the shard, then overwrite each projection weight's bytes with its folded values; the
    SHA-256 of the result. A plain kernel copy: never a hard link, since writing into one would
    edit the base, and not hashed, since the edits change it."""
    shutil.copyfile(source, target)
    data_start = safetensors_data_start(source)
    with source.open("rb") as reader, target.open("r+b") as writer:
        for key, scale in scale_of_key.items():
            entry = header[key]
            dtype = FOLDABLE_DTYPES.get(entry["dtype"])
            if dtype is None:
                raise UnfoldableWeightError(
                    f"{key} is stored as {entry['dtype']}, which the scales cannot be folded into",
                    "export with --format module, which leaves the weights as they are",
                )
            rows, columns = entry["shape"]
            _fold_rows(reader, writer, data_start + entry["data_offsets"][0], (rows, columns), dtype, scale, axis)
    return sha256_file(target)


def _fold_rows(
    reader: BinaryIO, writer: BinaryIO, offset: int, shape: tuple[int, int], dtype: torch.dtype, scale: torch.Tensor, axis: int
) -> None:
    """Fold the row-major weight at byte `offset` a block of whole rows at a time: scaled
    columns (axis 1) take the whole scale, scaled rows (axis 0) the block's part of it."""
    rows, columns = shape
    row_bytes = columns * dtype.itemsize
    step = max(1, FOLD_BLOCK_BYTES // row_bytes)
    for first in range(0, rows, step):
        count = min(step, rows - first)
        raw = bytearray(count * row_bytes)
        reader.seek(offset + first * row_bytes)
        if reader.readinto(raw) != len(raw):
            raise CheckpointError(f"{reader.name} ended inside a weight (truncated?)", "download or copy the checkpoint again")
        block = torch.frombuffer(raw, dtype=dtype).reshape(count, columns)
        folded = fold_scale(block, scale if axis == 1 else scale[first : first + count], axis)
        writer.seek(offset + first * row_bytes)
        writer.write(folded.reshape(-1).view(torch.uint8).numpy())
