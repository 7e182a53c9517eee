"""Which code a model folder may run, decided before anything in it is loaded.

Transformers runs a folder's own Python files when a config names them in an `auto_map` and the
caller passes `trust_remote_code=True`. sgm-export trusts exactly one such file without asking:
the `modeling_sgm.py` of a module export, and only when it is byte for byte the copy this package
ships. So, unless the user passes --trust-remote-code:

- every `auto_map` entry of every config file transformers reads (`config.json`,
  `tokenizer_config.json`, `processor_config.json`, `preprocessor_config.json`, ...) must be one
  that `sgm-export export` writes into a module export's config.json; anything else stops the
  command with one line naming the file and the key;
- a module export's `modeling_sgm.py` must equal the shipped one;
- a module export's files must match its manifest (sgm_export.json), the glasses included, except
  the weight shards (safetensors: data, never code; their headers are checked elsewhere) and the
  card, report and ONNX graphs, which loading does not read. `verify` and `push` check them all.

Hashes in the manifest can be rewritten by whoever publishes a folder, so they protect against
damage, not against an attacker: the auto_map and modeling-file checks are what keep code out.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sgm_export.errors import CheckpointError, UnsafeCheckpointError
from sgm_export.hashing import sha256_file
from sgm_export.layout import MANIFEST_FILE, MODELING_FILE, SCALES_FILE
from sgm_export.modeling import SGM_MODEL_TYPE, shipped_modeling_sha256
from sgm_export.models.manifest import manifest_problems, read_manifest

# The only auto_map entries an sgm module export has: its config.json names modeling_sgm.py.
SGM_AUTO_MAP = {
    "AutoConfig": "modeling_sgm.SgmConfig",
    "AutoModelForCausalLM": "modeling_sgm.SgmForCausalLM",
    "AutoModelForImageTextToText": "modeling_sgm.SgmForImageTextToText",
}
SGM_AUTO_MAP_AT = ("auto_map.", "sgm.auto_map.")
CONFIG_SUFFIX = "config.json"  # config.json, tokenizer_config.json, processor_config.json, ...
NOT_LOADED = ("README.md", "eval/", "onnx/")  # recorded files that loading a model never reads


def audit_folder(path: Path, name: str, trust_remote_code: bool = False) -> None:
    """Stop (one line) unless loading the folder runs no code but sgm-export's own; see above."""
    path = Path(path)
    module_export = is_module_export(path)
    if not trust_remote_code:
        refuse_foreign_auto_map(path, name, module_export)
    if module_export:
        if not trust_remote_code:
            check_modeling_file(path)
        check_export_manifest(path, name, trust_remote_code)


def is_module_export(path: Path) -> bool:
    """Whether config.json says the folder is an sgm module export (model_type `sgm`)."""
    content = _json_object(Path(path) / "config.json")
    return content is not None and content.get("model_type") == SGM_MODEL_TYPE


def refuse_foreign_auto_map(path: Path, name: str, module_export: bool) -> None:
    """Any auto_map entry but the ones a module export's config.json has is refused.

    Transformers would quietly fall back to its built-in class for a known model type when remote
    code is not trusted; refusing instead makes the choice explicit, whichever code the user picks.
    """
    for file in sorted(p for p in Path(path).iterdir() if p.name.endswith(CONFIG_SUFFIX) and p.is_file()):
        content = _json_object(file)
        if content is None:
            continue
        for key, value in auto_map_entries(content):
            if module_export and file.name == "config.json" and _is_sgm_entry(key, value):
                continue
            if module_export:
                raise UnsafeCheckpointError(
                    f"{name} is an sgm export, but {key} in {file.name} names {value!r}, code other than sgm-export's own {MODELING_FILE}",
                    "re-export the model from its base, or pass --trust-remote-code if you have read that code",
                )
            raise UnsafeCheckpointError(
                f"{name} ships its own code ({key} in {file.name} names {value!r}), which runs only with --trust-remote-code",
                "pass --trust-remote-code (trust_remote_code: true in a recipe) if you trust its author, "
                "or delete auto_map to use the transformers class",
            )


def _is_sgm_entry(key: str, value: Any) -> bool:
    """An entry a module export's config.json has: at the top, or in `sgm` (which re-saving reads)."""
    for prefix in SGM_AUTO_MAP_AT:
        if key.startswith(prefix) and SGM_AUTO_MAP.get(key.removeprefix(prefix)) == value:
            return True
    return False


def auto_map_entries(content: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every entry of every `auto_map` in a JSON value, at any depth, as (dotted key, value)."""
    if isinstance(content, dict):
        for key, value in content.items():
            dotted = f"{prefix}{key}"
            if key == "auto_map":
                if isinstance(value, dict) and value:
                    yield from ((f"{dotted}.{entry}", target) for entry, target in value.items())
                elif value:
                    yield dotted, value
            else:
                yield from auto_map_entries(value, f"{dotted}.")
    elif isinstance(content, list):
        for item in content:
            yield from auto_map_entries(item, prefix)


def check_modeling_file(path: Path) -> None:
    """Run an export's modeling_sgm.py only if it is our own file."""
    modeling = Path(path) / MODELING_FILE
    if not modeling.is_file():
        raise CheckpointError(f"{path} is an sgm module export without {MODELING_FILE}", "export it again")
    if sha256_file(modeling) != shipped_modeling_sha256():
        raise UnsafeCheckpointError(
            f"{modeling} differs from the {MODELING_FILE} that sgm-export ships, so it may run foreign code",
            "re-export the model, or pass --trust-remote-code if you have read the file",
        )


def check_export_manifest(path: Path, name: str, trust_remote_code: bool = False) -> None:
    """The files a load reads must be the ones the export wrote, the glasses above all (a scales
    file rewritten to 1.0 would load as the base model). A trusted modeling file may differ."""
    manifest = read_manifest(path)
    if manifest is None:
        raise CheckpointError(
            f"{name} is an sgm module export without {MANIFEST_FILE}, so its glasses cannot be checked", "export it again"
        )
    if SCALES_FILE not in manifest.get("files", {}):
        raise CheckpointError(f"{MANIFEST_FILE} of {name} does not record {SCALES_FILE}", "export it again")
    skipped = (MODELING_FILE,) if trust_remote_code else ()
    problems = manifest_problems(path, skip=lambda file: _not_loaded(file) or file in skipped)
    if problems:
        raise CheckpointError(f"{name} changed since it was exported: {problems[0]}", "export it again, or restore the file")


def _not_loaded(name: str) -> bool:
    return name.startswith(NOT_LOADED) or (name.endswith(".safetensors") and name != SCALES_FILE)


def _json_object(file: Path) -> dict | None:
    """A config file's JSON object; a config transformers would read but cannot be parsed is refused."""
    if not file.is_file():
        return None
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{file} is not valid JSON ({error})", "restore the file from the original checkpoint") from None
    return content if isinstance(content, dict) else None
