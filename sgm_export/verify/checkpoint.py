"""The logit check of a module or folded export: its logits must equal those of the base model
with the same scales applied by hooks (an independent mechanism)."""

import tempfile
from pathlib import Path
from typing import Any

import torch

from sgm_export.apply import glasses_applied
from sgm_export.data.examples import Example
from sgm_export.data.images import probe_image
from sgm_export.data.multimodal import MultimodalEncoder
from sgm_export.glasses import Glasses
from sgm_export.models.load import LoadedModel, load_model
from sgm_export.models.preflight import CheckedModel
from sgm_export.score.runner import model_inputs
from sgm_export.verify.result import VERIFY_IMAGE_PROMPT, VERIFY_PROMPTS, VerifyResult


def verify_probes(loaded: LoadedModel) -> list[dict[str, Any]]:
    """The model inputs both models run: the verify prompts in one batch; for vision-language
    models the same prompts as answers about a probe image (half of them) or about nothing (the
    other half), one row at a time and keeping only the answer's logits, so that the image path
    and the text path are both checked without holding logits for hundreds of image tokens."""
    tokenizer = loaded.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = loaded.pad_token_id  # the tokenizer pads the text batch itself
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
            inputs = model_inputs(loaded, encoder.collate([encoded], [number], loaded.pad_token_id))
            probes.append({**inputs, "logits_to_keep": sum(encoded.pool_mask) + 1})  # the answer, and what predicts it
    return probes


def probe_logits(model: torch.nn.Module, probes: list[dict[str, Any]]) -> torch.Tensor:
    """The logits of every real (not padding) position the probes keep, in one flat tensor."""
    pieces = []
    for inputs in probes:
        logits = model(**inputs).logits
        pieces.append(logits[inputs["attention_mask"][:, -logits.shape[1] :].bool()])
    return torch.cat(pieces)


def verify_checkpoint_logits(
    export_dir: Path, fmt: str, glasses: Glasses, base_model: str | CheckedModel, tolerance: float, device: str, dtype: str, **access: bool
) -> VerifyResult:
    """Run the export and the hooked base model on the verify probes and compare their logits;
    `access` are the base model's `allow_pickle` and `trust_remote_code`."""
    problems: list[str] = []
    exported = load_model(str(export_dir), device=device, dtype=dtype)
    base = load_model(base_model, device=device, dtype=dtype, **access)
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
        n_experts=sum(glasses.experts_per_layer()),
        problems=problems,
    )
