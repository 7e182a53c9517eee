"""Writing checkpoints that carry the glasses: `module` (custom code, weights untouched) and
`folded` (scales multiplied into the output projection's weights)."""

from pathlib import Path

from sgm_export.errors import SgmError
from sgm_export.export.folded import write_folded_checkpoint
from sgm_export.export.module import write_module_checkpoint
from sgm_export.export.source import open_base_checkpoint
from sgm_export.glasses import Glasses
from sgm_export.outputs import atomic_dir, check_outside_inputs, check_target_free

WRITERS = {"module": write_module_checkpoint, "folded": write_folded_checkpoint}


def export_checkpoint(model: str, glasses: Glasses, out: Path, format: str = "module", force: bool = False, link: bool = False) -> Path:
    """Write MODEL with the glasses as a `module` or `folded` checkpoint at `out`, atomically."""
    if format not in WRITERS:
        raise SgmError(f"unknown export format {format!r}", "use module or folded (ONNX has its own command: sgm-export onnx)")
    check_target_free(Path(out), force)
    base = open_base_checkpoint(model, glasses)
    check_outside_inputs(Path(out), [base.path])
    with atomic_dir(Path(out), force=force) as staging:
        WRITERS[format](base, glasses, staging, link)
    return Path(out)
