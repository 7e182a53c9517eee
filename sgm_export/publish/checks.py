"""What must hold before an export may be published.

A pushed model is downloaded by people who trust its card, so the card, the manifest and the
glasses on disk must tell the same story: the folder has an sgm-export card; every file the
manifest records is there, unchanged; nothing unrecorded or pickled rides along; and the glasses
file is the one the card names, with the SHA-256 and the expert count the card states.
"""

from pathlib import Path

import yaml

from sgm_export.errors import SgmError
from sgm_export.export.files import recorded_files
from sgm_export.export.folder import export_glasses
from sgm_export.hashing import sha256_file
from sgm_export.layout import CARD_FILE, MANIFEST_FILE
from sgm_export.models.audit import is_module_export, refuse_foreign_auto_map
from sgm_export.models.checkpoint import PICKLE_SUFFIXES
from sgm_export.models.manifest import manifest_problems, read_manifest
from sgm_export.publish.card import CARD_BLOCK, load_card


def publish_problems(folder: Path) -> list[str]:
    """Why `folder` must not be published; empty when it may be."""
    folder = Path(folder)
    try:
        card = load_card(folder)
    except (ValueError, yaml.YAMLError) as error:
        return [f"its {CARD_FILE} has unreadable metadata ({str(error).splitlines()[0]})"]
    if card is None:
        return [f"it has no model card ({CARD_FILE})"]
    block = card.data.to_dict().get(CARD_BLOCK)
    if not isinstance(block, dict):
        return [f"its {CARD_FILE} is not an sgm-export card (no `{CARD_BLOCK}` metadata)"]
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"it has no {MANIFEST_FILE}, so its files cannot be checked"]
    problems = manifest_problems(folder)
    recorded, present = set(manifest.get("files", {})), recorded_files(folder)
    problems += [f"{name} is not recorded in {MANIFEST_FILE}" for name in present if name not in recorded]
    problems += [f"{name} is a pickle file, which can run code when loaded" for name in present if name.endswith(PICKLE_SUFFIXES)]
    return problems + _glasses_problems(folder, block, manifest)


def _glasses_problems(folder: Path, block: dict, manifest: dict) -> list[str]:
    if block.get("format") != manifest.get("format"):
        return [f"the card describes a {block.get('format')} export but {MANIFEST_FILE} a {manifest.get('format')} one"]
    name = block.get("glasses_file")
    if not name or name != manifest.get("glasses_file"):
        return [f"the card names the glasses file {name!r} but {MANIFEST_FILE} names {manifest.get('glasses_file')!r}"]
    path = folder / name
    if not path.is_file():
        return [f"the glasses ({name}) are missing"]
    if sha256_file(path) != block.get("glasses_sha256"):
        return [f"the glasses ({name}) are not the ones the card describes (SHA-256 differs)"]
    try:
        experts = sum(export_glasses(folder).experts_per_layer())
    except SgmError as error:
        return [f"the glasses cannot be read ({error.problem})"]
    if experts != block.get("experts"):
        return [f"the glasses scale {experts} neurons but the card says {block.get('experts')}"]
    return []


def require_publishable(folder: Path) -> None:
    """Raise a one-line error naming the first problem (and how many more there are)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SgmError(f"{folder} is not a directory", "pass the folder that `sgm-export export` or `run` wrote")
    refuse_foreign_auto_map(folder, str(folder), is_module_export(folder))  # never publish code sgm-export did not write
    problems = publish_problems(folder)
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise SgmError(
            f"refusing to publish {folder}: {problems[0]}{more}",
            "export it again (sgm-export export/run), or run `sgm-export card DIR` if you only added a report or ONNX files",
        )
