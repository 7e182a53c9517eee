"""Glasses applied to a loaded model by forward pre-hooks, without changing its weights or classes.

This is the reference that exports are checked against (`verify`), and how `eval` compares base
and glasses on one loaded model. It is deliberately independent of modeling_sgm.py.
"""

import contextlib
from collections.abc import Iterator

from torch import nn

from sgm_export.arch import Family, decoder_projections, neuron_widths
from sgm_export.glasses import Glasses


@contextlib.contextmanager
def glasses_applied(model: nn.Module, family: Family, glasses: Glasses) -> Iterator[None]:
    """Inside the block, every decoder output projection sees its input times the scale."""
    projections = decoder_projections(model, family)
    glasses.check_fits(neuron_widths(model, family), "the model")
    handles = []
    for projection, scale in zip(projections, glasses.scales):
        on_device = scale.to(projection.weight.device, projection.weight.dtype)
        handles.append(projection.register_forward_pre_hook(lambda _module, args, s=on_device: (args[0] * s, *args[1:])))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
