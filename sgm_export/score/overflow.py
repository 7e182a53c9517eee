"""Catching activations that are not numbers before they become scores.

A neuron that overflows (float16 holds nothing above 65504) pools to infinity, or to NaN once the
overflow has spread through later layers. Its AUROC would then be decided by how NaN sorts, a
meaningless score that still looks like one, and the glasses built on it would scale the wrong
neurons. So the stored rows are checked as scoring goes (after every batch on the CPU, every few
batches on a GPU, where a check waits for the device), and a bad value stops the run with its
layer, its example and the dtype that would have held it.
"""

import bisect
import itertools

import torch

from sgm_export.errors import SgmError
from sgm_export.score.store import PooledStore


class ActivationOverflowError(SgmError):
    """Pooled activations hold NaN or infinity."""


def check_finite(store: PooledStore, widths: list[int], dtype: torch.dtype, origins: list[str]) -> None:
    """Raise unless every pooled value in the store is finite (this waits for the device)."""
    found = store.first_nonfinite()
    if found is None:
        return
    example, column = found
    layer = bisect.bisect_right(list(itertools.accumulate(widths)), column)
    where = f"layer {layer} of the decoder, on {origins[example] or f'example {example}'}"
    if dtype == torch.float16:
        raise ActivationOverflowError(
            f"activations overflow float16 ({where}): it holds no value above 65504",
            "score with --dtype float32 (or bfloat16 on a GPU: it has float32's range)",
        )
    raise ActivationOverflowError(
        f"activations are NaN or infinite in {str(dtype).removeprefix('torch.')} ({where})",
        "check the checkpoint's weights: NaN or huge values there mean it is damaged",
    )
