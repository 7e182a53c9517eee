"""Checking an export against its base model: the export's logits must equal those of the base
model with the same scales applied by hooks (an independent mechanism), in float32."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from sgm_export.apply import glasses_applied
from sgm_export.errors import CheckpointError
from sgm_export.export.files import MANIFEST_FILE, read_manifest
from sgm_export.export.folded import GLASSES_FILE
from sgm_export.glasses import Glasses, load_glasses
from sgm_export.modeling import (
    MODELING_FILE,
    SCALE_SUFFIX,
    SCALES_FILE,
    SGM_MODEL_TYPE,
    sha256_file,
    shipped_modeling_sha256,
)
from sgm_export.models.load import load_model

DEFAULT_TOLERANCE = 1e-4
VERIFY_PROMPTS = (
    "The quick brown fox jumps over the lazy dog because",
    "I can't believe you would say something like that, you",
    "Once upon a time, in a village by the sea,",
    "Here is a short list of things to do on a rainy day:",
)


@dataclass
class VerifyResult:
    """The outcome of one verification, ready to print or to store as JSON."""

    export_format: str
    max_abs_diff: float
    tolerance: float
    glasses_effect: float
    n_experts: int
    problems: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and not self.problems

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"{verdict}: {self.export_format} export, max |logit difference| vs base with hooked glasses = "
            f"{self.max_abs_diff:.3g} (tolerance {self.tolerance:g})",
            f"  {self.n_experts} neurons scaled; max |logit change| the glasses cause = {self.glasses_effect:.3g}",
        ]
        lines += [f"  {self.note}"] if self.note else []
        lines += [f"  problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


def export_format(export_dir: Path) -> str:
    """`module`, `folded` or `onnx`, from the folder's config.json and manifest."""
    config_path = export_dir / "config.json"
    if config_path.is_file() and json.loads(config_path.read_text(encoding="utf-8")).get("model_type") == SGM_MODEL_TYPE:
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
    config = json.loads((export_dir / "config.json").read_text(encoding="utf-8"))
    scales = load_file(export_dir / SCALES_FILE)
    try:
        return Glasses([scales[name + SCALE_SUFFIX] for name in config["sgm"]["modules"]], {})
    except KeyError as missing:
        raise CheckpointError(f"{SCALES_FILE} lacks the scale {missing}", "export the model again") from None


def manifest_problems(export_dir: Path) -> list[str]:
    """Files that are missing or changed since the export wrote its sgm_export.json."""
    manifest = read_manifest(export_dir)
    if manifest is None:
        return [f"{MANIFEST_FILE} is missing, so the files cannot be checked"]
    problems = []
    for name, digest in manifest.get("files", {}).items():
        path = export_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name} differs from the SHA-256 recorded in {MANIFEST_FILE}")
    if manifest.get("modeling_sgm_sha256") not in (None, shipped_modeling_sha256()):
        problems.append(f"{MODELING_FILE} was written by another version of sgm-export")
    return problems


def verify_export(
    export_dir: Path, base_model: str, tolerance: float = DEFAULT_TOLERANCE, device: str = "cpu", dtype: str = "float64"
) -> VerifyResult:
    """Compare the export's logits with the base model's under hook-applied glasses.

    Both models run in float64 by default: a folded checkpoint computes x @ (W * s) where the
    reference computes (x * s) @ W, and in float32 that reordering alone moves the logits of a
    270M model by about 1e-4. In float64 what remains is the one rounding of W * s to the
    stored dtype, so the check measures the export and not the arithmetic.
    """
    export_dir = Path(export_dir)
    fmt = export_format(export_dir)
    if fmt == "onnx":
        from sgm_export.export.onnx.check import verify_onnx_export

        return verify_onnx_export(export_dir, base_model, tolerance=tolerance, device=device)
    glasses = export_glasses(export_dir)
    exported = load_model(str(export_dir), device=device, dtype=dtype)
    base = load_model(base_model, device=device, dtype=dtype)
    tokenizer = base.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer(list(VERIFY_PROMPTS), return_tensors="pt", padding=True).to(base.device)
    keep = batch["attention_mask"].bool()
    with torch.inference_mode():
        exported_logits = exported.model(**batch).logits[keep]
        plain_logits = base.model(**batch).logits[keep]
        with glasses_applied(base.model, base.family, glasses):
            reference_logits = base.model(**batch).logits[keep]
    problems = manifest_problems(export_dir)
    if exported.tokenizer.get_vocab() != tokenizer.get_vocab():
        problems.append("the export's tokenizer differs from the base model's")
    return VerifyResult(
        export_format=fmt,
        max_abs_diff=float((exported_logits - reference_logits).abs().max()),
        tolerance=tolerance,
        glasses_effect=float((reference_logits - plain_logits).abs().max()),
        n_experts=sum(glasses.experts_per_layer()),
        problems=problems,
    )
