"""The recipe: one YAML file that describes a whole run, validated by a pydantic schema.

Values come from three places, later ones winning: the file, then `SGM_*` environment variables
(`SGM_MODEL=...`, `SGM_GLASSES__STRENGTH=2`: a double underscore steps into a section), then
`--set key=value` on the command line (`--set glasses.top_k=500`; values are read as YAML, so
`--set export.formats=[module,folded]` works). Paths in a recipe are relative to the directory
the command runs in. Unknown keys are errors, with a suggestion when one is close.
"""

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from sgm_export.cli.options import without_none
from sgm_export.errors import RecipeError
from sgm_export.options import CollectOptions, EvalOptions, ExportOptions, GlassesOptions, PushOptions, ScoreOptions, StrictModel

ENV_PREFIX = "SGM_"
TOOL_ENV_PREFIX = "SGM_EXPORT_"  # the tool's own settings (SGM_EXPORT_CACHE, ...), not recipe keys


class CollectSection(CollectOptions):
    """`collect:` in a recipe: the model's own judged continuations of these prompts join the
    scoring data (see `sgm_export/collect.py`)."""

    prompts: list[str] = Field(["builtin:rtp-toxic"], min_length=1, description="toxic prompts to continue (scoring splits only)")


class Recipe(StrictModel):
    """Everything `sgm-export run` does, in one place."""

    model: str = Field("demo", description="Hub id, local directory, or 'demo' (the embedded Gemma-3-270M)")
    data: list[str] = Field(
        ["builtin:rtp-toxic", "builtin:neutral"],
        description="labelled example sources (may be empty when a collect section gives the data)",
    )
    out: Path = Field(Path("out/demo"), description="output directory (created atomically)")
    collect: CollectSection | None = Field(None, description="add the model's own judged continuations to the scoring data")
    score: ScoreOptions = Field(default_factory=ScoreOptions)
    glasses: GlassesOptions = Field(default_factory=GlassesOptions)
    export: ExportOptions = Field(default_factory=ExportOptions)
    push: PushOptions = Field(default_factory=PushOptions)
    eval: EvalOptions | None = Field(None, description="evaluate base and glasses after the export (absent: no evaluation)")
    allow_pickle: bool = Field(False, description="allow loading .bin/.pt pickle checkpoints (they can run code)")
    trust_remote_code: bool = Field(False, description="allow the model's own remote code to run")

    @model_validator(mode="after")
    def _some_data(self) -> "Recipe":
        """Scoring needs examples: from `data`, from `collect`, or both."""
        if not self.data and self.collect is None:
            raise ValueError("data is empty and there is no collect section, so there is nothing to score")
        return self

    @model_validator(mode="after")
    def _folded_holds_no_shift(self) -> "Recipe":
        """Caught before the first stage runs rather than after scoring: a folded checkpoint
        holds scales only."""
        if self.glasses.shift and "folded" in self.export.formats:
            raise ValueError("glasses.shift cannot go into a folded checkpoint (it holds scales only); drop folded from export.formats")
        return self


def load_recipe(path: Path, overrides: list[str] = (), environ: Mapping[str, str] | None = None, out: Path | None = None) -> Recipe:
    """Read, merge and validate a recipe; any problem is a one-line RecipeError. `out` (`run
    --out`) is a path as given, never read as YAML: `--out 2024-01-01` is a folder, not a date."""
    values = _read_yaml(Path(path))
    origins: dict[str, str] = {}  # key -> where its value came from, when not the file
    for name, key, value in _env_overrides(os.environ if environ is None else environ):
        origins[key] = f"environment variable {name}"
        _set_dotted(values, key, value, origin=origins[key])
    for override in overrides:
        key, separator, raw = override.partition("=")
        if not separator or not key.strip():
            raise RecipeError(f"--set {override!r} is not key=value", "write it like --set glasses.top_k=500")
        origins[key.strip()] = f"--set {_printable(key.strip())}"
        _set_dotted(values, key.strip(), _parse_value(raw), origin=origins[key.strip()])
    if out is not None and isinstance(values, dict):
        origins["out"] = "--out"
        values["out"] = str(out)
    return validate_recipe(values, source=str(path), origins=origins)


def validate_recipe(values: Any, source: str = "recipe", origins: Mapping[str, str] | None = None) -> Recipe:
    """Validate merged values, turning the first pydantic error into one readable line that names
    where the bad value came from (the file, an environment variable, or --set)."""
    if not isinstance(values, dict):
        raise RecipeError(f"{source} is not a mapping of keys to values", "write the recipe as YAML key: value pairs")
    try:
        return Recipe.model_validate(values)
    except ValidationError as error:
        raise _readable(error, source, origins or {}) from None


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist", "check the path (recipes/demo.yaml is the example)")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(f"recipe {path} is not UTF-8 text", "save it as UTF-8") from None
    except yaml.constructor.ConstructorError as error:  # safe_load refuses tags such as !!python/object
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RecipeError(
            f"recipe {path} uses a YAML tag{where} ({error.problem}); tags are not allowed", "write plain values without '!!' tags"
        ) from None
    except (yaml.YAMLError, ValueError, RecursionError) as error:  # ValueError: e.g. a date like 2024-13-01
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RecipeError(f"recipe {path} is not valid YAML{where}", "fix the syntax (indentation, colons, quotes, dates)") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise RecipeError(f"recipe {path} is not a mapping of keys to values", "write the recipe as YAML key: value pairs")
    return values


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, str, Any]]:
    found = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or (name.startswith(TOOL_ENV_PREFIX) and not name.startswith("SGM_EXPORT__")):
            continue
        key = ".".join(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        found.append((name, key, _parse_value(raw)))
    return found


def _printable(text: str) -> str:
    """A key as typed, with line breaks and other control characters escaped: error messages
    are one line."""
    return text.encode("unicode_escape").decode("ascii")


def _parse_value(raw: str) -> Any:
    """A value as YAML reads it (`500`, `[module, folded]`, `null`), else the text as it is."""
    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError, RecursionError):
        return raw


def _set_dotted(values: dict, key: str, value: Any, origin: str) -> None:
    parts = key.split(".")
    node = values
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"{origin}: {part!r} is not a section", "set a key inside a section, like glasses.strength")
        node = child
    node[parts[-1]] = value


def _readable(error: ValidationError, source: str, origins: Mapping[str, str]) -> RecipeError:
    first = error.errors()[0]
    if not first["loc"]:  # a check across several keys
        return RecipeError(f"{source}: {first['msg'].removeprefix('Value error, ')}", "see docs/recipes.md")
    location = ".".join(str(part) for part in first["loc"])
    source = next((origins[key] for key in _prefixes(first["loc"]) if key in origins), source)
    if first["type"] == "extra_forbidden":
        known = _known_keys(first["loc"][:-1])
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
        hint = f"did you mean {'.'.join([*map(str, first['loc'][:-1]), close[0]])!r}?" if close else f"known keys here: {', '.join(known)}"
        return RecipeError(f"{source}: unknown key {location!r}", hint)
    return RecipeError(f"{source}: {location}: {first['msg']}", "fix this value (see docs/recipes.md)")


def _prefixes(location: tuple) -> list[str]:
    """`glasses.top_k` -> [`glasses.top_k`, `glasses`]: an override may have set a whole section."""
    parts = [str(part) for part in location]
    return [".".join(parts[:end]) for end in range(len(parts), 0, -1)]


def _known_keys(section: tuple) -> list[str]:
    model: type[BaseModel] = Recipe
    for part in section:
        field = model.model_fields.get(str(part))
        annotation = without_none(field.annotation) if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
