"""Rendering the card of an existing export again: after `eval` wrote a report (attached into
`eval/`), after an `onnx/` folder was added, or to name the Hub repository in the card.

The card vouches for the files beside it, so it is only rendered again for an export whose files
still match its manifest; the card and the report, which are written anew, are the exception.
Files added since the export (the report, ONNX graphs) are recorded in the manifest afterwards.
"""

from pathlib import Path

from sgm_export.artifacts import read_export_manifest
from sgm_export.errors import CheckpointError
from sgm_export.export import finish_export
from sgm_export.layout import CARD_FILE, EVAL_DIR, MANIFEST_FILE
from sgm_export.models.audit import is_module_export, refuse_foreign_auto_map
from sgm_export.models.manifest import manifest_problems, read_manifest
from sgm_export.outputs import atomic_dir
from sgm_export.publish.evaluation import copy_report

CARD_FIELDS = ("format", "glasses_file", "experts_per_layer", "neurons_per_layer")


def refresh_card(folder: Path, report_dir: Path | None = None, hub_repo_id: str | None = None) -> Path:
    """Attach `report_dir` (when given), then write the card and the manifest again."""
    folder = Path(folder)
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None or any(key not in manifest for key in CARD_FIELDS):
        raise CheckpointError(
            f"{folder} is not an export with a card (its {MANIFEST_FILE} is missing or predates cards)",
            "export it again with `sgm-export export`",
        )
    refuse_foreign_auto_map(folder, str(folder), is_module_export(folder))  # a card must not vouch for foreign code
    rewritten = (CARD_FILE, f"{EVAL_DIR}/") if report_dir is not None else (CARD_FILE,)
    problems = manifest_problems(folder, skip=lambda name: name.startswith(rewritten))
    if problems:
        raise CheckpointError(
            f"{folder} changed since it was exported ({problems[0]}), so a new card would vouch for files it never saw",
            "export it again with `sgm-export export`",
        )
    if report_dir is not None:
        with atomic_dir(folder / EVAL_DIR, force=True) as staging:
            copy_report(report_dir, staging)
    fields = read_export_manifest(folder).model_copy(update={"files": {}})  # a 0.1.0 manifest is written anew
    if hub_repo_id is not None:
        fields.hub_repo_id = hub_repo_id
    finish_export(folder, fields)
    return folder / CARD_FILE
