"""Checking an ONNX export against the base model with hook-applied glasses.

The reference is transformers' own `generate` (its cache, masks and positions) on the base
model with the glasses applied by forward hooks; the export runs in ONNX Runtime through
`sgm_export.runtime`. Both decode greedily from the same left-padded prompts, and every step's
logits are compared while the two agree on the tokens, so the prefill and decode steps with
growing pasts are all checked.

`verify` runs the reference in float64, as for the other formats. The graph computes in float32
(or float16), and on a real model that rounding alone moves logits by about as much as 1e-4
(Gemma-3-270M: PyTorch float32 is 5.5e-5 from float64, ONNX Runtime float32 9.7e-5). So the
allowed difference is the tolerance or `ROUNDING_FACTOR` times PyTorch's own error in the
graph's dtype on the same prompts, whichever is larger: the export must be about as exact as
PyTorch itself is in that dtype.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir
import torch

from sgm_export.apply import glasses_applied
from sgm_export.export.onnx.graph import find_glasses
from sgm_export.export.onnx.trace import DTYPES
from sgm_export.glasses import Glasses, load_glasses
from sgm_export.layout import GLASSES_FILE
from sgm_export.models.load import LoadedModel, load_model
from sgm_export.models.preflight import CheckedModel
from sgm_export.runtime import OnnxCausalLM
from sgm_export.runtime.tokenizer import left_padded
from sgm_export.verify.result import VERIFY_PROMPTS, VerifyResult

VERIFY_NEW_TOKENS = 8
ROUNDING_FACTOR = 4.0


@dataclass
class Comparison:
    """How far the export's logits are from the reference's, along one greedy generation."""

    max_abs_diff: float
    reference_tokens: list[list[int]]
    onnx_tokens: list[list[int]]
    glasses_effect: float

    @property
    def tokens_equal(self) -> bool:
        return self.reference_tokens == self.onnx_tokens


def compare_generation(runtime: OnnxCausalLM, base: LoadedModel, glasses: Glasses, prompts: list[list[int]], new_tokens: int) -> Comparison:
    """Greedy generation in both; logits compared on the prefill and on every shared step."""
    pad = runtime.pad_token_id
    batch = left_padded(prompts, pad)
    inputs = {
        "input_ids": torch.from_numpy(batch.input_ids),
        "attention_mask": torch.from_numpy(batch.attention_mask),
    }
    eos = list(runtime.description.eos_token_ids) or None
    positions = torch.from_numpy(batch.position_ids)
    with torch.inference_mode():
        plain = base.model(**inputs, position_ids=positions).logits.double().numpy()
        with glasses_applied(base.model, base.family, glasses):
            prefill = base.model(**inputs, position_ids=positions).logits.double().numpy()
            generated = base.model.generate(
                **inputs,
                max_new_tokens=new_tokens,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=pad,
                eos_token_id=eos,
            )
    onnx_prefill, _ = runtime.forward(batch.input_ids, batch.attention_mask, batch.position_ids, runtime.empty_past(len(prompts)))
    real = batch.attention_mask.astype(bool)
    worst = float(np.abs(onnx_prefill.astype(np.float64) - prefill)[real].max())
    reference_steps = [step.double().numpy() for step in generated.logits]
    reference_tokens = generated.sequences[:, batch.input_ids.shape[1] :].numpy()
    onnx_tokens: list[list[int]] = [[] for _ in prompts]
    for index, step in enumerate(runtime.steps(prompts, new_tokens)):
        rows = step.running
        worst = max(worst, float(np.abs(step.logits.astype(np.float64) - reference_steps[index])[rows].max()))
        for row in np.flatnonzero(rows):
            onnx_tokens[row].append(int(step.tokens[row]))
        if not np.array_equal(step.tokens[rows], reference_tokens[rows, index]):
            break  # the two took different tokens: later steps see different inputs
    return Comparison(
        worst, _until_eos(reference_tokens, runtime.description.eos_token_ids), onnx_tokens, float(np.abs(prefill - plain)[real].max())
    )


def _until_eos(tokens: np.ndarray, eos: tuple[int, ...]) -> list[list[int]]:
    rows = []
    for row in tokens.tolist():
        end = next((i + 1 for i, token in enumerate(row) if token in eos), len(row))
        rows.append(row[:end])
    return rows


def scale_problems(graph_path: Path, glasses: Glasses) -> list[str]:
    """Differences between the graph's `sgm.layers.{i}.scale` and the glasses file beside it."""
    nodes = find_glasses(ir.load(graph_path))
    if len(nodes) != len(glasses.scales):
        return [f"the graph holds {len(nodes)} scale initializers for {len(glasses.scales)} layers of glasses"]
    problems = []
    for node, scale in zip(nodes, glasses.scales):
        expected = scale.astype(node.values.dtype)
        if node.values.shape != expected.shape or not np.array_equal(node.values, expected):
            problems.append(f"{node.initializer} differs from layers.{node.layer}.scale of {GLASSES_FILE}")
    return problems


def rounding_error(base: LoadedModel, glasses: Glasses, prompts: list[list[int]], pad: int, dtype: str) -> float:
    """How far PyTorch in `dtype` is from the float64 model on the prompts' prefill.

    Casts the float64 model to `dtype` in place (call it last)."""
    batch = left_padded(prompts, pad)
    inputs = {name: torch.from_numpy(getattr(batch, name)) for name in ("input_ids", "attention_mask", "position_ids")}
    real = batch.attention_mask.astype(bool)
    with torch.inference_mode(), glasses_applied(base.model, base.family, glasses):
        exact = base.model(**inputs).logits.double().numpy()
        base.model.to(DTYPES[dtype])
        rounded = base.model(**inputs).logits.double().numpy()
    return float(np.abs(rounded - exact)[real].max())


def verify_onnx_export(export_dir: Path, base_model: str | CheckedModel, tolerance: float, device: str = "cpu") -> VerifyResult:
    """`sgm-export verify` for an ONNX folder: logits, scale initializers and file hashes."""
    export_dir = Path(export_dir)
    glasses = load_glasses(export_dir / GLASSES_FILE)
    base = load_model(base_model, device="cpu", dtype="float64")
    if base.processor is not None:
        from sgm_export.verify.onnx_vision import verify_vision_export

        return verify_vision_export(export_dir, base, glasses, tolerance, device)
    runtime = OnnxCausalLM(export_dir, device=device)
    prompts = [base.tokenizer(prompt)["input_ids"] for prompt in VERIFY_PROMPTS]
    comparison = compare_generation(runtime, base, glasses, prompts, VERIFY_NEW_TOKENS)
    problems = scale_problems(runtime.description.decoder_path, glasses)  # the files were checked before loading
    if [runtime.tokenizer.encode(prompt) for prompt in VERIFY_PROMPTS] != prompts:
        problems.append("the export's tokenizer.json encodes differently from the base model's tokenizer")
    dtype = runtime.description.dtype
    rounding = rounding_error(base, glasses, prompts, runtime.pad_token_id, dtype)
    allowed = max(tolerance, ROUNDING_FACTOR * rounding)
    note = f"reference in float64; PyTorch in {dtype} is {rounding:.3g} from it, so up to {allowed:.3g} is allowed"
    return VerifyResult(
        export_format=f"onnx ({dtype})",
        max_abs_diff=comparison.max_abs_diff,
        tolerance=allowed,
        glasses_effect=comparison.glasses_effect,
        n_experts=sum(glasses.experts_per_layer()),
        problems=problems,
        note=note,
    )
