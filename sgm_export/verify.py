"""Checking an export against its base model: the export's logits must equal those of the base
model with the same scales applied by hooks (an independent mechanism), in float32."""

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sgm_export.apply import glasses_applied
from sgm_export.artifacts import GlassesMetadata
from sgm_export.data.examples import Example
from sgm_export.data.images import probe_image
from sgm_export.data.multimodal import MultimodalEncoder
from sgm_export.errors import CheckpointError
from sgm_export.glasses import Glasses, load_glasses
from sgm_export.layout import GLASSES_FILE, MODELING_FILE, SCALES_FILE
from sgm_export.modeling import SCALE_SUFFIX, SGM_MODEL_TYPE, SHIFT_SUFFIX, sha256_file, shipped_modeling_sha256
from sgm_export.models.audit import refuse_foreign_auto_map
from sgm_export.models.checkpoint import read_config
from sgm_export.models.load import LoadedModel, load_model
from sgm_export.models.manifest import manifest_problems, read_manifest
from sgm_export.score.runner import model_inputs
from sgm_export.snapshot import folder_snapshot
from sgm_export.tensorfile import read_tensor_file

DEFAULT_TOLERANCE = 1e-4
VERIFY_PROMPTS = (
    "The quick brown fox jumps over the lazy dog because",
    "I can't believe you would say something like that, you",
    "Once upon a time, in a village by the sea,",
    "Here is a short list of things to do on a rainy day:",
)
VERIFY_IMAGE_PROMPT = "Describe the picture."


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
        return self.max_abs_diff <= self.tolerance and not self.problems  # NaN (not compared) fails

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        if math.isnan(self.max_abs_diff):
            lines = [f"{verdict}: {self.export_format} export, logits not compared (see the problems below)"]
        else:
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
    if not export_dir.is_dir():
        raise CheckpointError(f"{export_dir} is not a folder", "pass a folder written by `sgm-export export` or `sgm-export onnx`")
    if (export_dir / "config.json").is_file() and read_config(export_dir).get("model_type") == SGM_MODEL_TYPE:
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
    config = read_config(export_dir)
    if not (export_dir / SCALES_FILE).is_file():
        raise CheckpointError(f"{export_dir} has no {SCALES_FILE}, so it carries no glasses", "export the model again")
    scales, metadata = read_tensor_file(export_dir / SCALES_FILE, "glasses", "export the model again", framework="np")
    try:
        modules = config["sgm"]["modules"]
        shifts = [scales[name + SHIFT_SUFFIX] for name in modules] if any(name + SHIFT_SUFFIX in scales for name in modules) else None
        settings = GlassesMetadata.from_strings(metadata, str(export_dir / SCALES_FILE))
        return Glasses([scales[name + SCALE_SUFFIX] for name in modules], settings, shifts)
    except (KeyError, TypeError) as missing:
        raise CheckpointError(f"{SCALES_FILE} or config.json lacks {missing}", "export the model again") from None


def foreign_code_problems(export_dir: Path) -> list[str]:
    """A module export must carry this tool's own modeling_sgm.py; anything else is not run."""
    modeling = export_dir / MODELING_FILE
    if not modeling.is_file():
        return [f"{MODELING_FILE} is missing"]
    if sha256_file(modeling) != shipped_modeling_sha256():
        return [f"{MODELING_FILE} differs from the copy in this sgm-export, so it was not run"]
    return []


def verify_probes(loaded: LoadedModel) -> list[dict[str, Any]]:
    """The model inputs both models run: the verify prompts in one batch; for vision-language
    models the same prompts as answers about a probe image (half of them) or about nothing (the
    other half), one row at a time and keeping only the answer's logits, so that the image path
    and the text path are both checked without holding logits for hundreds of image tokens."""
    tokenizer = loaded.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if loaded.processor is None:
        return [dict(tokenizer(list(VERIFY_PROMPTS), return_tensors="pt", padding=True).to(loaded.device))]
    encoder = MultimodalEncoder(loaded.processor, loaded.family, loaded.model, max_length=64)
    probes = []
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "probe.png"
        probe_image().save(image)
        for number, text in enumerate(VERIFY_PROMPTS):
            example = Example(
                text=text,
                label=0,
                prompt=VERIFY_IMAGE_PROMPT,
                image=image if number % 2 == 0 else None,
                origin=f"verify prompt {number + 1}",
            )
            encoded = encoder.encode(example)
            inputs = model_inputs(loaded, encoder.collate([encoded], [number], tokenizer.pad_token_id))
            probes.append({**inputs, "logits_to_keep": sum(encoded.pool_mask) + 1})  # the answer, and what predicts it
    return probes


def probe_logits(model: torch.nn.Module, probes: list[dict[str, Any]]) -> torch.Tensor:
    """The logits of every real (not padding) position the probes keep, in one flat tensor."""
    pieces = []
    for inputs in probes:
        logits = model(**inputs).logits
        pieces.append(logits[inputs["attention_mask"][:, -logits.shape[1] :].bool()])
    return torch.cat(pieces)


def verify_export(
    export_dir: Path,
    base_model: str,
    tolerance: float = DEFAULT_TOLERANCE,
    device: str = "cpu",
    dtype: str = "float64",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> VerifyResult:
    """Compare the export's logits with the base model's under hook-applied glasses.

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
    export_dir: Path, name: str, base_model: str, tolerance: float, device: str, dtype: str, allow_pickle: bool, trust_remote_code: bool
) -> VerifyResult:
    """`verify_export` on a folder nothing else writes to."""
    fmt = export_format(export_dir)
    refuse_foreign_auto_map(export_dir, name, module_export=fmt == "module")
    glasses = export_glasses(export_dir)
    n_experts = sum(glasses.experts_per_layer())
    # Every check of the files comes before anything is loaded: a changed export is never run.
    problems = (foreign_code_problems(export_dir) if fmt == "module" else []) + manifest_problems(export_dir)
    if problems:
        return VerifyResult(fmt, math.nan, tolerance, math.nan, n_experts, problems)
    if fmt == "onnx":
        from sgm_export.export.onnx.check import verify_onnx_export

        return verify_onnx_export(export_dir, base_model, tolerance=tolerance, device=device)
    exported = load_model(str(export_dir), device=device, dtype=dtype)
    base = load_model(base_model, device=device, dtype=dtype, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    tokenizer = base.tokenizer
    probes = verify_probes(base)
    with torch.inference_mode():
        exported_logits = probe_logits(exported.model, probes)
        plain_logits = probe_logits(base.model, probes)
        with glasses_applied(base.model, base.family, glasses):
            reference_logits = probe_logits(base.model, probes)
    if exported.tokenizer.get_vocab() != tokenizer.get_vocab():
        problems.append("the export's tokenizer differs from the base model's")
    return VerifyResult(
        export_format=fmt,
        max_abs_diff=float((exported_logits - reference_logits).abs().max()),
        tolerance=tolerance,
        glasses_effect=float((reference_logits - plain_logits).abs().max()),
        n_experts=n_experts,
        problems=problems,
    )
