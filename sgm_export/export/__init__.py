"""Writing checkpoints that carry the glasses: `module` (custom code, weights untouched) and
`folded` (scales multiplied into the output projection's weights). Every export closes with its
model card (README.md) and its manifest (sgm_export.json), which records the card's hash too.

A module export is file work (copies, hashes, the scales written with numpy), so this package
imports no torch; the folded writer, which multiplies weights in torch, is imported when used."""

from collections.abc import Callable, Mapping
from pathlib import Path

from sgm_export.artifacts import ExportManifest
from sgm_export.errors import SgmError
from sgm_export.export.files import write_manifest
from sgm_export.export.module import write_module_checkpoint
from sgm_export.export.source import BaseCheckpoint, open_base_checkpoint
from sgm_export.glasses import Glasses
from sgm_export.layout import GLASSES_FILE, SCALES_FILE
from sgm_export.models.preflight import CheckedModel
from sgm_export.outputs import atomic_dir, check_outside_inputs, check_target_free
from sgm_export.publish.card import PIPELINE_TAGS, base_license, write_card

Writer = Callable[[BaseCheckpoint, Glasses, Path, bool], dict[str, str]]
GLASSES_FILES = {"module": SCALES_FILE, "folded": GLASSES_FILE}


def export_checkpoint(
    model: str | CheckedModel,
    glasses: Glasses,
    out: Path,
    format: str = "module",
    force: bool = False,
    link: bool = False,
    recipe: str | None = None,
    hub_repo_id: str | None = None,
) -> Path:
    """Write MODEL with the glasses as a `module` or `folded` checkpoint at `out`, atomically.

    `recipe` (the YAML text of a `run`) is embedded in the card so the export can be reproduced;
    `hub_repo_id`, when the destination is known, goes into the card's loading snippets. `run`
    passes MODEL checked (see `CheckedModel`), so that it is not resolved again.
    """
    if format not in GLASSES_FILES:
        raise SgmError(f"unknown export format {format!r}", "use module or folded (ONNX has its own command: sgm-export onnx)")
    check_target_free(Path(out), force)
    if format == "folded" and glasses.shifts is not None:
        raise SgmError(
            "these glasses shift experts towards their non-toxic mean, and a folded checkpoint can only hold scales "
            "(the shift would need a bias on the MLP's output projection, which sgm-export does not fold)",
            "export --format module (or sgm-export onnx), or compute the glasses without --shift",
        )
    base = open_base_checkpoint(model, glasses)
    check_outside_inputs(Path(out), [base.path])
    with atomic_dir(Path(out), force=force) as staging:
        digests = writer(format)(base, glasses, staging, link)
        finish_export(staging, export_fields(base, glasses, format, recipe, hub_repo_id), digests)
    return Path(out)


def writer(format: str) -> Writer:
    """The function that fills a staging folder with a `format` checkpoint. Importing torch
    takes longer than a module export itself, so only the folded writer's import brings it in."""
    if format == "folded":
        from sgm_export.export.folded import write_folded_checkpoint

        return write_folded_checkpoint
    return write_module_checkpoint


def export_fields(base: BaseCheckpoint, glasses: Glasses, format: str, recipe: str | None, hub_repo_id: str | None) -> ExportManifest:
    """What sgm_export.json records about an export, and what its card is rendered from."""
    return ExportManifest(
        format=format,
        base_model=base.source.hub_id or base.source.name,
        base_model_name=base.source.name,
        base_model_hub_id=base.source.hub_id,
        base_license=base_license(base.path, base.source.license),
        auto_class=base.family.auto_class,
        pipeline_tag=PIPELINE_TAGS.get(base.family.auto_class),
        glasses=glasses.metadata,
        glasses_file=GLASSES_FILES[format],
        experts_per_layer=glasses.experts_per_layer(),
        neurons_per_layer=glasses.widths,
        data_sources=glasses.metadata.provenance.data,
        recipe=recipe,
        hub_repo_id=hub_repo_id,
    )


def finish_export(folder: Path, manifest: ExportManifest, digests: Mapping[str, str] | None = None) -> None:
    """Write the card, then the manifest, whose file hashes then include the card; `digests` are
    the SHA-256 the writer computed as it wrote (so the weights are not read again)."""
    write_card(folder, manifest)
    write_manifest(folder, manifest, digests)
