"""`sgm-export verify`: checking an export against its base model, one stage for every format.

First the files (nothing is loaded from an export whose files changed): the manifest's hashes,
and a module export's code against this tool's own. Then the logits: the export's must equal
those of the base model with the same scales applied by hooks (an independent mechanism), by
`verify/checkpoint.py` for module and folded exports and `verify/onnx.py` for ONNX folders.
"""

import math
from pathlib import Path

from sgm_export.export.folder import export_format, export_glasses, foreign_code_problems
from sgm_export.models.audit import refuse_foreign_auto_map
from sgm_export.models.manifest import manifest_problems
from sgm_export.models.preflight import CheckedModel
from sgm_export.snapshot import folder_snapshot
from sgm_export.verify.result import DEFAULT_TOLERANCE, VerifyResult

__all__ = ["DEFAULT_TOLERANCE", "VerifyResult", "verify_export"]


def verify_export(
    export_dir: Path,
    base_model: str | CheckedModel,
    tolerance: float = DEFAULT_TOLERANCE,
    device: str = "cpu",
    dtype: str = "float64",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> VerifyResult:
    """Compare the export's logits with the base model's under hook-applied glasses (`run` passes
    the base model checked, so that it is not resolved again).

    Both models run in float64 by default: a folded checkpoint computes x @ (W * s) where the
    reference computes (x * s) @ W, and in float32 that reordering alone moves the logits of a
    270M model by about 1e-4. In float64 what remains is the one rounding of W * s to the
    stored dtype, so the check measures the export and not the arithmetic. Everything is read
    from a snapshot of the folder (snapshot.py), so a concurrent replace cannot mix two versions.
    """
    export_format(Path(export_dir))  # a folder that is no export is reported with the path the user gave
    with folder_snapshot(Path(export_dir)) as frozen:  # another process may replace the export meanwhile
        return _verify_folder(frozen, str(export_dir), base_model, tolerance, device, dtype, allow_pickle, trust_remote_code)


def _verify_folder(
    export_dir: Path,
    name: str,
    base_model: str | CheckedModel,
    tolerance: float,
    device: str,
    dtype: str,
    allow_pickle: bool,
    trust_remote_code: bool,
) -> VerifyResult:
    """`verify_export` on a folder nothing else writes to."""
    fmt = export_format(export_dir)
    refuse_foreign_auto_map(export_dir, name, module_export=fmt == "module")
    glasses = export_glasses(export_dir)
    # Every check of the files comes before anything is loaded: a changed export is never run.
    problems = (foreign_code_problems(export_dir) if fmt == "module" else []) + manifest_problems(export_dir)
    if problems:
        return VerifyResult(fmt, math.nan, tolerance, math.nan, sum(glasses.experts_per_layer()), problems)
    if fmt == "onnx":
        from sgm_export.verify.onnx import verify_onnx_export

        return verify_onnx_export(export_dir, base_model, tolerance=tolerance, device=device)
    from sgm_export.verify.checkpoint import verify_checkpoint_logits

    return verify_checkpoint_logits(
        export_dir, fmt, glasses, base_model, tolerance, device, dtype, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
    )
