"""Glasses applied to a loaded model by forward pre-hooks, without changing its weights or classes.

This is the reference that exports are checked against (`verify`), and how `eval` compares base
and glasses on one loaded model. It is deliberately independent of modeling_sgm.py.

Each scale lives, for the duration of the block, in a buffer `SCALE_BUFFER` of its projection
rather than in the hook's closure: a traced graph (the ONNX export) then keeps it as a named
tensor, `{projection module path}.sgm_glasses_scale`, that can be found and renamed.
"""

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from sgm_export.arch import Family, decoder_projections, decoder_widths
from sgm_export.glasses import Glasses

SCALE_BUFFER = "sgm_glasses_scale"
SHIFT_BUFFER = "sgm_glasses_shift"


def _scale_input(module: nn.Module, args: tuple) -> tuple:
    return (args[0] * getattr(module, SCALE_BUFFER), *args[1:])


def _scale_and_shift_input(module: nn.Module, args: tuple) -> tuple:
    return (args[0] * getattr(module, SCALE_BUFFER) + getattr(module, SHIFT_BUFFER), *args[1:])


@contextlib.contextmanager
def glasses_applied(model: nn.Module, family: Family, glasses: Glasses) -> Iterator[None]:
    """Inside the block, every decoder output projection sees its input times the scale (plus
    the shift, when the glasses have one)."""
    projections = decoder_projections(model, family)
    glasses.check_fits(decoder_widths(model, family), "the model")
    shifts = glasses.shifts or [None] * len(projections)
    handles = []
    for projection, scale, shift in zip(projections, glasses.scales, shifts):
        weight = projection.weight
        projection.register_buffer(SCALE_BUFFER, torch.from_numpy(scale).to(weight.device, weight.dtype), persistent=False)
        if shift is not None:
            projection.register_buffer(SHIFT_BUFFER, torch.from_numpy(shift).to(weight.device, weight.dtype), persistent=False)
        handles.append(projection.register_forward_pre_hook(_scale_input if shift is None else _scale_and_shift_input))
    try:
        yield
    finally:
        for projection, handle in zip(projections, handles):
            handle.remove()
            del projection._buffers[SCALE_BUFFER]
            projection._buffers.pop(SHIFT_BUFFER, None)
