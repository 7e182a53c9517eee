"""Reading a checkpoint directory without loading it: which files hold the weights, and whether
they are safe (safetensors, not pickles) and whole (headers that match the file sizes)."""

import json
import math
import struct
from pathlib import Path

from sgm_export.errors import CheckpointError, ModelNotFoundError, UnsafeCheckpointError

SAFE_SINGLE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
HEADER_LIMIT = 100 * 1024 * 1024
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F8_E5M2FNUZ": 1, "F8_E4M3FNUZ": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip


def read_config(model_dir: Path) -> dict:
    """The directory's config.json, or a one-line error saying it is not a model directory."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ModelNotFoundError(
            f"{model_dir} has no config.json, so it is not a Hugging Face model directory",
            "point MODEL at a directory saved with save_pretrained, a Hub id, or 'demo'",
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_path} is not valid JSON ({error})", "restore the file from the original checkpoint") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path} is not a JSON object", "restore the file from the original checkpoint")
    return config


def weight_files(model_dir: Path, variant: str | None = None) -> list[Path]:
    """The safetensors files holding the weights, in index order; refuses pickle-only checkpoints."""
    single = model_dir / with_variant(SAFE_SINGLE, variant)
    index = model_dir / with_variant(SAFE_INDEX, variant)
    if single.is_file():
        return [single]
    if index.is_file():
        return [model_dir / name for name in _index_shards(index)]
    pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UnsafeCheckpointError(
            f"{model_dir} has only pickle weights ({', '.join(pickles[:3])}), which can run code when loaded",
            "convert it to safetensors, or pass --allow-pickle (allow_pickle: true in a recipe) if you trust its author",
        )
    raise CheckpointError(
        f"{model_dir} has no {SAFE_SINGLE} or {SAFE_INDEX}", "save the model with save_pretrained(safe_serialization=True)"
    )


def weight_index(model_dir: Path, variant: str | None = None) -> dict[str, Path]:
    """Tensor name -> the safetensors file that holds it, for every weight of the checkpoint."""
    index = model_dir / with_variant(SAFE_INDEX, variant)
    if index.is_file() and not (model_dir / with_variant(SAFE_SINGLE, variant)).is_file():
        return {name: model_dir / shard for name, shard in _weight_map(index).items()}
    (single,) = weight_files(model_dir, variant)
    return {name: single for name in safetensors_header(single) if name != "__metadata__"}


def _weight_map(index: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(shard, str) for shard in weight_map.values()):
            raise TypeError("weight_map is not a mapping of tensor names to file names")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"{index} is not a valid safetensors index ({error})", "restore it from the original checkpoint") from None
    return weight_map


def _index_shards(index: Path) -> list[str]:
    shards = list(dict.fromkeys(_weight_map(index).values()))
    missing = [name for name in shards if not (index.parent / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{index.name} names shards that are missing: {', '.join(missing[:3])}", "download the whole checkpoint again"
        )
    return shards


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file, after checking that the file is whole."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise _corrupt(path, "it is shorter than a safetensors header")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > min(HEADER_LIMIT, size - 8):
            raise _corrupt(path, "its header length is impossible")
        try:
            header = json.loads(handle.read(header_size))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _corrupt(path, "its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "its header is not a JSON object")
    data_size = size - 8 - header_size
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = (int(offset) for offset in entry["data_offsets"])
            shape = [int(size) for size in entry["shape"]]
            item_bytes = DTYPE_BYTES.get(entry["dtype"])
        except (TypeError, KeyError, ValueError):
            raise _corrupt(path, f"tensor {name!r} has no valid dtype, shape and data_offsets") from None
        if not 0 <= start <= end <= data_size:
            raise _corrupt(path, f"tensor {name!r} lies past the end of the file (truncated?)")
        if item_bytes is not None and math.prod(shape) * item_bytes != end - start:
            raise _corrupt(path, f"tensor {name!r} has shape {shape} but {end - start} bytes of data")
    return header


def safetensors_data_start(path: Path) -> int:
    """Where the tensor data of a safetensors file begins: the `data_offsets` of its header
    count from here (after the 8-byte header length and the header)."""
    with path.open("rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
    return 8 + header_size


def check_safetensors(paths: list[Path]) -> None:
    """Check that every file is a whole safetensors file (cheap: reads headers only)."""
    for path in paths:
        safetensors_header(path)


def _corrupt(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a valid safetensors file: {why}", "download or copy the file again")


def with_variant(name: str, variant: str | None) -> str:
    if variant is None:
        return name
    stem, suffix = name.rsplit(".", 1)
    return f"{stem}.{variant}.{suffix}"
