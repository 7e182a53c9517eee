"""`--format folded`: a plain checkpoint of the base architecture with the glasses multiplied into
the output projections, `W[:, j] *= scale[j]` (computed in float32, cast back to the stored
dtype). It loads anywhere, without custom code.

Files are streamed one at a time: a shard without output projections is copied byte for byte,
a shard with some is read, edited and written, so peak memory is about one shard whatever the
model's size. `glasses.safetensors` goes beside the weights, documenting the edit (and allowing
it to be undone where no scale is 0). The card and manifest are added by `export_checkpoint`.
"""

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sgm_export.export.files import copy_file
from sgm_export.export.source import BaseCheckpoint
from sgm_export.glasses import Glasses, save_glasses
from sgm_export.models.checkpoint import SAFE_INDEX

GLASSES_FILE = "glasses.safetensors"


def write_folded_checkpoint(base: BaseCheckpoint, glasses: Glasses, staging: Path, link: bool = False) -> None:
    """Fill the empty folder `staging` with the folded checkpoint."""
    for file in base.companion_files():
        copy_file(file, staging / file.name, link)
    copy_file(base.path / "config.json", staging / "config.json")
    if (base.path / SAFE_INDEX).is_file():
        copy_file(base.path / SAFE_INDEX, staging / SAFE_INDEX)
    scale_of_key = {key: glasses.scales[layer] for layer, key in base.projection_keys.items()}
    axis = base.family.input_axis()
    for shard in base.weights:
        with safe_open(shard, "pt") as handle:
            edited_here = [key for key in handle.keys() if key in scale_of_key]
        if edited_here:
            _write_folded_shard(shard, staging / shard.name, scale_of_key, axis)
        else:
            copy_file(shard, staging / shard.name, link)
    save_glasses(glasses, staging / GLASSES_FILE)


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


def _write_folded_shard(source: Path, target: Path, scale_of_key: dict[str, torch.Tensor], axis: int) -> None:
    tensors = {}
    with safe_open(source, "pt") as handle:
        metadata = handle.metadata()
        for key in handle.keys():
            tensor = handle.get_tensor(key)
            tensors[key] = fold_scale(tensor, scale_of_key[key], axis) if key in scale_of_key else tensor
    save_file(tensors, target, metadata=metadata)
