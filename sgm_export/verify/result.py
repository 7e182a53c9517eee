"""What `verify` reports, and what it feeds both models: shared by the logit checks of every
format (`verify/checkpoint.py` for module and folded exports, `verify/onnx.py` for ONNX)."""

import math
from dataclasses import dataclass, field

from sgm_export.options import VERIFY_TOLERANCE

DEFAULT_TOLERANCE = VERIFY_TOLERANCE
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
