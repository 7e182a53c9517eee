"""sgm-export: bake SGM safety glasses into model checkpoints.

SGM ("safety glasses" for multimodal LLMs, arXiv 2512.15052) builds on AurA (Suau et al., ICML
2024): find the MLP neurons of the language decoder whose activation separates toxic from
non-toxic inputs, and scale them down by a fixed per-neuron factor. This package scores the
neurons, turns the scores into a scaling vector (the glasses), and writes checkpoints that carry
it. See the README for the command line and docs/api.md for the Python API:

    import sgm_export
    scores = sgm_export.score("google/gemma-3-270m", ["builtin:rtp-toxic", "builtin:neutral"])
    glasses = sgm_export.compute_glasses(scores, sgm_export.GlassesOptions(top_k=500))
    sgm_export.export("google/gemma-3-270m", glasses, "out/model")

The public names below are imported on first use (as huggingface_hub does), so that
`import sgm_export` stays fast: torch is imported by the stage that needs it, not here. Every
other module is internal; its names may change between versions.
"""

import sys
from importlib import import_module
from types import ModuleType

TYPE_CHECKING = False  # typing itself takes longer to import than this package: the idiom type checkers know
__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "score": "sgm_export.api",
    "compute_glasses": "sgm_export.api",
    "export": "sgm_export.api",
    "export_onnx": "sgm_export.api",
    "verify": "sgm_export.api",
    "evaluate": "sgm_export.api",
    "push": "sgm_export.api",
    "Scores": "sgm_export.score.files",
    "Glasses": "sgm_export.glasses",
    "VerifyResult": "sgm_export.verify.result",
    "ScoresMetadata": "sgm_export.artifacts",
    "GlassesMetadata": "sgm_export.artifacts",
    "ScoringProvenance": "sgm_export.artifacts",
    "ExportManifest": "sgm_export.artifacts",
    "read_export_manifest": "sgm_export.artifacts",
    "ScoreOptions": "sgm_export.options",
    "GlassesOptions": "sgm_export.options",
    "OnnxOptions": "sgm_export.options",
    "EvalOptions": "sgm_export.options",
    "SgmError": "sgm_export.errors",
    "load_scores": "sgm_export.score.files",
    "load_glasses": "sgm_export.glasses",
}
__all__ = [
    "__version__",
    "score",
    "compute_glasses",
    "export",
    "export_onnx",
    "verify",
    "evaluate",
    "push",
    "Scores",
    "Glasses",
    "VerifyResult",
    "ScoresMetadata",
    "GlassesMetadata",
    "ScoringProvenance",
    "ExportManifest",
    "read_export_manifest",
    "ScoreOptions",
    "GlassesOptions",
    "OnnxOptions",
    "EvalOptions",
    "SgmError",
    "load_scores",
    "load_glasses",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time `__getattr__` imports on use
    from sgm_export.api import compute_glasses, evaluate, export, export_onnx, push, score, verify
    from sgm_export.artifacts import ExportManifest, GlassesMetadata, ScoresMetadata, ScoringProvenance, read_export_manifest
    from sgm_export.errors import SgmError
    from sgm_export.glasses import Glasses, load_glasses
    from sgm_export.options import EvalOptions, GlassesOptions, OnnxOptions, ScoreOptions
    from sgm_export.score.files import Scores, load_scores
    from sgm_export.verify.result import VerifyResult


# Stages that share their name with the subpackage that implements them (`sgm_export.export` is
# both): once the subpackage is imported, Python binds its name here to the module, so the module
# itself is made callable as the stage, and `sgm_export.export(...)` works either way.
_STAGE_PACKAGES = ("score", "export", "verify", "evaluate")


class _Stage(ModuleType):
    """A subpackage that, called, runs its stage from `sgm_export.api`."""

    def __call__(self, *args: object, **kwargs: object) -> object:
        return getattr(import_module("sgm_export.api"), self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(ModuleType):
    def __setattr__(self, name: str, value: object) -> None:
        if name in _STAGE_PACKAGES and type(value) is ModuleType:
            value.__class__ = _Stage
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> object:
    """Import a public name from its module on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module 'sgm_export' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
