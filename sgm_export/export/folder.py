"""Reading an export folder: which format it is, the glasses it carries, and whether its code is
this tool's own. `verify`, `onnx` (exporting from an export), `eval` and `push` all read export
folders through here, so that one module owns their layout."""

from pathlib import Path

from sgm_export.artifacts import GlassesMetadata
from sgm_export.errors import CheckpointError
from sgm_export.glasses import Glasses, load_glasses
from sgm_export.hashing import sha256_file
from sgm_export.layout import GLASSES_FILE, MODELING_FILE, SCALES_FILE
from sgm_export.modeling import SCALE_SUFFIX, SGM_MODEL_TYPE, SHIFT_SUFFIX, shipped_modeling_sha256
from sgm_export.models.checkpoint import read_config
from sgm_export.models.manifest import read_manifest
from sgm_export.tensorfile import read_tensor_file


def export_format(export_dir: Path) -> str:
    """`module`, `folded` or `onnx`, from the folder's config.json and manifest."""
    if not export_dir.is_dir():
        raise CheckpointError(f"{export_dir} is not a folder", "pass a folder written by `sgm-export export` or `sgm-export onnx`")
    if (export_dir / "config.json").is_file() and read_config(export_dir).get("model_type") == SGM_MODEL_TYPE:
        return "module"
    manifest = read_manifest(export_dir)
    if (export_dir / GLASSES_FILE).is_file() and manifest and manifest.get("format") in ("folded", "onnx"):
        return manifest["format"]
    raise CheckpointError(
        f"{export_dir} is not an sgm-export checkpoint", "pass a folder written by `sgm-export export` or `sgm-export onnx`"
    )


def export_glasses(export_dir: Path) -> Glasses:
    """The glasses an export claims to carry, in layer order."""
    if export_format(export_dir) in ("folded", "onnx"):
        return load_glasses(export_dir / GLASSES_FILE)
    config = read_config(export_dir)
    if not (export_dir / SCALES_FILE).is_file():
        raise CheckpointError(f"{export_dir} has no {SCALES_FILE}, so it carries no glasses", "export the model again")
    scales, metadata = read_tensor_file(export_dir / SCALES_FILE, "glasses", "export the model again", framework="np")
    try:
        modules = config["sgm"]["modules"]
        shifts = [scales[name + SHIFT_SUFFIX] for name in modules] if any(name + SHIFT_SUFFIX in scales for name in modules) else None
        settings = GlassesMetadata.from_strings(metadata, str(export_dir / SCALES_FILE))
        return Glasses([scales[name + SCALE_SUFFIX] for name in modules], settings, shifts)
    except (KeyError, TypeError) as missing:
        raise CheckpointError(f"{SCALES_FILE} or config.json lacks {missing}", "export the model again") from None


def foreign_code_problems(export_dir: Path) -> list[str]:
    """A module export must carry this tool's own modeling_sgm.py; anything else is not run."""
    modeling = export_dir / MODELING_FILE
    if not modeling.is_file():
        return [f"{MODELING_FILE} is missing"]
    if sha256_file(modeling) != shipped_modeling_sha256():
        return [f"{MODELING_FILE} differs from the copy in this sgm-export, so it was not run"]
    return []
