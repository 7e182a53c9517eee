"""The metadata of every file sgm-export writes, as typed objects, and the one place that turns
them into bytes and back.

Settings travel between the stages as these objects: the scores' provenance (`ScoresMetadata`),
the glasses' settings and where their experts were found (`GlassesMetadata`), and the export
manifest `sgm_export.json` (`ExportManifest`), which the model card is rendered from. Two
encodings exist, and only this module knows them:

- safetensors metadata can hold only strings: each field is one string (numbers as Python writes
  them, a list as JSON, `""` for None and for False), as sgm-export 0.1.0 wrote them, so files of
  either version read the same;
- JSON (`scores.json`, `sgm_export.json`, `onnx/sgm_onnx.json`): numbers as numbers, lists as
  lists, None as null. A 0.1.0 manifest, whose glasses block holds the strings above, reads too.

The glasses block is flat (`{"mode": "aura", "threshold": 0.5, ..., "pool": "mean", ...}`) in
both encodings, as in 0.1.0, while in memory the settings are a `GlassesOptions` and the
provenance a `ScoringProvenance`: a new glasses option is a field of `GlassesOptions` and reaches
every file, graph and card without an edit here.
"""

import json
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sgm_export.errors import CheckpointError
from sgm_export.layout import MANIFEST_FILE
from sgm_export.options import GlassesOptions


class Artifact(BaseModel):
    """Unknown keys (written by a newer version) are ignored on reading."""

    model_config = ConfigDict(extra="ignore")

    @classmethod
    def from_strings(cls, metadata: Mapping[str, str], where: str = "metadata") -> "Artifact":
        """Read the safetensors encoding; a value that is not what its field holds is a
        one-line error naming `where` it came from."""
        return _validated(cls, {name: _decoded(raw, cls.model_fields[name].annotation) for name, raw in _known(cls, metadata)}, where)

    def to_strings(self) -> dict[str, str]:
        """The safetensors encoding of every field."""
        return {name: _encoded(value) for name, value in self.model_dump().items()}


class ScoringProvenance(Artifact):
    """Where the experts were found: the model and the data the neurons were scored on. It
    travels from the scores to the glasses, every export and the card."""

    model_type: str | None = None
    pool: str | None = None
    max_length: int | None = None
    limit: int | None = None
    data: list[str] = Field(default_factory=list)
    n_toxic: int | None = None
    n_neutral: int | None = None


IMAGE_AND_TEXT = "image+text"  # report.json: the modality of prompts and rows with an image
REPORT_OVERALL = "overall"  # report.json: the key of a prompt set's figures over all its prompts
PROVENANCE_FIELDS = tuple(ScoringProvenance.model_fields)


class ScoresMetadata(ScoringProvenance):
    """The metadata of scores.safetensors (and the `metadata` of scores.json)."""

    sgm_export_version: str | None = None
    model: str | None = None
    family: str | None = None
    n_images: int | None = None
    vocabulary: str | None = None  # how the toxic words were found, or why there is no vocabulary rating

    def provenance(self) -> ScoringProvenance:
        return ScoringProvenance(**{name: getattr(self, name) for name in PROVENANCE_FIELDS})


class GlassesMetadata(Artifact):
    """The metadata of a glasses file: the settings that made it (None for glasses that sgm-export
    did not compute), where its experts were found, and what it holds."""

    settings: GlassesOptions | None = None
    provenance: ScoringProvenance = Field(default_factory=ScoringProvenance)
    base_model: str | None = None
    n_experts: int | None = None
    n_guarded: int | None = None
    sgm_export_version: str | None = None

    @classmethod
    def from_strings(cls, metadata: Mapping[str, Any], where: str = "metadata") -> "GlassesMetadata":
        """The flat block, from safetensors strings or from JSON (where 0.1.0 wrote strings too)."""

        def values(model: type[BaseModel]) -> dict[str, Any]:
            return {name: _decoded(raw, model.model_fields[name].annotation) for name, raw in _known(model, metadata)}

        settings = values(GlassesOptions)
        own = {key: value for key, value in values(cls).items() if key not in ("settings", "provenance")}
        return _validated(
            cls,
            {
                **own,
                "settings": _validated(GlassesOptions, settings, where) if "mode" in settings else None,
                "provenance": _validated(ScoringProvenance, values(ScoringProvenance), where),
            },
            where,
        )

    def to_strings(self) -> dict[str, str]:
        return {name: _encoded(value) for name, value in self.flat().items()}

    def flat(self) -> dict[str, Any]:
        """The flat block of sgm_export.json, sgm_onnx.json and the ONNX graph's metadata."""
        settings = self.settings.model_dump() if self.settings is not None else {}
        own = self.model_dump(exclude={"settings", "provenance"})
        return {**settings, "base_model": own.pop("base_model"), **self.provenance.model_dump(), **own}


class ExportManifest(Artifact):
    """sgm_export.json: what produced an export folder, what its card is rendered from, and the
    SHA-256 of every file in it (`files`, filled in when the manifest is written)."""

    model_config = ConfigDict(extra="allow")  # fields of a newer version survive a re-rendered card

    format: str
    glasses: GlassesMetadata = Field(default_factory=GlassesMetadata)
    glasses_file: str
    experts_per_layer: list[int]
    neurons_per_layer: list[int]
    sgm_export_version: str | None = None
    modeling_sgm_sha256: str | None = None
    base_model: str | None = None
    base_model_name: str | None = None
    base_model_hub_id: str | None = None
    base_license: dict[str, str] = Field(default_factory=dict)
    auto_class: str | None = None
    pipeline_tag: str | None = None
    data_sources: list[str] = Field(default_factory=list)
    recipe: str | None = None
    hub_repo_id: str | None = None
    # an ONNX folder: its dtype, and what it was made from
    dtype: str | None = None
    family: str | None = None
    exported_from: str | None = None
    files: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_json(cls, manifest: Mapping[str, Any], where: str = MANIFEST_FILE) -> "ExportManifest":
        glasses = manifest.get("glasses") or {}
        if not isinstance(glasses, Mapping):
            raise CheckpointError(f"{where}: `glasses` is not an object", "export the model again")
        return _validated(cls, {**manifest, "glasses": GlassesMetadata.from_strings(glasses, where)}, where)

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys in the order 0.1.0 wrote them (settings, then hashes)."""
        data = self.model_dump(exclude={"files"})
        data["glasses"] = self.glasses.flat()
        unset = ("dtype", "family", "exported_from")  # only an ONNX folder has them
        data = {key: value for key, value in data.items() if not (key in unset and value is None)}
        version = {key: data.pop(key) for key in ("sgm_export_version", "modeling_sgm_sha256")}
        return {**version, **data, "files": self.files}


class ReportHeader(Artifact):
    """The head of report.json (and sweep.json): what was evaluated and how. The per-model sections
    (`base`, `glasses`, ...) follow it as keys named in `sections`; every field may be missing from
    a report written by hand or by an older version, and the card then leaves its sentence out."""

    sgm_export_version: str | None = None
    model: str | None = None
    base_model: str | None = None
    judge: dict[str, Any] | str | None = None  # str: a report written by hand
    judges: list[dict[str, Any] | str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)  # EvalOptions as JSON, as the run had them
    glasses_settings: dict[str, Any] | None = None
    n_prompts: int | None = None
    n_neutral_texts: int | None = None
    neutral_sources: dict[str, int] = Field(default_factory=dict)
    n_image_prompts: int = 0

    @classmethod
    def from_json(cls, report: Mapping[str, Any], where: str = "report.json") -> "ReportHeader":
        return _validated(cls, dict(_known(cls, report)), where)


def read_export_manifest(folder: Path) -> ExportManifest | None:
    """The folder's sgm_export.json as typed fields, or None when it has none."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error})", "export the model again") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not an sgm-export manifest", "export the model again")
    return ExportManifest.from_json(data, str(path))


def _known(model: type[BaseModel], metadata: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The items of `metadata` that are fields of `model`, without the empty ones (None)."""
    return [(name, metadata[name]) for name in model.model_fields if name in metadata and metadata[name] not in ("", None)]


def _validated(model: type[BaseModel], values: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise CheckpointError(f"{where}: {key}: {first['msg']}", "write the file again with this sgm-export") from None


def _decoded(raw: Any, annotation: Any) -> Any:
    """One safetensors string as the value its field holds (pydantic converts numbers)."""
    if not isinstance(raw, str):
        return raw
    kinds = {
        get_origin(arg) or arg for arg in (get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,))
    }
    if bool in kinds:
        return raw.strip().lower() not in ("false", "0", "no")  # 0.1.0 wrote `shift` as a phrase
    if list in kinds or dict in kinds:
        try:
            return json.loads(raw)
        except ValueError:
            return raw  # validation then names the field
    return raw


def _encoded(value: Any) -> str:
    """One value as a safetensors metadata string (the inverse of `_decoded`)."""
    if value is None or value is False:
        return ""
    if value is True:
        return "true"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)
