"""Catching activations that are not numbers before they become scores.

A neuron that overflows (float16 holds nothing above 65504) pools to infinity, or to NaN once the
overflow has spread through later layers. Its AUROC would then be decided by how NaN sorts, a
meaningless score that still looks like one, and the glasses built on it would scale the wrong
neurons. So every batch is checked, and the first bad value stops the run with its layer, its
example and the dtype that would have held it.
"""

import bisect
import itertools

import torch

from sgm_export.errors import SgmError


class ActivationOverflowError(SgmError):
    """Pooled activations hold NaN or infinity."""


def require_finite(pooled: torch.Tensor, widths: list[int], dtype: torch.dtype, origins: list[str]) -> None:
    """Raise unless every pooled value of the batch ([examples, neurons]) is finite."""
    finite = torch.isfinite(pooled)
    if bool(finite.all()):
        return
    row, column = (int(i) for i in (~finite).nonzero()[0])
    layer = bisect.bisect_right(list(itertools.accumulate(widths)), column)
    where = f"layer {layer} of the decoder, on {origins[row] or f'example {row}'}"
    if dtype == torch.float16:
        raise ActivationOverflowError(
            f"activations overflow float16 ({where}): it holds no value above 65504",
            "score with --dtype float32 (or bfloat16 on a GPU: it has float32's range)",
        )
    raise ActivationOverflowError(
        f"activations are NaN or infinite in {str(dtype).removeprefix('torch.')} ({where})",
        "check the checkpoint's weights: NaN or huge values there mean it is damaged",
    )
